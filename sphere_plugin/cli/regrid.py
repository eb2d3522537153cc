"""Regrid a netCDF or zarr dataset to another grid, streaming chunk by chunk.

    sphere-regrid --input=era5.zarr --output=era5_hp64.zarr --grid=healpix:64 \
        --method=spectral --chunk=time=8

(or `python tools/regrid.py ...`). `--method=auto` or
`--method_for=sea_surface_temperature=conservative` give variables their own
methods (`sphere_plugin.regrid.methods`); the summary line names them.
`--runner=DirectRunner` (or DataflowRunner, FlinkRunner, ... with the runner's
own flags, passed through) runs the same regridding as an Apache Beam
pipeline (`sphere_plugin.beam.regrid`, the beam extra; zarr output,
`--chunk=time=8,level=1` may split several dims); without `--runner` the
local streaming path below runs. HEALPix input may be in RING or NESTED
order as xdggs, CF 1.13 or easy.gems declare it (reordered to RING inside);
HEALPix output is in `--healpix_order` (ring by default) and says so for all
three. The input is read lazily (zarr through
xarray-tensorstore, netCDF through xarray); each chunk along `--chunk` is read,
regridded with `ds.sphere.regrid` and appended to `<output>.partial-<pid>`,
which is renamed to `--output` only when every chunk is written.
Output format follows the extension: `.zarr` -> zarr (format 2, consolidated, as
WeatherBench2 and ARCO-ERA5 use), anything else -> netCDF.

Guarantees when things go wrong (issue 17: faults never lose or silently
replace data):

* The output appears whole or not at all. Without `--overwrite` an existing
  output is refused up front, and one that appears during the run (another
  run to the same path) is kept: the final rename refuses to replace it
  (`atomic.atomic_path(overwrite=False)`) and this run exits 1.
* SIGTERM and SIGINT stop the run with one line and exit status 128 + signum
  (143, 130); the partial output is removed, but only after the zarr and dask
  writer threads have finished their in-flight writes (`writers.settled`), so
  no chunk is left behind, also when a write fails on a full disk.
* SIGKILL or a crash can still leave `<output>.partial-<pid>`; a later run to
  the same output names such partials of processes that are gone in one
  warning line, or removes them with `--remove_stale_partials`.
* Chunks are planned lazily (a declared time dim of 10**10 costs nothing up
  front), and the regridder's grids, tables and weights are sized before any
  is allocated (`sphere_plugin.regrid.memory`): an absurd target grid is one
  MemoryError line; `--memory_budget_gib` raises the budget (default 4 GiB).
* Spectral regridding refuses NaN and +-Inf (one would spread over the whole
  field), naming the variable.
* An input with a zero-length dim is refused (an empty output would look like
  a complete one).
* Every error is one line on stderr, `regrid: error: <message>`, exit status 1
  (storage errors name the output and the free space left); `--verbose` prints
  the traceback too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import warnings

from absl import app
from absl import flags
import numpy as np
import tqdm
import xarray as xr

from sphere_plugin import accessor
from sphere_plugin.io import allocator
from sphere_plugin.io import atomic
from sphere_plugin import grids
from sphere_plugin import regrid as regrid_lib
from sphere_plugin import sht
from sphere_plugin.io import errors
from sphere_plugin.io import flag_help as help_lib
from sphere_plugin.io import interrupts
from sphere_plugin.io import writers
from sphere_plugin.io import datasets
from sphere_plugin.io.datasets import open_dataset

_INPUT = flags.DEFINE_string('input', None, 'Input dataset: a .zarr store or a netCDF file.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output path: .zarr for zarr, else netCDF.')
_GRID = flags.DEFINE_string('grid', None, "Target grid, e.g. 'healpix:64', 'gaussian:128x64'.")
_METHOD = flags.DEFINE_enum(
    'method', 'spectral', list(regrid_lib.METHODS) + ['auto'],
    "Regridding method of every variable; 'auto': conservative for fields with missing "
    'values (NaN in the first chunk) and for non-negative fluxes and masks (by name or '
    'attrs), spectral for the rest.')
_METHOD_FOR = flags.DEFINE_multi_string(
    'method_for', [],
    "Per-variable methods overriding --method: NAME=METHOD, repeatable or comma-separated, "
    "e.g. --method_for=sea_surface_temperature=conservative,total_precipitation=auto.")
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
_HEALPIX_ORDER = flags.DEFINE_enum(
    'healpix_order', None, ['ring', 'nested', 'nest'],
    "Pixel order of a HEALPix output (default ring); 'nested' needs nside a power of two. "
    'Either way it is written as xdggs, CF 1.13 and easy.gems describe it.')
_REMOVE_STALE = flags.DEFINE_bool(
    'remove_stale_partials', False,
    'Remove <output>.partial-<pid> paths left by runs whose process is gone (by default they '
    'are named in a warning).')
_RUNNER = flags.DEFINE_string(
    'runner', None,
    "Run as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, "
    "FlinkRunner, SparkRunner, ...; needs the beam extra); the runner's own options "
    '(--project, --region, --temp_location, --direct_num_workers, ...) are passed through. '
    'Without it the local streaming path runs.')
_MEMORY_BUDGET = flags.DEFINE_float(
    'memory_budget_gib', None,
    'Largest size in GiB of one part of the regridder (grid, tables, weights); default 4 '
    '(sphere_plugin.sht.set_table_budget).')


_load = datasets.load


def parse_vector_pairs(text: str | None):
  """'auto' | 'none' | 'u:v,u2:v2' -> what `ds.sphere.regrid` takes."""
  if text is None or text.strip().lower() == 'auto':
    return 'auto'
  if text.strip().lower() in ('', 'none'):
    return None
  return [p.strip() for p in text.split(',') if p.strip()]


def parse_methods(method: str, method_for=()) -> str | dict[str, str]:
  """--method and --method_for -> what `ds.sphere.regrid(method=...)` takes.

  Args:
    method: the method of the variables `method_for` does not name.
    method_for: 'NAME=METHOD' items (each may hold several, comma-separated).

  Returns:
    `method` alone, or {NAME: METHOD, ..., '*': method}.
  """
  items = [i.strip() for text in method_for or () for i in text.split(',') if i.strip()]
  if not items:
    return method
  out = {}
  for item in items:
    name, sep, value = item.partition('=')
    if not sep or not name.strip() or not value.strip():
      raise ValueError(f'--method_for needs NAME=METHOD, got {item!r}')
    out[name.strip()] = value.strip()
  return {**out, '*': method}


default_chunk_dim = datasets.default_chunk_dim


def parse_chunk(text: str | None, ds: xr.Dataset, spatial: tuple[str, ...]):
  """'time=8' -> ('time', 8); default (default_chunk_dim, 8), or (None, 0).

  Several dims ('time=8,level=1') are for the Beam path (--runner) only.
  """
  chunks = datasets.parse_chunks(text, ds, spatial)
  if len(chunks) > 1:
    raise ValueError(f'--chunk={text} names several dims; the local path streams along one '
                     '(several need --runner, e.g. --runner=DirectRunner)')
  return next(iter(chunks.items()), (None, 0))


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


_check_output = atomic.check_output


def handle_stale_partials(output: str, remove: bool = False) -> list[str]:
  """Names (one warning line on stderr) or removes the partials of `output` left by
  runs whose process is gone (SIGKILL, power loss); returns them."""
  stale = atomic.stale_partials(output)
  if stale and remove:
    for path in stale:
      atomic.remove(path)
    print(f'regrid: removed stale partial outputs of {output!r}: {", ".join(stale)}',
          file=sys.stderr)
  elif stale:
    print(f'regrid: warning: stale partial outputs of {output!r} from runs that are gone: '
          f'{", ".join(stale)}; delete them or pass --remove_stale_partials', file=sys.stderr)
  return stale


_check_not_empty = datasets.check_not_empty


def chunk_steps(dim: str | None, size: int, length: int):
  """The selections streamed, made one at a time (a time dim of 10**10 costs nothing).

  Returns:
    (number of steps, iterator of slices along `dim`).
  """
  if dim is None:
    return 1, iter([slice(None)])
  return -(-length // size), (slice(i, min(i + size, length)) for i in range(0, length, size))


_stamped_missing = accessor.stamped_missing
_stamp_missing = accessor.stamp_missing


def _note(message: str) -> None:
  """A progress line on stderr (above a progress bar, if one is showing)."""
  tqdm.tqdm.write(f'regrid: {message}', file=sys.stderr)


@contextlib.contextmanager
def _one_line_warnings(tool: str):
  """Prints warnings as one line `<tool>: warning: <message>` on stderr, above the
  progress bar (`tqdm.write`), without a source location inside the library."""
  saved = warnings.showwarning

  def show(message, *_, **__):
    tqdm.tqdm.write(f'{tool}: warning: {message}', file=sys.stderr)

  warnings.showwarning = show
  try:
    yield
  finally:
    warnings.showwarning = saved


@contextlib.contextmanager
def _writing(output: str):
  """Says which output a storage error is about, with the free space left there."""
  try:
    yield
  except (OSError, RuntimeError) as e:  # netCDF reports a full disk as 'NetCDF: HDF error'
    parent = os.path.dirname(os.path.abspath(output))
    try:
      free = f'{shutil.disk_usage(parent).free / 2**20:.0f} MiB free on its file system'
    except OSError:
      free = 'free space unknown'
    raise OSError(f'writing {output!r} failed ({errors.message(e)}); {free}; the partial '
                  'output was removed') from e


def _regrid_later_chunk(part, dim, target, to_regrid, partial, pairs, options):
  """A chunk after the first: only the variables with the chunk dim.

  Args:
    part: the chunk (lazy).
    dim: the chunk dim.
    target: target Grid.
    to_regrid, partial, pairs: from `accessor.plan`.
    options: keyword arguments of `accessor.regrid_dataset`; `method` is
      {name: method} for every variable of `to_regrid` (chosen on the first chunk).

  Returns:
    the regridded chunk, in memory.
  """
  names = [n for n, v in part.data_vars.items() if dim in v.dims and n not in partial]
  return accessor.regrid_part(part, names, target, to_regrid, pairs, load=_load, **options)


def method_text(method) -> str:
  """--method / --method_for as one short text for progress lines."""
  if isinstance(method, str):
    return method
  return ', '.join(f'{k}={v}' for k, v in method.items())


def regrid_file(input_path: str, output: str, grid: str, method='spectral', *,
                variables=None, vector_pairs='auto', chunk: str | None = None,
                overwrite: bool = False, lmax: int | None = None,
                taper: float | None = None, order: str | None = None,
                progress: bool = True, remove_stale_partials: bool = False) -> str:
  """Regrids a dataset file to `grid`, streaming along the chunk dim.

  Args:
    input_path: zarr store or netCDF file.
    output: path written (zarr if it ends with .zarr, else netCDF).
    grid: target grid text form.
    method, variables, vector_pairs, lmax, taper, order: as `ds.sphere.regrid`
      (HEALPix input in any order the conventions declare; `order` is the
      HEALPix output's, default 'ring'). `method` may be 'auto' or a mapping
      (`parse_methods`); 'auto' decides on the first chunk (NaN there) and
      keeps that method for the run (a spectral variable with NaN in a later
      chunk is refused, naming it).
    chunk: 'dim=size' streamed per step (see `parse_chunk`).
    overwrite: replace an existing output, also one that appeared during the
      run (without it, such an output is kept and FileExistsError raised).
    progress: show a progress bar on stderr.
    remove_stale_partials: remove partials of `output` whose process is gone
      (otherwise they are named in one warning line).

  Returns:
    the output path.

  Raises:
    interrupts.Interrupted: SIGTERM/SIGINT arrived (main thread); the partial
      output was removed after the writers stopped.
  """
  target = grids.parse(grid)
  _check_output(output, overwrite)
  handle_stale_partials(output, remove_stale_partials)
  ds = open_dataset(input_path)
  if progress:
    _note(f'preparing {method_text(method)} regridding to {target} (building the transform tables or '
          'weights, cached for later chunks; the first chunk also compiles)')
  prepared = time.time()
  # Every check before any work (plan() also sizes the regridder: regrid.memory).
  ds, _, _, spatial, to_regrid, partial, pairs, _ = accessor.plan(
      ds, target, method, variables=variables, vector_pairs=vector_pairs, lmax=lmax,
      taper=taper, order=order)
  if progress:
    _note(f'regridder ready in {time.time() - prepared:.1f} s')
  _check_not_empty(ds, input_path)
  dim, size = parse_chunk(chunk, ds, spatial)
  total, steps = chunk_steps(dim, size, ds.sizes[dim] if dim is not None else 1)
  to_zarr = output.rstrip('/').endswith('.zarr')
  # One ringing report for the run: its warning comes once per variable, not per chunk.
  options = dict(method=method, lmax=lmax, taper=taper, order=order,
                 ringing=accessor.RingingReport())
  missing_later = set()  # variables whose NaN showed up after the first chunk
  started = time.time()
  # Signals raise inside; the partial is removed only once every writer has stopped.
  with interrupts.raising_on_signals(), atomic.atomic_path(output, overwrite=overwrite) as tmp:
    tmp_store = tmp if to_zarr else tmp + '.zarr'
    try:
      with writers.settled():
        bar = tqdm.tqdm(steps, total=total, desc=f'regrid to {target}', unit='chunk',
                        disable=not progress, file=sys.stderr)
        for i, step in enumerate(bar):
          interrupts.raise_if_stopped()  # a SIGTERM whose raise Python swallowed
          part = ds if dim is None else ds.isel({dim: step})
          if i == 0:
            part = _load(part)
            chosen = accessor.choose_methods(part, method, to_regrid, pairs)
            options['method'] = {n: m for n, (m, _) in chosen.items()}
            out = accessor.regrid_dataset(part, target, vector_pairs=pairs, **options)
          else:  # variables without the chunk dim were written with the first chunk
            out = _regrid_later_chunk(part, dim, target, to_regrid, partial, pairs, options)
          # The input's storage encoding (codecs, chunks) does not fit the new shapes.
          out = out.drop_encoding()
          if i == 0:
            first_missing = _stamped_missing(out)
          else:
            missing_later |= _stamped_missing(out) - first_missing
          with _writing(output):
            if i == 0:
              out.to_zarr(tmp_store, mode='w', encoding=datasets.time_encoding(out), zarr_format=2)
            else:
              out.to_zarr(tmp_store, append_dim=dim)
        if missing_later:  # appends keep the first chunk's attrs
          with _writing(output):
            _stamp_missing(tmp_store, missing_later)
        if not to_zarr:
          with _writing(output):
            chunks = {dim: size} if dim is not None else {}
            final = xr.open_zarr(tmp_store, chunks=chunks)
            _netcdf_safe(final).to_netcdf(tmp)
            final.close()
    finally:
      if not to_zarr:
        atomic.remove(tmp_store)
  if progress:
    print(f'wrote {output} ({target}) in {time.time() - started:.1f} s; methods: '
          f'{regrid_lib.methods.summary(chosen, pairs)}', file=sys.stderr)
  return output


def main(argv) -> int:
  """absl main: regrids --input to --output.

  Returns:
    0; 1 after any error, reported in one line on stderr (`--verbose` adds
    the traceback); 128 + signum when SIGTERM/SIGINT stopped it.
  """
  pipeline_args = list(argv[1:])
  if pipeline_args and not _RUNNER.value:
    return errors.fail('regrid', f'unknown arguments {pipeline_args}: runner options are '
                       'taken only with --runner (e.g. --runner=DataflowRunner --project=...)')
  allocator.retain_freed_memory()
  if not flags.FLAGS['verbosity'].present:
    # JAX logs 'Unable to initialize backend ...' at INFO on its first backend use,
    # which lands inside the progress bar; --verbosity=0 shows it again.
    logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  for flag in (_INPUT, _OUTPUT, _GRID):
    if not flag.value:
      print(f'regrid: error: --{flag.name} is required', file=sys.stderr)
      return 1
  if _MEMORY_BUDGET.value is not None:
    sht.set_table_budget(int(_MEMORY_BUDGET.value * 2**30))

  def work():
    if _RUNNER.value:
      from sphere_plugin.beam import regrid as beam_regrid  # pylint: disable=g-import-not-at-top
      if not flags.FLAGS['verbosity'].present:
        # Beam and xarray-beam log set-up steps and optional-dependency notes on the
        # root logger, and a failed worker's traceback at ERROR; the error is our one
        # line (--verbose: traceback); --verbosity=0 shows their logs again.
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger('apache_beam').setLevel(logging.CRITICAL)
      handle_stale_partials(_OUTPUT.value, _REMOVE_STALE.value)
      with interrupts.raising_on_signals():  # SIGTERM/SIGINT: the partial is removed
        beam_regrid.regrid_zarr(
            _INPUT.value, _OUTPUT.value, _GRID.value,
            parse_methods(_METHOD.value, _METHOD_FOR.value), variables=_VARIABLES.value,
            vector_pairs=parse_vector_pairs(_VECTOR_PAIRS.value), chunks=_CHUNK.value,
            overwrite=_OVERWRITE.value, lmax=_LMAX.value, taper=_TAPER.value,
            order=_HEALPIX_ORDER.value, runner=_RUNNER.value, pipeline_args=pipeline_args)
      return
    regrid_file(_INPUT.value, _OUTPUT.value, _GRID.value,
                parse_methods(_METHOD.value, _METHOD_FOR.value),
                variables=_VARIABLES.value,
                vector_pairs=parse_vector_pairs(_VECTOR_PAIRS.value), chunk=_CHUNK.value,
                overwrite=_OVERWRITE.value, lmax=_LMAX.value, taper=_TAPER.value,
                order=_HEALPIX_ORDER.value, remove_stale_partials=_REMOVE_STALE.value)

  status = errors.run_main('regrid', work, stopped_note='; the partial output was removed')
  if _RUNNER.value and status > 128:
    # Stopped by a signal, partial removed: Beam's in-process worker threads do not
    # stop with the main thread, and Python's exit would wait for them (seen to hang
    # under load); nothing of ours is left to flush, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access
  return status


def run() -> None:
  """Console-script entry point (`sphere-regrid`)."""
  help_lib.declare_key_flags(__name__)  # --help lists --input, --grid, ...
  with _one_line_warnings('regrid'):  # not in main(): callers may record warnings
    # Flags we do not know are the Beam runner's options (--project, --region, ...),
    # passed through to it; without --runner main() refuses them in one line.
    app.run(lambda argv: sys.exit(main(argv)),
            flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
