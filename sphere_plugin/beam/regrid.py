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
chunks (the same functions regrid the same chunks). Differences: the output is
zarr only; the `regrid_missing_values` note comes from the first chunk (the
CLI also adds it for NaN first seen in later chunks).
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
from sphere_plugin.beam import pipelines
from sphere_plugin.io import atomic
from sphere_plugin.io import datasets


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


@functools.lru_cache(maxsize=4)
def planned(job: RegridJob):
  """The opened input and its `accessor.plan` (regridders built), once per process."""
  ds = datasets.open_dataset(job.input_path)
  return accessor.plan(ds, job.grid, dict(job.methods) or 'spectral',
                       variables=None if job.variables is None else list(job.variables),
                       vector_pairs=[list(p) for p in job.vector_pairs], lmax=job.lmax,
                       taper=job.taper, order=job.order)


def regrid_chunk(job: RegridJob, offsets: Mapping[str, int],
                 names: Sequence[str] | None = None) -> xr.Dataset:
  """One chunk of the output, in memory.

  Args:
    job: the RegridJob.
    offsets: {chunk dim: start offset}.
    names: the variables to return (default: those with a chunk dim whose
      other chunk dims start at 0 here, i.e. each piece written exactly once).

  Returns:
    the regridded chunk (dims of the output, sizes of the chunk).
  """
  ds, _, target, _, to_regrid, partial, pairs, _ = planned(job)
  chunks = dict(job.chunks)
  part = ds.isel({d: slice(o, o + chunks[d]) for d, o in offsets.items()})
  if names is None:
    names = [n for n, v in part.data_vars.items() if n not in partial
             and set(v.dims) & set(chunks)
             and all(offsets[d] == 0 for d in chunks if d not in v.dims)]
  out = accessor.regrid_part(part, list(names), target, to_regrid, pairs, load=datasets.load,
                             method=dict(job.methods), lmax=job.lmax, taper=job.taper,
                             order=job.order, ringing=_RINGING)
  return out.drop_encoding()


_RINGING = accessor.RingingReport()  # once per variable and process


def keyed_pieces(job: RegridJob, offsets: Mapping[str, int], xbeam):
  """(xarray_beam.Key, Dataset) per group of variables sharing their chunk dims."""
  out = regrid_chunk(job, offsets)
  chunks = dict(job.chunks)
  groups: dict[tuple[str, ...], list[str]] = {}
  for n, v in out.data_vars.items():
    groups.setdefault(tuple(d for d in chunks if d in v.dims), []).append(n)
  for dims, names in groups.items():
    piece = out[names]
    piece = piece.drop_vars([c for c in piece.coords if c not in piece.dims])
    key = xbeam.Key({d: offsets[d] if d in dims else 0 for d in piece.dims})
    yield key, piece


def _template(first: xr.Dataset, ds: xr.Dataset, chunks: Mapping[str, int], xbeam):
  """The output's lazy template: `first` (the first chunk, regridded) widened to the
  full chunk dims; variables and coords without a chunk dim are kept in memory, so
  the set-up writes them once."""
  lazy = {n for n, v in first.variables.items()
          if set(v.dims) & set(chunks) and n not in first.indexes}
  template = xbeam.make_template(first, lazy_vars=lazy)
  static = [n for n in first.data_vars if n not in lazy]
  template = template.drop_vars(static)
  template = xbeam.replace_template_dims(
      template, **{d: ds[d].values if d in ds.coords else ds.sizes[d] for d in chunks})
  eager = {n: first[n].variable for n in first.coords
           if n not in lazy and not set(first[n].dims) & set(chunks)}
  template = template.assign_coords(eager)
  template = template.assign({n: first[n].variable for n in static})
  # Keep the variables in the order of the first chunk (the CLI's order).
  return template[list(first.data_vars)].assign_attrs(first.attrs)


class _RegridChunks:
  """Beam DoFn factory: a DoFn class made when apache_beam is imported."""

  @staticmethod
  def make(beam, xbeam):

    class RegridChunks(beam.DoFn):
      """Regrids one chunk per element (offsets) into keyed pieces for ChunksToZarr."""

      def __init__(self, job: RegridJob):
        super().__init__()
        self.job = job

      def setup(self):  # once per worker process (per DoFn instance; cached per process)
        planned(self.job)

      def process(self, offsets):
        yield from keyed_pieces(self.job, offsets, xbeam)

    return RegridChunks


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
  beam, xbeam = pipelines.require()
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
      lmax=lmax, taper=taper, order=order)
  first = regrid_chunk(job, {d: 0 for d in chunks}, names=list(first_part.data_vars))
  offsets = pipelines.chunk_offsets(ds.sizes, chunks)
  if progress:
    print(f'regrid: {len(offsets)} chunks of {chunks or "the whole dataset"} on {runner}; '
          f'methods: {regrid_lib.methods.summary(chosen, pairs)}', file=sys.stderr)
  if not chunks:  # no dim to split along: the first chunk is all of it
    with pipelines.published_output(output, overwrite) as tmp:
      first.to_zarr(tmp, mode='w', zarr_format=2, encoding=datasets.time_encoding(first))
    return chosen
  template = _template(first, ds, chunks, xbeam)
  zarr_chunks = {d: chunks.get(d, -1) for d in template.dims}
  regrid_fn = _RegridChunks.make(beam, xbeam)
  with pipelines.published_output(output, overwrite) as tmp:

    def build(p):
      _ = (p
           | 'Chunks' >> beam.Create(offsets, reshuffle=True)
           | 'Regrid' >> beam.ParDo(regrid_fn(job))
           | 'Write' >> xbeam.ChunksToZarr(
               tmp, template, zarr_chunks, zarr_format=2,
               encoding=datasets.time_encoding(template)))

    pipelines.run(build, runner, pipeline_args)
  if progress:
    print(f'wrote {output} ({target}) in {time.time() - started:.1f} s on {runner}',
          file=sys.stderr)
  return chosen
