"""Datasets: synthetic spherical data (more in later issues)."""
