"""Preprocessing at scale on Apache Beam with xarray-beam (the optional `beam` extra).

    pip install 'sphere_plugin[beam]'        # apache-beam, xarray-beam

    from sphere_plugin.beam import regrid as beam_regrid
    beam_regrid.regrid_zarr('era5.zarr', 'era5_hp64.zarr', 'healpix:64', method='auto',
                            chunks={'time': 8}, runner='DirectRunner')

    from sphere_plugin.beam import scatter as beam_scatter
    beam_scatter.scatter_zarr('era5.zarr', 'era5.scattering.zarr', chunks={'time': 8},
                              J=3, N=2)

    from sphere_plugin.weather import beam_statistics      # the Normalizer
    normalizer = beam_statistics.compute_normalizer(spec, runner='DirectRunner')

The same pipelines run on one machine (`DirectRunner`) and at scale
(`DataflowRunner`, `FlinkRunner`, `SparkRunner`): pass the runner name and its
pipeline options (`--project`, `--region`, `--temp_location`, ...) as
`runner=` and `pipeline_args=`, or on the command line
(`tools/regrid.py --runner=DataflowRunner --project=...`).

Modules:
  pipelines  the shared pieces: `require` (the extra, or one clear ImportError),
             `run` (build, run, wait, fail loudly), `published_output`
             (write-then-rename, also for gs:// / s3:// outputs), chunk offsets
  regrid     regrid a zarr or netCDF dataset to a zarr on another grid, chunked
             over time (and level): `regrid_zarr`
  scatter    the scattering coefficients of a dataset (what tools/scatter.py
             caches): `scatter_zarr`

Nothing here imports apache_beam at package import: `import sphere_plugin`
works without the extra, and the modules import Beam when a pipeline is built.
"""
