"""Regrid a netCDF/zarr dataset to another grid (see sphere_plugin/cli/regrid.py).

    python tools/regrid.py --input=in.zarr --output=out.zarr --grid=healpix:64
"""

from sphere_plugin.cli import regrid

if __name__ == '__main__':
  regrid.run()
