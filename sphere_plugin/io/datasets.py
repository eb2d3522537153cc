"""Opening datasets (a zarr store or a netCDF file, lazily) and fingerprinting them."""

from __future__ import annotations

import hashlib
import os

import numpy as np
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


def load(ds: xr.Dataset) -> xr.Dataset:
  """Reads a (lazy) subset into memory, concurrently for tensorstore arrays."""
  try:
    import xarray_tensorstore  # pylint: disable=g-import-not-at-top
    ds = xarray_tensorstore.read(ds)
  except (ImportError, TypeError, ValueError):
    pass
  return ds.load()


def default_chunk_dim(ds: xr.Dataset, spatial) -> str | None:
  """The dim streamed by default: a time-like dim if any (time, valid_time,
  init_time, ...), else the first other non-spatial dim of the data variables."""
  dims = [d for v in ds.data_vars.values() for d in v.dims if d not in spatial]
  dims = list(dict.fromkeys(dims))
  timelike = [d for d in dims if 'time' in str(d).lower()]
  return (timelike or dims or [None])[0]


def parse_chunks(text: str | None, ds: xr.Dataset, spatial) -> dict[str, int]:
  """'time=8' or 'time=8,level=1' -> {'time': 8, 'level': 1}.

  Default (no text): 8 steps of `default_chunk_dim`, or {} when there is none.

  Raises:
    ValueError: (one line) a dim that is not in `ds`, a spatial dim, a size
      below 1.
  """
  if not text:
    dim = default_chunk_dim(ds, spatial)
    return {dim: 8} if dim is not None else {}
  out = {}
  for item in text.split(','):
    name, _, size = item.strip().partition('=')
    if name not in ds.dims:
      raise ValueError(f'--chunk dim {name!r} is not a dim of the input (dims: '
                       f'{dict(ds.sizes)})')
    if name in spatial:
      raise ValueError(f'--chunk dim {name!r} is a spatial dim; chunk along time, level, ...')
    try:
      n = int(size)
    except ValueError:
      n = 0
    if n < 1:
      raise ValueError(f'--chunk needs dim=size with size >= 1, got {text!r}')
    out[name] = n
  return out


def check_not_empty(ds: xr.Dataset, input_path: str) -> None:
  """An empty input is refused: an empty output would look like a complete result."""
  empty = [str(d) for d, n in ds.sizes.items() if n == 0]
  if empty:
    raise ValueError(f'input {input_path!r} has no data: dim {empty[0]!r} has length 0 '
                     f'(sizes {dict(ds.sizes)}); nothing to regrid, no output written')


def time_encoding(ds: xr.Dataset) -> dict:
  """Fixed units for the datetime coords of `ds` ('seconds since 1970-01-01', int64),
  so that chunks appended or written later encode them the same way.

  Returns:
    {coordinate name: encoding} for `to_zarr(encoding=...)`.
  """
  return {n: {'units': 'seconds since 1970-01-01', 'dtype': 'int64'}
          for n, c in ds.coords.items() if np.issubdtype(c.dtype, np.datetime64)}


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
