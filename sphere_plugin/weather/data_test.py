"""Tests of the WB2-format weather data layer.

Synthetic datasets on gaussian:8x4 are written to tmp_path as zarr and netCDF
in several layouts; expected values are computed here directly with xarray /
numpy (not through the module). The solar-radiation checks use astronomical
facts: the equinox daily mean at the equator is S0 / pi, the June-solstice
subsolar latitude is 23.44 degrees and the Earth-Sun distance then is 1.0163 AU.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import xarray as xr

from sphere_plugin import grids
from sphere_plugin import weather

GRID = grids.parse('gaussian:8x4')
LEVELS = (500, 850)
H6 = np.timedelta64(6, 'h')
# Two training trajectories with a gap, one valid and one test trajectory.
TIMES = np.concatenate([
    np.datetime64('2000-01-01T00', 'ns') + H6 * np.arange(10),
    np.datetime64('2000-02-01T00', 'ns') + H6 * np.arange(8),
    np.datetime64('2001-03-01T00', 'ns') + H6 * np.arange(6),
    np.datetime64('2002-03-01T00', 'ns') + H6 * np.arange(6),
])
TRAIN = TIMES < np.datetime64('2001-01-01')
SPEC = dict(level_variables=('temperature', 'u_component_of_wind', 'v_component_of_wind'),
            surface_variables=('surface_pressure',), levels=LEVELS,
            train_period=('2000-01-01', '2000-12-31'),
            valid_period=('2001-01-01', '2001-12-31'),
            test_period=('2002-01-01', '2002-12-31'))


def _truth(seed: int = 0) -> dict[str, np.ndarray]:
  """Variables in our layout (time, [level,] lon, lat ascending); eval data far off."""
  rng = np.random.default_rng(seed)
  nt, (nlon, nlat) = TIMES.size, GRID.shape
  far = np.where(TRAIN, 0.0, 1e4)[:, None, None, None]  # valid/test: wildly different
  out = {
      'temperature': 250 + 10 * rng.standard_normal((nt, 2, nlon, nlat)) + far,
      'u_component_of_wind': 5 + 8 * rng.standard_normal((nt, 2, nlon, nlat)) + far,
      'v_component_of_wind': -2 + 3 * rng.standard_normal((nt, 2, nlon, nlat)) - far,
      'surface_pressure': 1e5 + 500 * rng.standard_normal((nt, nlon, nlat)) + far[:, 0] * 100,
      'land_sea_mask': (rng.random((nlon, nlat)) > 0.5).astype(np.float64),
      'geopotential_at_surface': 1000 * rng.random((nlon, nlat)),
  }
  return {k: v.astype(np.float32) for k, v in out.items()}


def _dataset(truth, *, lat_descending=False, lon_180=False, latlon_order=False):
  """A WB2-format Dataset of `truth` in another layout (dims found by name)."""
  lon = GRID.longitudes.copy()
  lat = GRID.latitudes.copy()
  data = dict(truth)
  if lon_180:  # longitudes -180, -135, ..., 135: roll the data the same way
    shift = GRID.nlon // 2
    lon = np.roll(np.where(lon >= 180, lon - 360, lon), shift)
    data = {k: np.roll(v, shift, axis=v.ndim - 2) for k, v in data.items()}
  if lat_descending:
    lat = lat[::-1]
    data = {k: v[..., ::-1] for k, v in data.items()}
  variables = {}
  for k, v in data.items():
    dims = {4: ('time', 'level', 'longitude', 'latitude'),
            3: ('time', 'longitude', 'latitude'), 2: ('longitude', 'latitude')}[v.ndim]
    variables[k] = xr.Variable(dims, np.ascontiguousarray(v), {'units': f'unit of {k}'})
  ds = xr.Dataset(variables, coords={'time': TIMES, 'level': np.array(LEVELS),
                                     'longitude': lon, 'latitude': lat})
  if latlon_order:
    ds = ds.transpose('time', 'level', 'latitude', 'longitude')
  return ds


def _write(ds, path) -> str:
  path = str(path)
  if path.endswith('.nc'):
    ds.to_netcdf(path)
  else:
    ds.to_zarr(path, zarr_format=2, consolidated=True)
  return path


@pytest.fixture(scope='module')
def truth():
  return _truth()


@pytest.fixture(scope='module')
def store(truth, tmp_path_factory):
  return _write(_dataset(truth), tmp_path_factory.mktemp('w') / 'canonical.zarr')


@pytest.fixture(scope='module')
def data(store):
  return weather.WeatherData(weather.WeatherSpec(path=store, **SPEC))


def _weighted_mean(x):
  """Area-weighted mean over (lon, lat), then plain mean over every other axis."""
  w = GRID.quadrature_weights / GRID.quadrature_weights.sum()
  return float(np.mean(np.sum(x.astype(np.float64) * w, axis=(-2, -1))))


# ----------------------------------------------------------------------------
# Solar radiation and time features.


def test_toa_equinox_daily_mean_at_equator_is_s0_over_pi():
  # Mean of S0 max(0, cos h) over a day is S0/pi at declination 0; on
  # 2000-03-20 the declination is ~0 and (r0/r)**2 = 1.008, so within 2 %.
  times = np.datetime64('2000-03-20T00', 'ns') + np.timedelta64(5, 'm') * np.arange(288)
  toa = weather.toa_solar_radiation(times, np.array([0.0]), np.array([0.0]))
  assert toa.shape == (288, 1)
  np.testing.assert_allclose(toa.mean(), weather.SOLAR_CONSTANT / np.pi, rtol=0.02)


def test_toa_night_side_subsolar_point_and_polar_values():
  t = np.array(['2000-06-21T12:00'], 'datetime64[ns]')
  lat = np.arange(-90, 90.01, 0.25)
  lon = np.arange(-180, 180, 0.25)
  toa = weather.toa_solar_radiation(t, lat[None, :], lon[:, None])[0]  # (lon, lat)
  # Subsolar point (almanac): declination 23.44 deg; equation of time -1.6 min
  # puts it 0.4 deg east of Greenwich at 12 UTC. Tolerance: 0.5 deg.
  i, j = np.unravel_index(np.argmax(toa), toa.shape)
  assert abs(lat[j] - 23.44) <= 0.5 and abs(lon[i] - 0.4) <= 0.5
  # Angular distance to that point: zero beyond 90.5 deg, positive within 89.5.
  la, lo = np.radians(lat[None, :]), np.radians(lon[:, None])
  s_la, s_lo = np.radians(23.44), np.radians(0.4)
  dist = np.degrees(np.arccos(np.clip(
      np.sin(la) * np.sin(s_la) + np.cos(la) * np.cos(s_la) * np.cos(lo - s_lo), -1, 1)))
  assert np.all(toa[dist > 90.5] == 0)
  assert np.all(toa[dist < 89.5] > 0)
  # North pole: S0 sin(23.44 deg) / 1.0163**2 (Earth-Sun distance in AU), 0.5 %.
  np.testing.assert_allclose(toa[:, -1], 1361 * np.sin(np.radians(23.44)) / 1.0163**2,
                             rtol=5e-3)
  # Polar night south of the Antarctic circle all day long.
  day = t[0] + np.timedelta64(1, 'h') * np.arange(24)
  assert np.all(weather.toa_solar_radiation(day, np.array([-70.0, -89.0]),
                                            np.array([0.0, 90.0])) == 0)


def test_time_features_known_values():
  t = np.array(['2000-01-01T06:00', '2001-07-02T18:00'], 'datetime64[ns]')
  f = weather.time_features(t)
  # 06 UTC: a quarter day; 18 UTC: three quarters. Exact up to rounding.
  np.testing.assert_allclose(f['time_of_day_sin'], [1, -1], atol=1e-12)
  np.testing.assert_allclose(f['time_of_day_cos'], [0, 0], atol=1e-12)
  days = np.array([0.25, 182.75])  # 2001-07-02T18 is 182.75 days after Jan 1st
  np.testing.assert_allclose(f['time_of_year_sin'], np.sin(2 * np.pi * days / 365.25),
                             atol=1e-12)
  np.testing.assert_allclose(f['time_of_year_cos'], np.cos(2 * np.pi * days / 365.25),
                             atol=1e-12)


# ----------------------------------------------------------------------------
# Statistics.


def test_statistics_use_training_period_only_and_pairs_share_std(data, truth):
  n = data.normalizer
  assert n.channels == ('temperature_500', 'temperature_850', 'u_component_of_wind_500',
                        'u_component_of_wind_850', 'v_component_of_wind_500',
                        'v_component_of_wind_850', 'surface_pressure')
  assert data.vector_pairs == ((2, 4), (3, 5))
  train = {k: v[TRAIN] for k, v in truth.items() if v.ndim > 2}
  # Training pairs (t, t+6h): within a trajectory, both in training.
  pairs = [t for t in range(TIMES.size - 1)
           if TRAIN[t] and TRAIN[t + 1] and TIMES[t + 1] - TIMES[t] == H6]
  pairs = np.array(pairs)
  # Float32 data, float64 sums: relative tolerance 1e-5 is ample; valid/test
  # data are 1e4 off, so any leak would show at the 1e-2 level or more.
  for li, lev in enumerate(LEVELS):
    x = train['temperature'][:, li]
    c = n.channels.index(f'temperature_{lev}')
    mean = _weighted_mean(x)
    np.testing.assert_allclose(n.mean[c], mean, rtol=1e-5)
    np.testing.assert_allclose(n.std[c], np.sqrt(_weighted_mean((x - mean) ** 2)), rtol=1e-5)
    d = truth['temperature'][pairs + 1, li] - truth['temperature'][pairs, li]
    dm = _weighted_mean(d)
    np.testing.assert_allclose(n.diff_std[c], np.sqrt(_weighted_mean((d - dm) ** 2)),
                               rtol=1e-5)
    u, v = train['u_component_of_wind'][:, li], train['v_component_of_wind'][:, li]
    cu, cv = data.vector_pairs[li]
    shared = np.sqrt(_weighted_mean(u**2 + v**2) / 2)
    assert n.mean[cu] == 0 and n.mean[cv] == 0
    assert n.std[cu] == n.std[cv]
    np.testing.assert_allclose(n.std[cu], shared, rtol=1e-5)
    du = truth['u_component_of_wind'][pairs + 1, li] - truth['u_component_of_wind'][pairs, li]
    dv = truth['v_component_of_wind'][pairs + 1, li] - truth['v_component_of_wind'][pairs, li]
    assert n.diff_std[cu] == n.diff_std[cv]
    np.testing.assert_allclose(n.diff_std[cu], np.sqrt(_weighted_mean(du**2 + dv**2) / 2),
                               rtol=1e-5)
  ps = train['surface_pressure']
  np.testing.assert_allclose(n.mean[-1], _weighted_mean(ps), rtol=1e-6)
  # Forcings: static mask mean by hand; time-of-day over the training times.
  f = n.forcing_channels
  assert f == ('land_sea_mask', 'geopotential_at_surface', 'toa_solar_radiation',
               'time_of_day_sin', 'time_of_day_cos', 'time_of_year_sin', 'time_of_year_cos')
  np.testing.assert_allclose(n.forcing_mean[0], _weighted_mean(truth['land_sea_mask']),
                             rtol=1e-6)
  phase = 2 * np.pi * (TIMES[TRAIN].astype('datetime64[h]').astype(np.int64) % 24) / 24
  np.testing.assert_allclose(n.forcing_mean[4], np.cos(phase).mean(), atol=1e-6)
  np.testing.assert_allclose(n.forcing_std[4], np.cos(phase).std(), rtol=1e-5)


def test_statistics_streamed_in_chunks_equal_one_pass(data):
  # Chunks of 3 times split training pairs across chunk boundaries.
  chunked = weather.compute_normalizer(data, chunk_size=3)
  for name in ('mean', 'std', 'diff_std', 'forcing_mean', 'forcing_std'):
    np.testing.assert_allclose(getattr(chunked, name), getattr(data.normalizer, name),
                               rtol=1e-5, atol=1e-6, err_msg=name)


def test_normalizer_save_load_round_trip(data, tmp_path):
  path = tmp_path / 'sub' / weather.NORMALIZER_FILENAME
  data.normalizer.save(path)
  loaded = weather.Normalizer.load(path)
  for name in ('mean', 'std', 'diff_std', 'forcing_mean', 'forcing_std'):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(data.normalizer, name))
  assert loaded.channels == data.channels
  assert loaded.forcing_channels == data.forcing_channels
  x = np.random.default_rng(1).standard_normal((3, len(data.channels))).astype(np.float32)
  np.testing.assert_allclose(loaded.normalize(loaded.denormalize(x)), x, atol=1e-5)
  assert json.loads(path.read_text())['format'] == 'sphere_plugin.data.weather.Normalizer'
  # Reused as given; a mismatching one is refused.
  again = weather.WeatherData(data.spec, loaded)
  assert again.normalizer is loaded
  other = weather.Normalizer(loaded.channels[:-1], loaded.mean[:-1], loaded.std[:-1],
                             loaded.diff_std[:-1], loaded.forcing_channels,
                             loaded.forcing_mean, loaded.forcing_std)
  with pytest.raises(ValueError, match='surface_pressure'):
    weather.WeatherData(data.spec, other)


def test_for_workdir_computes_saves_then_loads(store, tmp_path):
  spec = weather.WeatherSpec(path=store, **SPEC)
  first = weather.WeatherData.for_workdir(tmp_path, spec)
  assert (tmp_path / weather.NORMALIZER_FILENAME).exists()
  second = weather.WeatherData.for_workdir(tmp_path, spec)
  np.testing.assert_array_equal(second.normalizer.std, first.normalizer.std)


# ----------------------------------------------------------------------------
# Windows and loading.


def _brute_force_starts(split_mask, steps, stride):
  out = []
  for t in range(TIMES.size):
    idx = t + stride * np.arange(steps + 1)
    if idx[-1] >= TIMES.size:
      break
    span = np.arange(t, idx[-1] + 1)
    if split_mask[span].all() and np.all(np.diff(TIMES[span]) == H6):
      out.append(t)
  return np.array(out, np.int64)


@pytest.mark.parametrize('time_step,stride', [('6h', 1), ('12h', 2)])
def test_windows_never_bridge_gaps_and_respect_splits(store, time_step, stride):
  d = weather.WeatherData(weather.WeatherSpec(path=store, time_step=time_step, **SPEC))
  assert d.stride == stride
  masks = {'train': TRAIN,
           'valid': (TIMES >= np.datetime64('2001')) & (TIMES < np.datetime64('2002')),
           'test': TIMES >= np.datetime64('2002')}
  for split, mask in masks.items():
    np.testing.assert_array_equal(d.times(split), TIMES[mask])
    for steps in (0, 1, 3):
      got = d.window_starts(split, steps)
      np.testing.assert_array_equal(got, _brute_force_starts(mask, steps, stride))
  # 10 + 8 training times: with 3 steps of 6h, 7 + 5 windows, none across the gap.
  assert len(d.window_starts('train', 3)) == (12 if stride == 1 else 6)
  with pytest.raises(ValueError, match='bridge a gap'):
    d.load([9], 1)  # index 9 ends the first trajectory


def test_split_end_date_includes_whole_day(store):
  spec = weather.WeatherSpec(path=store, **dict(SPEC, train_period=('2000-01-01',
                                                                     '2000-01-02')))
  d = weather.WeatherData(spec)
  # 2000-01-01 00..18 and 2000-01-02 00..18 (8 times); with an instant end, 5.
  assert len(d.times('train')) == 8
  spec = weather.WeatherSpec(path=store, **dict(SPEC, train_period=('2000-01-01',
                                                                     '2000-01-02T00')))
  assert len(weather.WeatherData(spec).times('train')) == 5


@pytest.mark.parametrize('layout', ['canonical.zarr', 'flipped.zarr', 'flipped.nc'])
def test_load_equals_direct_xarray_selection(truth, tmp_path, layout):
  flipped = layout.startswith('flipped')
  raw = _dataset(truth, lat_descending=flipped, lon_180=flipped, latlon_order=flipped)
  path = _write(raw, tmp_path / layout)
  d = weather.WeatherData(weather.WeatherSpec(path=path, **SPEC))
  assert d.grid == GRID
  assert d.dataset['temperature'].dims == ('time', 'level', 'longitude', 'latitude')
  n = d.normalizer
  starts = np.array([12, 0, 3])
  steps = 2
  batch = d.load(starts, steps)
  assert batch['inputs'].shape == (3, 8, 4, 7)
  assert batch['targets'].shape == (3, 2, 8, 4, 7)
  assert batch['forcings'].shape == (3, 2, 8, 4, 7)
  assert all(v.dtype == np.float32 for k, v in batch.items() if k != 'time')
  # By hand: xarray selection from the file as written, sorted to our layout.
  ref = raw.sortby('latitude')
  for b, t0 in enumerate(starts):
    for j in range(steps + 1):
      sel = ref.isel(time=t0 + j)
      got = batch['inputs'][b] if j == 0 else batch['targets'][b, j - 1]
      for c, name in enumerate(n.channels):
        var, _, lev = name.rpartition('_')
        x = (sel[name] if name == 'surface_pressure'
             else sel[var].sel(level=int(lev))).transpose('longitude', 'latitude').values
        # float32 arithmetic on both sides: 1e-5 absolute in normalised units.
        np.testing.assert_allclose(got[..., c], (x - n.mean[c]) / n.std[c], atol=1e-5)
      if j < steps:
        f = batch['forcings'][b, j]
        t = ref['time'].values[t0 + j]
        mask = ref['land_sea_mask'].transpose('longitude', 'latitude').values
        np.testing.assert_allclose(f[..., 0], (mask - n.forcing_mean[0]) / n.forcing_std[0],
                                   atol=1e-5)
        lon = ref['longitude'].values[:, None]
        lat = ref['latitude'].values[None, :]
        toa = weather.toa_solar_radiation(np.array([t]), lat, lon)[0] / 1361
        np.testing.assert_allclose(f[..., 2], (toa - n.forcing_mean[2]) / n.forcing_std[2],
                                   atol=1e-5)
        hour = (t.astype('datetime64[h]').astype(np.int64)) % 24
        np.testing.assert_allclose(
            f[..., 3], (np.sin(2 * np.pi * hour / 24) - n.forcing_mean[3]) / n.forcing_std[3],
            atol=1e-5)
  np.testing.assert_array_equal(batch['time'],
                                TIMES[starts].astype('datetime64[s]').astype(np.int64))


# ----------------------------------------------------------------------------
# Batches.


def _take(it, n):
  out = [next(it) for _ in range(n)]
  it.close()
  return out


def test_batches_deterministic_across_restart_and_epochs(data):
  n_windows = len(data.window_starts('train', 1))  # 9 + 7 = 16
  assert n_windows == 16
  full = _take(data.batches('train', 5, 1, seed=7), 7)  # 3 batches an epoch
  resumed = _take(data.batches('train', 5, 1, seed=7, start_step=4), 3)
  for a, b in zip(full[4:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  # One epoch: 15 distinct windows (the 16th dropped); the next epoch reshuffles.
  epoch0 = np.concatenate([b['time'] for b in full[:3]])
  epoch1 = np.concatenate([b['time'] for b in full[3:6]])
  assert len(set(epoch0)) == 15 and len(set(epoch1)) == 15
  assert not np.array_equal(epoch0, epoch1)
  other_seed = _take(data.batches('train', 5, 1, seed=8), 1)
  assert not np.array_equal(other_seed[0]['time'], full[0]['time'])
  assert all(b['mask'].all() for b in full)


def test_process_shards_partition_the_global_batch(data):
  for repeat in (True, False):
    whole = _take(data.batches('train', 4, 1, seed=1, repeat=repeat), 3)
    parts = [_take(data.batches('train', 4, 1, seed=1, repeat=repeat, process_index=p,
                                process_count=2, prefetch=p), 3) for p in range(2)]
    for i in range(3):
      for k in whole[i]:
        np.testing.assert_array_equal(
            np.concatenate([parts[0][i][k], parts[1][i][k]]), whole[i][k])
      assert parts[0][i]['inputs'].shape[0] == 2
  with pytest.raises(ValueError, match='divisible'):
    data.batches('train', 5, 1, process_count=2)


def test_evaluation_pass_is_ordered_with_masked_padding(data):
  starts = data.window_starts('train', 2)  # 8 + 6 = 14 windows
  batches = list(data.batches('train', 4, 2, repeat=False))
  assert len(batches) == 4
  times = np.concatenate([b['time'][b['mask']] for b in batches])
  np.testing.assert_array_equal(
      times, TIMES[starts].astype('datetime64[s]').astype(np.int64))
  assert batches[-1]['mask'].tolist() == [True, True, False, False]
  assert batches[-1]['inputs'].shape[0] == 4


def test_prefetch_errors_propagate_and_close_stops_thread(data, monkeypatch):
  calls = []
  original = data.load

  def flaky(starts, steps):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError('disk on fire')
    return original(starts, steps)

  monkeypatch.setattr(data, 'load', flaky)
  it = data.batches('train', 2, 1)
  next(it)
  next(it)
  with pytest.raises(RuntimeError, match='disk on fire'):
    next(it)
  with pytest.raises(StopIteration):
    next(it)
  monkeypatch.setattr(data, 'load', original)
  before = threading.active_count()
  it = data.batches('train', 2, 1, prefetch=3)
  next(it)
  it.close()
  assert threading.active_count() <= before


# ----------------------------------------------------------------------------
# Errors, xarray round trips, the embedded dataset.


def test_missing_variables_levels_and_forcings_are_named(store, data, truth):
  spec = weather.WeatherSpec(path=store, **dict(
      SPEC, level_variables=('temperature', 'specific_humidity'), levels=(500, 300),
      surface_variables=('surface_pressure', '2m_temperature')))
  with pytest.raises(ValueError, match=r"specific_humidity.*2m_temperature.*levels \[300\]"):
    weather.WeatherData(spec)
  spec = weather.WeatherSpec(path=store, **dict(SPEC, static_forcings=('soil_type',)))
  with pytest.raises(ValueError, match='soil_type'):
    weather.WeatherData(spec)
  partial = _dataset(truth).drop_vars('surface_pressure').sel(level=[850])
  with pytest.raises(ValueError, match=r"surface_pressure.*levels \[500\]"):
    data.state_arrays(partial)


def test_state_arrays_and_to_dataset_invert_each_other(data, truth):
  raw = _dataset(truth).isel(time=slice(0, 3))
  x = data.state_arrays(raw)
  assert x.shape == (3, 8, 4, 7)
  np.testing.assert_array_equal(x[..., 1], truth['temperature'][:3, 1])
  np.testing.assert_array_equal(x[..., 6], truth['surface_pressure'][:3])
  # Another layout of the same data gives the same arrays.
  other = _dataset(truth, lat_descending=True, lon_180=True, latlon_order=True)
  np.testing.assert_array_equal(data.state_arrays(other.isel(time=slice(0, 3))), x)
  ds = data.to_dataset(x, {'time': TIMES[:3]})
  assert ds['temperature'].dims == ('time', 'level', 'longitude', 'latitude')
  assert ds['surface_pressure'].dims == ('time', 'longitude', 'latitude')
  assert ds['temperature'].attrs['units'] == 'unit of temperature'
  xr.testing.assert_allclose(ds['temperature'], raw['temperature'].astype(np.float32))
  np.testing.assert_array_equal(data.state_arrays(ds), x)
  with pytest.raises(ValueError, match='leading axes'):
    data.to_dataset(x)


def test_spec_validation():
  with pytest.raises(ValueError, match='overlaps'):
    weather.WeatherSpec(train_period=('2000-01-01', '2002-06-01'))
  with pytest.raises(ValueError, match='timedelta'):
    weather.WeatherSpec(time_step='six hours')
  with pytest.raises(ValueError, match='unknown computed_forcings'):
    weather.WeatherSpec(computed_forcings=('moon_phase',))


def test_simulated_held_suarez_dataset(tmp_path):
  """The embedded dataset's format (a short simulation of it) reads as WeatherData.

  The default spec's periods pick trajectory k by year 2000 + k.
  """
  from sphere_plugin.weather import held_suarez  # pylint: disable=g-import-not-at-top
  path = held_suarez.make_dataset(tmp_path / 'hs.zarr', progress=False, spinup_days=2,
                                  branch_days=1, days=2, trajectories=4, seed=1)
  d = weather.WeatherData(weather.WeatherSpec(path=str(path)))
  assert str(d.grid) == 'gaussian:64x32'
  assert len(d.channels) == 13 and len(d.forcing_channels) == 7
  # 4 trajectories of 8 six-hourly times; 2 in training: 2 * 7 one-step windows.
  assert len(d.window_starts('train', 1)) == 2 * 7
  assert len(d.window_starts('valid', 1)) == 7
  n = d.normalizer
  for u, v in d.vector_pairs:
    assert n.std[u] == n.std[v] and n.mean[u] == 0
  batch = d.load(d.window_starts('test', 2)[:2], 2)
  assert batch['targets'].shape == (2, 2, 64, 32, 13)
  # Normalised training data are O(1).
  assert 0.2 < float(np.abs(batch['inputs']).mean()) < 2


def test_healpix_dataset(tmp_path):
  grid = grids.healpix(2)
  rng = np.random.default_rng(3)
  nt = 6
  times = np.datetime64('2000-01-01T00', 'ns') + H6 * np.arange(nt)
  ds = xr.Dataset(
      {'temperature': (('time', 'level', 'pixel'),
                       rng.standard_normal((nt, 2, grid.npix)).astype(np.float32)),
       'surface_pressure': (('time', 'pixel'),
                            rng.standard_normal((nt, grid.npix)).astype(np.float32))},
      coords={'time': times, 'level': np.array(LEVELS), 'pixel': np.arange(grid.npix)})
  path = _write(ds, tmp_path / 'hp.zarr')
  spec = weather.WeatherSpec(path=path, level_variables=('temperature',), vector_pairs=(),
                             static_forcings=(), train_period=('2000-01-01', '2000-01-01'),
                             valid_period=None, test_period=None, levels=LEVELS)
  d = weather.WeatherData(spec)
  assert d.grid == grid and d.vector_pairs == ()
  batch = d.load([0, 2], 3)
  assert batch['inputs'].shape == (2, 48, 3)
  assert batch['forcings'].shape == (2, 3, 48, 5)
  # The TOA channel uses the RING-order pixel centres.
  toa = weather.toa_solar_radiation(times[:1], grid.latitudes, grid.longitudes)[0] / 1361
  n = d.normalizer
  np.testing.assert_allclose(batch['forcings'][0, 0, :, 0],
                             (toa - n.forcing_mean[0]) / n.forcing_std[0], atol=1e-5)
  x = d.state_arrays(ds)
  np.testing.assert_array_equal(x[..., 0], ds['temperature'].values[:, 0])
  back = d.to_dataset(x, {'time': times})
  assert back['temperature'].dims == ('time', 'level', 'pixel')
  np.testing.assert_array_equal(d.state_arrays(back), x)


def test_weather_data_never_simulates(tmp_path, monkeypatch):
  # Opening data reads; only ForecastTask makes the embedded dataset on first use.
  from sphere_plugin.weather import held_suarez  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(held_suarez, 'DEFAULT_PATH', tmp_path / 'missing.zarr')
  monkeypatch.setattr(held_suarez, 'make_dataset', lambda *a, **k: pytest.fail('simulated'))
  with pytest.raises(FileNotFoundError, match='tools/make_dataset.py'):
    weather.WeatherData(weather.WeatherSpec(path=None))
