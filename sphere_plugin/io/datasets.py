"""Opening datasets (a zarr store or a netCDF file, lazily) and fingerprinting them."""

from __future__ import annotations

import hashlib
import os

import xarray as xr


_NETCDF_SUFFIXES = ('.nc', '.nc4', '.netcdf', '.cdf', '.h5', '.hdf5')


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
  """Opens a dataset lazily: a zarr store or a netCDF file (the one reader of the package).

  A directory, or a URL that tensorstore understands (`gs://...`), is read as
  zarr through `xarray_tensorstore.open_zarr`; a file (or a name with a netCDF
  suffix) through `xr.open_dataset`. Nothing but coordinates is read.

  Raises:
    FileNotFoundError: a local `path` that does not exist.
    ValueError: it is neither zarr nor netCDF (the reader's first error line
      is quoted).
  """
  path = os.fspath(path)
  remote = '://' in path
  if not remote and not os.path.exists(path):
    raise FileNotFoundError(f'input {path!r} does not exist')
  try:
    if remote or os.path.isdir(path):
      import xarray_tensorstore  # pylint: disable=g-import-not-at-top
      return xarray_tensorstore.open_zarr(path)
    return xr.open_dataset(path)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ValueError(f'cannot read {path!r} as a zarr store or netCDF file: {first}') from e


def content_digest(path: str, block: int = 1 << 24) -> str:
  """SHA-256 of a file's bytes, or of a directory's files (relative paths and bytes).

  Unlike size and mtime (which `cp -p` and rsync keep), this changes whenever
  the data do. Reads everything once, in `block`-byte pieces (so memory stays
  small); about 1 s per GB here.

  Args:
    path: a file or a directory (zarr store).

  Returns:
    The hex digest.
  """
  digest = hashlib.sha256()
  if os.path.isdir(path):
    files = sorted(os.path.relpath(os.path.join(d, f), path)
                   for d, _, names in os.walk(path) for f in names)
  else:
    files = ['']
  for rel in files:
    if rel:
      digest.update(rel.encode('utf-8') + b'\0')
    with open(os.path.join(path, rel) if rel else path, 'rb') as f:
      while chunk := f.read(block):
        digest.update(chunk)
    digest.update(b'\0')
  return digest.hexdigest()
