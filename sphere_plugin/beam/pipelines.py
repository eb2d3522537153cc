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
from typing import Callable, Iterator, Mapping, Sequence

from sphere_plugin.io import atomic

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
  """
  beam, _ = require()
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  options = pipeline_options.PipelineOptions(list(pipeline_args), runner=runner)
  pipeline = beam.Pipeline(options=options)
  build(pipeline)
  result = pipeline.run()
  state = result.wait_until_finish()
  if state is not None and str(state).rsplit('.', 1)[-1] != 'DONE':
    raise RuntimeError(f'the Beam pipeline on {runner} ended in state {state}')


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
