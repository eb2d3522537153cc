"""Regrid a netCDF or zarr dataset to another grid, streaming chunk by chunk.

    sphere-regrid --input=era5.zarr --output=era5_hp64.zarr --grid=healpix:64 \
        --method=spectral --chunk=time=8

(or `python tools/regrid.py ...`). The input is read lazily (zarr through
xarray-tensorstore, netCDF through xarray); each chunk along `--chunk` is read,
regridded with `ds.sphere.regrid` and appended to a temporary output, which is
renamed to `--output` only when every chunk is written. An interrupted run
leaves at most a `*.partial-<pid>` path, never a complete-looking output.
Output format follows the extension: `.zarr` -> zarr (format 2, consolidated, as
WeatherBench2 and ARCO-ERA5 use), anything else -> netCDF.
Errors are one line on stderr with exit status 1.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tqdm
import xarray as xr

from sphere_plugin import accessor
from sphere_plugin import allocator
from sphere_plugin import atomic
from sphere_plugin import grids
from sphere_plugin import regrid as regrid_lib
from sphere_plugin.data.stores import open_dataset

_INPUT = flags.DEFINE_string('input', None, 'Input dataset: a .zarr store or a netCDF file.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output path: .zarr for zarr, else netCDF.')
_GRID = flags.DEFINE_string('grid', None, "Target grid, e.g. 'healpix:64', 'gaussian:128x64'.")
_METHOD = flags.DEFINE_enum('method', 'spectral', list(regrid_lib.METHODS),
                            'Regridding method.')
_VARIABLES = flags.DEFINE_list('variables', None, 'Variables to regrid (default: all).')
_VECTOR_PAIRS = flags.DEFINE_string(
    'vector_pairs', 'auto',
    "Comma-separated eastward:northward pairs regridded as vectors, e.g. "
    "'u_component_of_wind:v_component_of_wind'; 'auto' = the WB2 wind names present; "
    "'none' = treat every variable as a scalar.")
_CHUNK = flags.DEFINE_string('chunk', None,
                             "Dim and size streamed per step, e.g. 'time=8' (default: "
                             'time=8 when there is a time dim, else all at once).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing output.')
_LMAX = flags.DEFINE_integer('lmax', None, 'Spectral band limit (default: what both grids resolve).')
_TAPER = flags.DEFINE_float('taper', None, 'Spectral: fraction of the top degrees rolled off.')


def _load(ds: xr.Dataset) -> xr.Dataset:
  """Reads a (lazy) subset into memory, concurrently for tensorstore arrays."""
  try:
    import xarray_tensorstore  # pylint: disable=g-import-not-at-top
    ds = xarray_tensorstore.read(ds)
  except (ImportError, TypeError, ValueError):
    pass
  return ds.load()


def parse_vector_pairs(text: str | None):
  """'auto' | 'none' | 'u:v,u2:v2' -> what `ds.sphere.regrid` takes."""
  if text is None or text.strip().lower() == 'auto':
    return 'auto'
  if text.strip().lower() in ('', 'none'):
    return None
  return [p.strip() for p in text.split(',') if p.strip()]


def default_chunk_dim(ds: xr.Dataset, spatial: tuple[str, ...]) -> str | None:
  """The dim streamed by default: a time-like dim if any (time, valid_time,
  init_time, ...), else the first other non-spatial dim of the data variables."""
  dims = [d for v in ds.data_vars.values() for d in v.dims if d not in spatial]
  dims = list(dict.fromkeys(dims))
  timelike = [d for d in dims if 'time' in str(d).lower()]
  return (timelike or dims or [None])[0]


def parse_chunk(text: str | None, ds: xr.Dataset, spatial: tuple[str, ...]):
  """'time=8' -> ('time', 8); default (default_chunk_dim, 8), or (None, 0)."""
  if not text:
    dim = default_chunk_dim(ds, spatial)
    return (dim, 8) if dim is not None else (None, 0)
  name, _, size = text.partition('=')
  if name not in ds.dims:
    raise ValueError(f'--chunk dim {name!r} is not a dim of the input (dims: {dict(ds.sizes)})')
  if name in spatial:
    raise ValueError(f'--chunk dim {name!r} is a spatial dim; chunk along time, level, ...')
  try:
    size = int(size)
  except ValueError:
    size = 0
  if size < 1:
    raise ValueError(f'--chunk needs dim=size with size >= 1, got {text!r}')
  return name, size


def _netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
  """Stringifies attrs netCDF cannot store (None, bools, dicts, ...)."""
  def fix(attrs):
    return {k: v if isinstance(v, (str, int, float, np.ndarray, np.number)) and
            not isinstance(v, bool) else str(v) for k, v in attrs.items()}
  ds = ds.copy()
  ds.attrs = fix(ds.attrs)
  for v in ds.variables.values():
    v.attrs = fix(v.attrs)
  return ds


def _time_encoding(ds: xr.Dataset) -> dict:
  """Fixed units for datetime coords, so later appends encode the same way."""
  return {n: {'units': 'seconds since 1970-01-01', 'dtype': 'int64'}
          for n, c in ds.coords.items() if np.issubdtype(c.dtype, np.datetime64)}


def _check_output(output: str, overwrite: bool) -> None:
  if os.path.exists(output) and not overwrite:
    raise FileExistsError(f'output {output!r} exists; pass --overwrite to replace it')
  parent = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f'output directory {parent!r} does not exist')
  if not os.access(parent, os.W_OK):
    raise PermissionError(f'output directory {parent!r} is not writable')


def _regrid_later_chunk(part, dim, target, to_regrid, partial, pairs, options):
  """A chunk after the first: only the variables with the chunk dim."""
  names = [n for n, v in part.data_vars.items() if dim in v.dims and n not in partial]
  spatial = [n for n in names if n in to_regrid]
  rest = _load(part[[n for n in names if n not in to_regrid]])
  if not spatial:
    return rest
  present = [p for p in pairs if p[0] in spatial]  # plan() checked that pairs are whole
  out = accessor.regrid_dataset(_load(part[spatial]), target, vector_pairs=present, **options)
  return out.assign({n: rest[n] for n in rest.data_vars})


def regrid_file(input_path: str, output: str, grid: str, method: str = 'spectral', *,
                variables=None, vector_pairs='auto', chunk: str | None = None,
                overwrite: bool = False, lmax: int | None = None,
                taper: float | None = None, progress: bool = True) -> str:
  """Regrids a dataset file to `grid`, streaming along the chunk dim.

  Args:
    input_path: zarr store or netCDF file.
    output: path written (zarr if it ends with .zarr, else netCDF).
    grid: target grid text form.
    method, variables, vector_pairs, lmax, taper: as `ds.sphere.regrid`.
    chunk: 'dim=size' streamed per step (see `parse_chunk`).
    overwrite: replace an existing output.
    progress: show a progress bar on stderr.

  Returns:
    the output path.
  """
  target = grids.parse(grid)
  _check_output(output, overwrite)
  ds = open_dataset(input_path)
  # Every check before any work.
  ds, _, _, spatial, to_regrid, partial, pairs, _ = accessor.plan(
      ds, target, method, variables=variables, vector_pairs=vector_pairs, lmax=lmax,
      taper=taper)
  dim, size = parse_chunk(chunk, ds, spatial)
  steps = [slice(None)] if dim is None else [
      slice(i, min(i + size, ds.sizes[dim])) for i in range(0, ds.sizes[dim], size)]
  to_zarr = output.rstrip('/').endswith('.zarr')
  options = dict(method=method, lmax=lmax, taper=taper)
  started = time.time()
  with atomic.atomic_path(output, overwrite=overwrite) as tmp:
    tmp_store = tmp if to_zarr else tmp + '.zarr'
    try:
      bar = tqdm.tqdm(steps, desc=f'regrid to {target}', unit='chunk', disable=not progress,
                      file=sys.stderr)
      for i, step in enumerate(bar):
        part = ds if dim is None else ds.isel({dim: step})
        if i == 0:
          out = accessor.regrid_dataset(_load(part), target, vector_pairs=pairs, **options)
        else:  # variables without the chunk dim were written with the first chunk
          out = _regrid_later_chunk(part, dim, target, to_regrid, partial, pairs, options)
        # The input's storage encoding (codecs, chunks) does not fit the new shapes.
        out = out.drop_encoding()
        if i == 0:
          out.to_zarr(tmp_store, mode='w', encoding=_time_encoding(out), zarr_format=2)
        else:
          out.to_zarr(tmp_store, append_dim=dim)
      if not to_zarr:
        chunks = {dim: size} if dim is not None else {}
        final = xr.open_zarr(tmp_store, chunks=chunks)
        _netcdf_safe(final).to_netcdf(tmp)
        final.close()
    finally:
      if not to_zarr:
        atomic.remove(tmp_store)
  if progress:
    print(f'wrote {output} ({target}, {method}) in {time.time() - started:.1f} s',
          file=sys.stderr)
  return output


def main(argv) -> int:
  """absl main: regrids --input to --output; one-line errors, exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  allocator.retain_freed_memory()
  for flag in (_INPUT, _OUTPUT, _GRID):
    if not flag.value:
      print(f'regrid: error: --{flag.name} is required', file=sys.stderr)
      return 1
  try:
    regrid_file(_INPUT.value, _OUTPUT.value, _GRID.value, _METHOD.value,
                variables=_VARIABLES.value, vector_pairs=parse_vector_pairs(_VECTOR_PAIRS.value),
                chunk=_CHUNK.value, overwrite=_OVERWRITE.value, lmax=_LMAX.value,
                taper=_TAPER.value)
  except (ValueError, KeyError, OSError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(f'regrid: error: {message}', file=sys.stderr)
    return 1
  return 0


def run() -> None:
  """Console-script entry point (`sphere-regrid`)."""
  app.run(lambda argv: sys.exit(main(argv)))
