"""Old home of the datasets; its modules are re-exporting shims.

Weather data now live in `sphere_plugin.weather`, QM9 in `sphere_plugin.molecules`,
the bump example in `sphere_plugin.examples` and `open_dataset` in
`sphere_plugin.io.datasets`.
"""
