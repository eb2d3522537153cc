"""Model backbones built from `sphere_plugin.nn`."""
