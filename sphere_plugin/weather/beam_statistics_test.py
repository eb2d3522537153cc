"""The Normalizer as a Beam reduction (DirectRunner) equals the in-process computation."""

import numpy as np
import pytest

pytest.importorskip('apache_beam')

from sphere_plugin import weather  # pylint: disable=g-import-not-at-top
from sphere_plugin.weather import beam_statistics
from sphere_plugin.weather import testdata


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('stats') / 'synthetic.zarr')
  testdata.synthetic_dataset().to_zarr(path, mode='w', zarr_format=2)
  return weather.WeatherSpec(
      path=path, levels=testdata.LEVELS, train_period=('2000-01-01', '2000-12-31'),
      valid_period=('2001-01-01', '2001-12-31'), test_period=('2002-01-01', '2002-12-31'))


@pytest.mark.parametrize('chunk_size, workers', [(5, 2), (None, 1)])
def test_beam_statistics_equal_the_in_process_ones(spec, tmp_path, chunk_size, workers):
  local = weather.compute_normalizer(weather.WeatherData(spec, compute_statistics=False))
  out = str(tmp_path / 'normalization.json')
  # Chunks of 5 times split time-step pairs across chunks and merge out of order.
  got = beam_statistics.compute_normalizer(
      spec, chunk_size=chunk_size, output=out,
      pipeline_args=[f'--direct_num_workers={workers}',
                     '--direct_running_mode=multi_threading'])
  assert got.channels == local.channels and got.forcing_channels == local.forcing_channels
  for name in ('mean', 'std', 'diff_std', 'forcing_mean', 'forcing_std'):
    np.testing.assert_allclose(getattr(got, name), getattr(local, name), rtol=1e-6,
                               atol=1e-6, err_msg=name)
  assert got.attrs == local.attrs and got.attrs['times'] == 24
  assert weather.Normalizer.load(out).to_json() == got.to_json()


def test_chunk_statistics_merge_in_any_order(spec):
  data = weather.WeatherData(spec, compute_statistics=False)
  chunks, is_pair = weather.statistics_plan(data, 'train', 4)
  parts = [weather.chunk_statistics(data, c, is_pair) for c in chunks]
  forward = parts[0]
  for p in parts[1:]:
    forward = forward.merge(p)
  backward = parts[-1]
  for p in parts[-2::-1]:
    backward = p.merge(backward)
  np.testing.assert_allclose(forward.state.mean, backward.state.mean, rtol=1e-12)
  np.testing.assert_allclose(forward.state.m2, backward.state.m2, rtol=1e-12)
  assert forward.diff.count == backward.diff.count == int(is_pair.sum())
