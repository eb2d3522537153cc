"""Datasets: WB2-format weather, QM9 molecules, simulated data (Held-Suarez, bumps), file opening."""
