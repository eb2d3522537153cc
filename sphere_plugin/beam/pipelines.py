"""What every Beam pipeline of sphere_plugin shares: the extra, running, publishing.

* `require()` imports apache_beam and xarray_beam, or raises one ImportError
  line naming the extra.
* `run(build, runner, pipeline_args)` builds a pipeline with `build(p)`, runs
  it on `runner` with the options in `pipeline_args` (the runner's own flags,
  passed through untouched) and waits; a failed run raises.
* `published_output(output, overwrite)` yields the path to write
  (`<output>.partial-<pid>`), which becomes `output` only when the block ends
  without an error: a failed or interrupted pipeline leaves nothing at the
  final path, and a rerun starts clean (the CLI's write-then-rename rule,
  `sphere_plugin.io.atomic`). Local paths are renamed atomically; object
  stores (gs://, s3://, any fsspec URL) have no atomic directory rename, so the
  partial is moved there (copy, then delete) after the pipeline succeeded.
* `chunk_offsets(sizes, chunks)` lists the chunks' start offsets.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
from typing import Callable, Iterator, Mapping, Sequence

from sphere_plugin.io import atomic
from sphere_plugin.io import interrupts

EXTRA_HINT = "pip install 'sphere_plugin[beam]' (apache-beam, xarray-beam)"


def require():
  """(apache_beam, xarray_beam), or one ImportError line naming the extra."""
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top
    import xarray_beam  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'the Beam pipelines need the beam extra: {EXTRA_HINT} '
                      f'({e.name or e} is missing)') from None
  return apache_beam, xarray_beam


def run(build: Callable, runner: str = 'DirectRunner',
        pipeline_args: Sequence[str] = ()) -> None:
  """Builds a pipeline with `build(pipeline)`, runs it on `runner` and waits.

  Args:
    build: called with the `beam.Pipeline` to add the transforms.
    runner: a Beam runner name ('DirectRunner', 'DataflowRunner', 'FlinkRunner',
      'SparkRunner', ...).
    pipeline_args: the runner's options as command-line flags, e.g.
      ['--project=my-project', '--region=us-central1',
      '--temp_location=gs://bucket/tmp'] or, for the DirectRunner,
      ['--direct_num_workers=2', '--direct_running_mode=multi_threading'].

  Raises:
    RuntimeError: the pipeline ended in another state than DONE (runners that
      raise the worker's exception themselves, like the DirectRunner, raise it).
    interrupts.Interrupted: SIGTERM/SIGINT arrived while a worker of this
      process ran (inside `interrupts.raising_on_signals`).
  """
  beam, _ = require()
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  options = pipeline_options.PipelineOptions(list(pipeline_args), runner=local_runner(runner))
  pipeline = beam.Pipeline(options=options)
  build(pipeline)
  try:
    state = pipeline.run().wait_until_finish()
  except Exception as e:  # pylint: disable=broad-except
    stopped = _interrupted(e)
    if stopped is not None:  # a signal inside a worker on this process: say it as such
      raise stopped from e
    raise
  if state is not None and str(state).rsplit('.', 1)[-1] != 'DONE':
    raise RuntimeError(f'the Beam pipeline on {runner} ended in state {state}')


def local_runner(runner: str) -> str:
  """The Beam runner that `runner` names here: 'DirectRunner' is Beam's in-process
  FnApiRunner (what Beam's own DirectRunner falls back to), so a local run never
  downloads Beam's Go runner (Prism) from the network; ask for 'PrismRunner' by
  name to use it. Every other name is passed to Beam unchanged.

  Args:
    runner: a runner name as on the command line ('DirectRunner', 'DataflowRunner', ...).

  Returns:
    the runner name to give Beam's PipelineOptions.
  """
  return 'FnApiRunner' if runner.lower() in ('direct', 'directrunner') else runner


def _interrupted(error: BaseException) -> interrupts.Interrupted | None:
  """The SIGTERM/SIGINT (`interrupts.Interrupted`) that a runner wrapped into its own
  error (the DirectRunner runs workers in this process and re-raises their errors as
  RuntimeError, keeping only the text), or None."""
  seen = error
  while seen is not None:
    if isinstance(seen, interrupts.Interrupted):
      return seen
    seen = seen.__cause__ or seen.__context__
  match = re.search(r'Interrupted: stopped by (SIG[A-Z]+)', str(error))
  return interrupts.Interrupted(signal.Signals[match.group(1)]) if match else None


def _is_url(path: str) -> bool:
  return '://' in os.fspath(path)


@contextlib.contextmanager
def published_output(output: str, overwrite: bool = False) -> Iterator[str]:
  """Yields the partial path to write; publishes it as `output` on success.

  Args:
    output: the final path (local, or an fsspec URL such as gs://bucket/x.zarr).
    overwrite: replace an existing output (else FileExistsError up front, and
      for local paths also when one appears during the run).

  On any exception the partial is removed and `output` is left as it was.
  """
  output = os.fspath(output).rstrip('/')
  if not _is_url(output):
    if os.path.exists(output) and not overwrite:
      raise FileExistsError(f'output {output!r} exists; pass --overwrite to replace it')
    with atomic.atomic_path(output, overwrite=overwrite) as tmp:
      yield tmp
    return
  import fsspec  # pylint: disable=g-import-not-at-top
  fs, path = fsspec.core.url_to_fs(output)
  if fs.exists(path) and not overwrite:
    raise FileExistsError(f'output {output!r} exists; pass --overwrite to replace it')
  tmp = atomic.partial_path(output)
  _, tmp_path = fsspec.core.url_to_fs(tmp)
  if fs.exists(tmp_path):
    fs.rm(tmp_path, recursive=True)
  try:
    yield tmp
    interrupts.raise_if_stopped()  # a SIGTERM whose raise was swallowed: do not publish
    if fs.exists(path):
      fs.rm(path, recursive=True)
    fs.mv(tmp_path, path, recursive=True)
  finally:
    if fs.exists(tmp_path):
      fs.rm(tmp_path, recursive=True)


def chunk_offsets(sizes: Mapping[str, int], chunks: Mapping[str, int]) -> list[dict[str, int]]:
  """Start offsets of every chunk: [{dim: offset, ...}, ...] over `chunks`' dims.

  Args:
    sizes: the dataset's dim sizes.
    chunks: {dim: chunk size} (each >= 1).
  """
  dims = list(chunks)
  ranges = [range(0, int(sizes[d]), int(chunks[d])) for d in dims]
  return [dict(zip(dims, o)) for o in itertools.product(*ranges)]


def keyed_pieces(out, offsets: Mapping[str, int], chunks: Mapping[str, int], xbeam):
  """(xarray_beam.Key, Dataset) pieces of one computed chunk, for ChunksToZarr.

  Variables are grouped by the chunk dims they have (a variable with time but
  not level is one piece per time chunk); coordinates written at set-up (see
  `template`) are dropped.

  Args:
    out: the computed chunk (in memory).
    offsets: {chunk dim: start offset} of the chunk.
    chunks: {chunk dim: size}.
    xbeam: the xarray_beam module.
  """
  groups: dict[tuple[str, ...], list[str]] = {}
  for n, v in out.data_vars.items():
    groups.setdefault(tuple(d for d in chunks if d in v.dims), []).append(n)
  for dims, names in groups.items():
    piece = out[names]
    piece = piece.drop_vars([c for c in piece.coords if c not in piece.dims])
    yield xbeam.Key({d: offsets[d] if d in dims else 0 for d in piece.dims}), piece


def template(first, ds, chunks: Mapping[str, int], xbeam):
  """The output's lazy template for ChunksToZarr, from its first chunk.

  Args:
    first: the first chunk of the output (offsets 0), computed in memory, with
      every variable (also those without a chunk dim).
    ds: the input, for the full coordinates (or sizes) of the chunk dims.
    chunks: {chunk dim: size}.
    xbeam: the xarray_beam module.

  Returns:
    `first` widened to the full chunk dims: variables with a chunk dim lazy
    (written by the workers), the others and every coordinate without a chunk
    dim in memory (written once, at set-up), attrs and variable order kept.
  """
  lazy = {n for n, v in first.variables.items()
          if set(v.dims) & set(chunks) and n not in first.indexes}
  static = [n for n in first.data_vars if n not in lazy]
  out = xbeam.make_template(first, lazy_vars=lazy).drop_vars(static)
  out = xbeam.replace_template_dims(
      out, **{d: ds[d].values if d in ds.coords else ds.sizes[d] for d in chunks})
  out = out.assign_coords({n: first[n].variable for n in first.coords
                           if n not in lazy and not set(first[n].dims) & set(chunks)})
  out = out.assign({n: first[n].variable for n in static})
  return out[list(first.data_vars)].assign_attrs(first.attrs)


def chunk_names(part, offsets: Mapping[str, int], chunks: Mapping[str, int],
                skip=()) -> list[str]:
  """The variables a chunk at `offsets` writes: those with a chunk dim whose other
  chunk dims start at 0 there (so each piece of the output is written exactly once;
  variables without a chunk dim are written with the template)."""
  return [n for n, v in part.data_vars.items() if n not in skip and set(v.dims) & set(chunks)
          and all(offsets[d] == 0 for d in chunks if d not in v.dims)]


def chunks_to_zarr(output: str, *, overwrite: bool, first, ds, chunks: Mapping[str, int],
                   prepare: Callable, compute: Callable, job, runner: str,
                   pipeline_args: Sequence[str], finish: Callable | None = None) -> None:
  """Computes every chunk on the workers and writes the zarr `output` (format 2).

  Args:
    output: the zarr store to publish (`published_output`: nothing there on failure).
    overwrite: replace an existing output.
    first: the first chunk of the output, computed by the driver (`template`).
    ds: the input (its sizes and chunk-dim coordinates).
    chunks: {chunk dim: size}; {} writes `first` as the whole output.
    prepare: prepare(job), once per worker (open the input, build the tables).
    compute: compute(job, offsets) -> the output chunk at offsets, in memory.
    job: a small picklable description of the work.
    runner, pipeline_args: the Beam runner and its options (`run`).
    finish: finish(partial store), after every chunk is written and before it
      is published (e.g. attrs only the workers could know).
  """
  beam, xbeam = require()
  from sphere_plugin.io import datasets  # pylint: disable=g-import-not-at-top
  if not chunks:  # no dim to split along: the first chunk is all of it
    with published_output(output, overwrite) as tmp:
      first.to_zarr(tmp, mode='w', zarr_format=2, encoding=datasets.time_encoding(first))
    return
  lazy = template(first, ds, chunks, xbeam)
  zarr_chunks = {d: chunks.get(d, -1) for d in lazy.dims}

  class ComputeChunks(beam.DoFn):
    """One chunk per element (its offsets) -> keyed pieces for ChunksToZarr."""

    def setup(self):  # once per DoFn instance; `prepare` caches per process
      prepare(job)

    def process(self, offsets):
      yield from keyed_pieces(compute(job, offsets), offsets, chunks, xbeam)

  with published_output(output, overwrite) as tmp:

    def build(p):
      _ = (p
           | 'Chunks' >> beam.Create(chunk_offsets(ds.sizes, chunks), reshuffle=True)
           | 'Compute' >> beam.ParDo(ComputeChunks())
           | 'Write' >> xbeam.ChunksToZarr(tmp, lazy, zarr_chunks, zarr_format=2,
                                           encoding=datasets.time_encoding(lazy)))

    run(build, runner, pipeline_args)
    if finish is not None:
      finish(tmp)
