"""Regrid a dataset to a zarr on another grid as an Apache Beam pipeline.

    regrid_zarr('gs://b/era5.zarr', 'gs://b/era5_hp64.zarr', 'healpix:64', method='auto',
                chunks={'time': 8}, runner='DataflowRunner',
                pipeline_args=['--project=p', '--region=us-central1',
                               '--temp_location=gs://b/tmp'])

How it runs:

1. The driver opens the input lazily, checks the request exactly as the local
   CLI does (`accessor.plan`: grids, variables, vector pairs, memory budget),
   regrids the first chunk itself and makes from it the output's template
   (`xarray_beam.make_template`, widened to the full chunk dims): attrs,
   coordinates and the variables without a chunk dim (static fields) are
   written once, at set-up, into `<output>.partial-<pid>`. The methods are
   chosen on this first chunk ('auto': NaN there -> conservative) and fixed for
   the whole run, as in the CLI.
2. One element per chunk (its start offsets along `chunks`' dims, e.g. 8 time
   steps x 1 level) goes to the workers. Each worker process opens the input
   and builds the regridders once (`accessor.plan`, whose tables and weights
   are cached per process), then per chunk reads only that chunk, regrids it
   (`accessor.regrid_part`, the CLI's code) and writes it into its region of
   the zarr (`xarray_beam.ChunksToZarr`). Memory per worker is one chunk plus
   the regridder, whatever the dataset's length.
3. When every chunk is written the partial store becomes the output
   (`pipelines.published_output`); a failed run leaves no output and a rerun
   starts clean.

The result equals the local `tools/regrid.py` output on the same input and
chunks (the same functions regrid the same chunks; a variable whose NaN first
appear in a later chunk gets its `regrid_missing_values` note as in the CLI:
the worker leaves a marker in the partial store, the driver adds the note
before publishing). The output is zarr only.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Mapping, Sequence

import xarray as xr

from sphere_plugin import accessor
from sphere_plugin import grids as grids_lib
from sphere_plugin import regrid as regrid_lib
from sphere_plugin import sht
from sphere_plugin.beam import pipelines
from sphere_plugin.io import atomic
from sphere_plugin.io import datasets
from sphere_plugin.io import interrupts


@dataclasses.dataclass(frozen=True)
class RegridJob:
  """What a worker needs to regrid any chunk (small and picklable).

  Attributes:
    input_path: the input dataset (zarr store or netCDF file; a URL for zarr).
    grid: the target grid text.
    methods: ((variable, method), ...) chosen on the first chunk.
    variables: the variables asked for (None: all).
    vector_pairs: ((u, v), ...) regridded as vectors.
    chunks: ((dim, size), ...) the chunking.
    lmax, taper, order: as `ds.sphere.regrid`.
    table_budget: the driver's regridder memory budget in bytes
      (`sphere_plugin.sht.set_table_budget`, --memory_budget_gib), applied on
      the workers too.
    noted: variables whose missing values the first chunk already noted.
    markers: where a worker leaves an empty file per variable whose NaN it
      found first (a folder inside the partial store); the driver adds their
      `regrid_missing_values` notes before publishing, as the CLI does.
  """
  input_path: str
  grid: str
  methods: tuple[tuple[str, str], ...]
  variables: tuple[str, ...] | None
  vector_pairs: tuple[tuple[str, str], ...]
  chunks: tuple[tuple[str, int], ...]
  lmax: int | None = None
  taper: float | None = None
  order: str | None = None
  table_budget: int | None = None
  noted: tuple[str, ...] = ()
  markers: str | None = None


@functools.lru_cache(maxsize=4)
def planned(job: RegridJob):
  """The opened input and its `accessor.plan` (regridders built), once per process."""
  if job.table_budget is not None:
    sht.set_table_budget(job.table_budget)
  ds = datasets.open_dataset(job.input_path)
  return accessor.plan(ds, job.grid, dict(job.methods) or 'spectral',
                       variables=None if job.variables is None else list(job.variables),
                       vector_pairs=[list(p) for p in job.vector_pairs], lmax=job.lmax,
                       taper=job.taper, order=job.order)


def regrid_chunk(job: RegridJob, offsets: Mapping[str, int]) -> xr.Dataset:
  """One chunk of the output, in memory: the variables with a chunk dim whose
  other chunk dims start at 0 here (`pipelines.chunk_names`).

  Args:
    job: the RegridJob.
    offsets: {chunk dim: start offset}.

  Returns:
    the regridded chunk (dims of the output, sizes of the chunk).
  """
  interrupts.raise_if_stopped()  # in-process workers: stop soon after a swallowed SIGTERM
  ds, _, target, _, to_regrid, partial, pairs, _ = planned(job)
  chunks = dict(job.chunks)
  part = ds.isel({d: slice(o, o + chunks[d]) for d, o in offsets.items()})
  names = pipelines.chunk_names(part, offsets, chunks, skip=partial)
  out = accessor.regrid_part(part, names, target, to_regrid, pairs, load=datasets.load,
                             method=dict(job.methods), lmax=job.lmax, taper=job.taper,
                             order=job.order, ringing=_RINGING)
  _mark_missing(job, accessor.stamped_missing(out) - set(job.noted))
  return out.drop_encoding()


MARKERS = '.sphere_plugin_missing_values'  # inside the partial store, removed before publishing


def _mark_missing(job: RegridJob, names) -> None:
  """Leaves an empty marker file per variable (idempotent; any worker, any order)."""
  if not names or job.markers is None:
    return
  import fsspec  # pylint: disable=g-import-not-at-top
  fs, root = fsspec.core.url_to_fs(job.markers)
  fs.makedirs(root, exist_ok=True)
  for name in names:
    fs.touch(f'{root}/{name}')


def _stamp_marked(store: str) -> None:
  """Adds the notes the workers marked to the partial store; removes the markers."""
  import fsspec  # pylint: disable=g-import-not-at-top
  fs, root = fsspec.core.url_to_fs(f'{store}/{MARKERS}')
  if not fs.exists(root):
    return
  names = sorted(p.rstrip('/').rsplit('/', 1)[-1] for p in fs.ls(root, detail=False))
  fs.rm(root, recursive=True)
  if names:
    accessor.stamp_missing(store, names)


_RINGING = accessor.RingingReport()  # once per variable and process


def regrid_zarr(input_path: str, output: str, grid: str, method='spectral', *,
                variables=None, vector_pairs='auto', chunks: Mapping[str, int] | None = None,
                lmax: int | None = None, taper: float | None = None,
                order: str | None = None, overwrite: bool = False,
                runner: str = 'DirectRunner', pipeline_args: Sequence[str] = (),
                progress: bool = True) -> dict[str, tuple[str, str]]:
  """Regrids a dataset to a zarr store on `grid` with a Beam pipeline.

  Args:
    input_path: zarr store (local or URL) or netCDF file the workers can read.
    output: the zarr store written (local path or fsspec URL, '.zarr').
    grid: target grid text ('healpix:64', 'gaussian:128x64', ...).
    method: as `ds.sphere.regrid`: a method, 'auto', or {variable: method,
      '*': default}; chosen on the first chunk and kept for the run.
    variables, vector_pairs, lmax, taper, order: as `ds.sphere.regrid`.
    chunks: {dim: size} of each work item, e.g. {'time': 8} or {'time': 8,
      'level': 1}, or its text form 'time=8,level=1' (default: 8 steps of the
      first time-like dim, `io.datasets.parse_chunks`). The output
      zarr is chunked the same way (spatial dims whole).
    overwrite: replace an existing output.
    runner, pipeline_args: the Beam runner and its options (`pipelines.run`).
    progress: notes on stderr.

  Returns:
    {variable: (method, reason)}, the methods used.

  Raises:
    ValueError: as the CLI (bad grid, variables, pairs, empty input, ...), or
      an output that is not '.zarr'.
    FileExistsError: the output exists and not overwrite.
    ImportError: the beam extra is not installed.
  """
  pipelines.require()
  if not output.rstrip('/').endswith('.zarr'):
    raise ValueError(f'the Beam path writes zarr only: give an output ending in .zarr '
                     f'(got {output!r})')
  target = grids_lib.parse(grid)
  atomic.check_output(output, overwrite)
  ds = datasets.open_dataset(input_path)
  ds, _, _, spatial, to_regrid, _, pairs, _ = accessor.plan(
      ds, target, method, variables=variables, vector_pairs=vector_pairs, lmax=lmax,
      taper=taper, order=order)
  datasets.check_not_empty(ds, input_path)
  if chunks is None or isinstance(chunks, str):
    chunks = datasets.parse_chunks(chunks, ds, spatial)
  chunks = {d: min(int(n), ds.sizes[d]) for d, n in chunks.items()}
  started = time.time()
  first_part = datasets.load(ds.isel({d: slice(0, n) for d, n in chunks.items()}))
  chosen = accessor.choose_methods(first_part, method, to_regrid, pairs)
  job = RegridJob(
      input_path=str(input_path), grid=str(target),
      methods=tuple((n, m) for n, (m, _) in chosen.items()),
      variables=None if variables is None else tuple(
          [variables] if isinstance(variables, str) else variables),
      vector_pairs=tuple(tuple(p) for p in pairs), chunks=tuple(chunks.items()),
      lmax=lmax, taper=taper, order=order, table_budget=sht.get_table_budget())
  # The first chunk, as the CLI's: every variable (static ones too); the template.
  first = accessor.regrid_dataset(first_part, target, dict(job.methods), vector_pairs=pairs,
                                  lmax=lmax, taper=taper, order=order,
                                  ringing=_RINGING).drop_encoding()
  if progress:
    print(f'regrid: {len(pipelines.chunk_offsets(ds.sizes, chunks))} chunks of '
          f'{chunks or "the whole dataset"} on {runner}; methods: '
          f'{regrid_lib.methods.summary(chosen, pairs)}', file=sys.stderr)
  job = dataclasses.replace(job, noted=tuple(sorted(accessor.stamped_missing(first))),
                            markers=f'{atomic.partial_path(output)}/{MARKERS}')
  pipelines.chunks_to_zarr(output, overwrite=overwrite, first=first, ds=ds, chunks=chunks,
                           prepare=planned, compute=regrid_chunk, job=job, runner=runner,
                           pipeline_args=pipeline_args, finish=_stamp_marked)
  if progress:
    print(f'wrote {output} ({target}) in {time.time() - started:.1f} s on {runner}',
          file=sys.stderr)
  return chosen
