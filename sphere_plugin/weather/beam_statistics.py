"""The training-period statistics (`Normalizer`) as an Apache Beam reduction.

    from sphere_plugin.weather import beam_statistics
    normalizer = beam_statistics.compute_normalizer(
        spec, output='gs://bucket/normalization.json', runner='DataflowRunner',
        pipeline_args=['--project=p', '--region=us-central1', '--temp_location=gs://b/tmp'])

The driver plans the chunks of training times (`data.statistics_plan`: indices,
and which times start a time-step pair); one element per chunk goes to the
workers, each of which opens the dataset once per process and computes the
chunk's `StatisticsSums` (`data.chunk_statistics`: area-weighted moments of
the state, of the one-step changes and of the forcings, in float64); a
`CombineGlobally` merges them (`Moments.merge`, Chan's pairwise update, in any
order) and the driver turns the result into the Normalizer with the same rules
as `data.compute_normalizer` (`normalizer_from_sums`): the in-process and the
Beam statistics agree to float rounding (tested to 1e-6).
Needs the beam extra (`pip install 'sphere_plugin[beam]'`).
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from typing import Sequence

import numpy as np

from sphere_plugin.beam import pipelines
from sphere_plugin.io import atomic
from sphere_plugin.weather import data as data_lib
from sphere_plugin.weather.normalization import Moments
from sphere_plugin.weather.normalization import Normalizer
from sphere_plugin.weather.normalization import StatisticsSums
from sphere_plugin.weather.normalization import normalizer_from_sums
from sphere_plugin.weather.spec import WeatherSpec


@functools.lru_cache(maxsize=4)
def reader(spec: WeatherSpec) -> data_lib.WeatherData:
  """The dataset of `spec`, opened once per worker process (no statistics computed)."""
  return data_lib.WeatherData(spec, compute_statistics=False)


def chunk_sums(spec: WeatherSpec, chunk: np.ndarray, is_pair: np.ndarray) -> StatisticsSums:
  """One chunk's StatisticsSums (what each Beam element computes)."""
  return data_lib.chunk_statistics(reader(spec), chunk, is_pair)


def _merge(parts) -> StatisticsSums | None:
  total = None
  for part in parts:
    if part is not None:
      total = part if total is None else total.merge(part)
  return total


def compute_normalizer(spec: WeatherSpec, split: str = 'train', *,
                       chunk_size: int | None = None, output: str | None = None,
                       runner: str = 'DirectRunner',
                       pipeline_args: Sequence[str] = ()) -> Normalizer:
  """The Normalizer of `split`, computed as a Beam reduction over chunks of times.

  Args:
    spec: the WeatherSpec (its path must be readable by the workers).
    split: the split to summarise (default: training only).
    chunk_size: times per work item (default ~64 MB of float32 state).
    output: also write the Normalizer JSON here (write-then-rename).
    runner, pipeline_args: the Beam runner and its options
      (`sphere_plugin.beam.pipelines.run`).

  Returns:
    the Normalizer, equal to `data.compute_normalizer` on the same split to
    float rounding.
  """
  beam, _ = pipelines.require()
  data = reader(spec)
  chunks, is_pair = data_lib.statistics_plan(data, split, chunk_size)
  with tempfile.TemporaryDirectory(prefix='sphere_plugin_stats_') as tmp:
    # The merged sums come back through a file: runners return no values, and a
    # distributed run writes it from a worker (a shared temp_location for those).
    location = _result_location(tmp, pipeline_args)
    result = os.path.join(location, 'sums.npz')

    def build(p):
      _ = (p
           | 'Chunks' >> beam.Create([c.tolist() for c in chunks], reshuffle=True)
           | 'Statistics' >> beam.Map(
               lambda c: chunk_sums(spec, np.asarray(c, np.int64), is_pair))
           | 'Merge' >> beam.CombineGlobally(_merge)
           | 'Save' >> beam.Map(_save, result))

    pipelines.run(build, runner, pipeline_args)
    sums = _read(result)
  normalizer = normalizer_from_sums(sums, data.channels, data.forcing_channels,
                                    data.vector_pairs, data_lib.normalizer_attrs(data, split))
  if output is not None:
    atomic.write_text(output, normalizer.to_json())
  return normalizer


def _result_location(local_tmp: str, pipeline_args: Sequence[str]) -> str:
  """Where the merged sums are written: a local temp dir, or the pipeline's
  --temp_location on a distributed runner."""
  for arg in pipeline_args:
    if arg.startswith('--temp_location='):
      return arg.split('=', 1)[1].rstrip('/') + f'/sphere_plugin_stats_{os.getpid()}'
  return local_tmp


_PARTS = ('state', 'diff', 'forcing')


def _save(sums: StatisticsSums | None, path: str) -> None:
  """Writes the merged sums as .npz (numbers only: nothing of ours is a pickle)."""
  import fsspec  # pylint: disable=g-import-not-at-top
  if sums is None:
    raise RuntimeError('the statistics pipeline merged no chunk')
  arrays = {}
  for part in _PARTS:
    m = getattr(sums, part)
    arrays.update({f'{part}_count': np.int64(m.count), f'{part}_mean': m.mean,
                   f'{part}_m2': m.m2})
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with fsspec.open(path, 'wb') as f:
    f.write(buffer.getvalue())


def _read(path: str) -> StatisticsSums:
  import fsspec  # pylint: disable=g-import-not-at-top
  with fsspec.open(path, 'rb') as f:
    arrays = np.load(io.BytesIO(f.read()), allow_pickle=False)
    parts = {p: Moments(int(arrays[f'{p}_count']), arrays[f'{p}_mean'], arrays[f'{p}_m2'])
             for p in _PARTS}
  return StatisticsSums(**parts)
