"""Files, datasets and the terminal: the bottom layer, importing nothing of ours.

    datasets       the one `open_dataset` (zarr via xarray-tensorstore, netCDF), content digests
    atomic         write-then-rename outputs; stale partials
    stored_config  checking a workdir's config.gin before gin parses it
    safe_pickle    a memory-safe restricted unpickler (NeuralGCM checkpoints)
    allocator      keeping freed memory mapped (glibc malloc tuning)
    errors         one-line command-line errors and exit statuses
    interrupts     SIGTERM/SIGINT as an exception, so clean-ups run
    writers        waiting for in-flight zarr/dask writes before a clean-up
    flag_help      the key flags shown by a tool's --help
"""
