"""Regrid a netCDF/zarr dataset to another grid (see sphere_plugin/cli/regrid.py).

    python tools/regrid.py --input=in.zarr --output=out.zarr --grid=healpix:64
    python tools/regrid.py --input=in.zarr --output=out.zarr --grid=healpix:64 --method=auto
    python tools/regrid.py ... --runner=DirectRunner   # Apache Beam; runner options pass through
"""

from sphere_plugin.cli import regrid

if __name__ == '__main__':
  regrid.run()
