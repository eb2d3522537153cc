"""Opening a user's dataset file: a zarr store or a netCDF file, lazily."""

from __future__ import annotations

import os

import xarray as xr


def open_dataset(path: str) -> xr.Dataset:
  """Opens a zarr store (a directory, through xarray-tensorstore) or a netCDF file.

  Nothing but coordinates is read.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: it is neither (the reader's first error line is quoted).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'input {path!r} does not exist')
  try:
    if os.path.isdir(path):
      import xarray_tensorstore  # pylint: disable=g-import-not-at-top
      return xarray_tensorstore.open_zarr(path)
    return xr.open_dataset(path)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ValueError(f'cannot read {path!r} as a zarr store or netCDF file: {first}') from e
