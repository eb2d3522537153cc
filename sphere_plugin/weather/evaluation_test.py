"""Tests of sphere_plugin.evaluation against numpy references and analytic cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sphere_plugin  # registers ds.sphere
from sphere_plugin.weather import evaluation
from sphere_plugin import grids

LEVELS = [500, 850]
NLON, NLAT = 8, 4


def _gauss_lat_weights(nlat):
  """Gauss-Legendre latitudes (deg, ascending) and weights, straight from numpy."""
  x, w = np.polynomial.legendre.leggauss(nlat)
  return np.degrees(np.arcsin(x)), w


def _truth(ntime=12, start='2000-01-01', seed=0, freq='6h'):
  """Random truth on gaussian:8x4: dims (time, level, longitude, latitude)."""
  rng = np.random.default_rng(seed)
  lat, _ = _gauss_lat_weights(NLAT)
  coords = {'time': pd.date_range(start, periods=ntime, freq=freq), 'level': LEVELS,
            'longitude': np.arange(NLON) * 360.0 / NLON, 'latitude': lat}
  return xr.Dataset(
      {'geopotential': (('time', 'level', 'longitude', 'latitude'),
                        rng.normal(5e4, 300.0, (ntime, 2, NLON, NLAT)),
                        {'units': 'm**2 s**-2'}),
       'temperature': (('time', 'level', 'longitude', 'latitude'),
                       rng.normal(260.0, 5.0, (ntime, 2, NLON, NLAT)), {'units': 'K'}),
       'surface_pressure': (('time', 'longitude', 'latitude'),
                            rng.normal(1e5, 500.0, (ntime, NLON, NLAT)), {'units': 'Pa'}),
       'land_sea_mask': (('longitude', 'latitude'), np.zeros((NLON, NLAT)))},
      coords=coords)


def _random_forecast(truth, inits, leads, seed=1):
  """Random forecast around truth's mean: dims (time, lead, level, lon, lat)."""
  rng = np.random.default_rng(seed)
  fc = evaluation.persistence_forecast(truth, inits, leads).copy(deep=True).load()
  for name in fc.data_vars:
    fc[name] = fc[name] + rng.normal(0.0, 1.0, fc[name].shape) * float(truth[name].std())
  return fc


def _numpy_scores(fc, truth, name, level, kind, clim=None):
  """Reference RMSE / ACC per lead, by explicit loops over (init, lead) pairs."""
  _, w_lat = _gauss_lat_weights(NLAT)
  w = np.broadcast_to(w_lat, (NLON, NLAT))
  truth_times = list(pd.DatetimeIndex(truth.time.values))
  out = []
  for lead in pd.to_timedelta(fc.prediction_timedelta.values):
    per_init = []
    for t0 in pd.DatetimeIndex(fc.time.values):
      if t0 + lead not in truth_times:
        continue
      f = fc[name].sel(time=t0, prediction_timedelta=lead, level=level)
      f = f.transpose('longitude', 'latitude').values
      o = truth[name].sel(time=t0 + lead, level=level).transpose('longitude', 'latitude').values
      if kind == 'rmse':
        per_init.append(np.sum(w * (f - o) ** 2) / np.sum(w))
      else:
        c = clim[name].sel(level=level).transpose('longitude', 'latitude').values
        fa, oa = f - c, o - c
        per_init.append(np.sum(w * fa * oa) / np.sqrt(np.sum(w * fa**2) * np.sum(w * oa**2)))
    m = np.mean(per_init) if per_init else np.nan
    out.append(np.sqrt(m) if kind == 'rmse' else m)
  return np.array(out)


# ----------------------------------------------------------------------------
# Weights.

@pytest.mark.parametrize('text', ['gaussian:16x8', 'equiangular:16x8',
                                  'equiangular_with_poles:16x9'])
def test_area_weights_are_normalised_quadrature_weights(text):
  grid = grids.parse(text)
  ds = xr.Dataset(coords={'longitude': grid.longitudes, 'latitude': grid.latitudes})
  w = evaluation.area_weights(ds)
  assert w.dims == ('longitude', 'latitude')
  expected = grid.quadrature_weights * np.prod(grid.shape) / (4 * np.pi)
  # Exact up to float64 rounding of the same numbers.
  np.testing.assert_allclose(w.values, expected, rtol=1e-12)
  np.testing.assert_allclose(float(w.mean()), 1.0, rtol=1e-12)
  # Analytic check independent of the grid code: the area mean of sin^2(lat)
  # over the sphere is 1/3, and all three quadratures integrate this degree-2
  # polynomial exactly (to rounding).
  sin2 = np.sin(np.radians(ds.latitude)) ** 2
  np.testing.assert_allclose(float((w * sin2).mean()), 1 / 3, rtol=1e-12)


def test_area_weights_follow_the_latitude_order():
  """Weights go with their own latitude whatever the order of the coordinate."""
  lat, w_lat = _gauss_lat_weights(6)
  # Grids are symmetric about the equator, so a reversed order alone could not
  # catch a mix-up: shuffle the latitudes.
  perm = np.array([3, 0, 5, 1, 4, 2])
  ds = xr.Dataset(coords={'latitude': lat[perm], 'longitude': np.arange(12) * 30.0})
  w = evaluation.area_weights(ds)
  assert w.dims == ('longitude', 'latitude')
  np.testing.assert_allclose(w.isel(longitude=0).values, w_lat[perm] / w_lat.mean(),
                             rtol=1e-12)
  np.testing.assert_allclose(w.latitude.values, lat[perm])


def test_area_weights_healpix_are_ones():
  ds = xr.Dataset({'x': (('pixel',), np.zeros(12 * 4))})
  w = evaluation.area_weights(ds)
  assert w.dims == ('pixel',)
  np.testing.assert_array_equal(w.values, np.ones(48))


# ----------------------------------------------------------------------------
# RMSE.

def test_rmse_of_constant_error_is_that_constant():
  truth = _truth()
  fc = evaluation.persistence_forecast(truth, truth.time.values[:4], ['0h', '6h'])
  # Persistence at lead 0 is the truth itself; adding a constant c gives an
  # error of exactly c everywhere.
  fc0 = fc.sel(prediction_timedelta=['0h']) + 3.0
  scores = evaluation.rmse(fc0, truth)
  for name in ('geopotential', 'temperature', 'surface_pressure'):
    # float64 data: rounding only.
    np.testing.assert_allclose(scores[name].values, 3.0, rtol=1e-9)
  assert scores['geopotential'].dims == ('prediction_timedelta', 'level')
  assert scores['surface_pressure'].dims == ('prediction_timedelta',)
  assert scores['temperature'].attrs['units'] == 'K'
  assert 'land_sea_mask' not in scores


def test_rmse_matches_numpy_reference():
  truth = _truth()
  fc = _random_forecast(truth, truth.time.values[:6], ['6h', '12h', '24h'])
  scores = evaluation.rmse(fc, truth)
  for name in ('geopotential', 'temperature'):
    for level in LEVELS:
      ref = _numpy_scores(fc, truth, name, level, 'rmse')
      # Same float64 arithmetic in a different order.
      np.testing.assert_allclose(scores[name].sel(level=level).values, ref, rtol=1e-10)


def test_rmse_does_not_depend_on_layout():
  """Latitude descending and (latitude, longitude) order in truth change nothing."""
  truth = _truth()
  fc = _random_forecast(truth, truth.time.values[:4], ['6h', '12h'])
  ref = evaluation.rmse(fc, truth)
  flipped = truth.isel(latitude=slice(None, None, -1)).transpose(
      'time', 'latitude', 'level', 'longitude')
  flipped = flipped.assign_coords(longitude=(flipped.longitude + 180) % 360 - 180)
  got = evaluation.rmse(fc, flipped)
  for name in ref.data_vars:
    np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-12)


def test_rmse_pairs_healpix_cells_whatever_their_order():
  """A NESTED forecast against RING truth: cells pair by identity, not position.

  Reference: the all-RING score; the NESTED copy is made by healpy's nest2ring.
  """
  import healpy  # pylint: disable=g-import-not-at-top
  truth = _truth().sphere.regrid('healpix:4', 'nearest')
  fc = _random_forecast(truth, truth.time.values[:4], ['6h'])
  ref = evaluation.rmse(fc, truth)
  nest2ring = healpy.nest2ring(4, np.arange(192))
  nested = fc.isel(pixel=nest2ring).drop_vars(['pixel', 'cell_ids', 'latitude', 'longitude',
                                                'crs'])
  nested = nested.assign_attrs(healpix_nside=4, healpix_order='nest')
  got = evaluation.rmse(nested, truth)
  for name in ref.data_vars:
    np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-12)
  scrambled = evaluation.rmse(nested.assign_attrs(healpix_order='ring'), truth)
  assert not np.allclose(scrambled['temperature'].values, ref['temperature'].values)


def test_persistence_forecast_and_zero_lead():
  truth = _truth()
  inits = truth.time.values[2:5]
  fc = evaluation.persistence_forecast(truth, inits, ['0h', '6h', '1D'])
  assert fc['geopotential'].dims == ('time', 'prediction_timedelta', 'level', 'longitude',
                                     'latitude')
  assert 'land_sea_mask' not in fc
  for lead in fc.prediction_timedelta.values:
    xr.testing.assert_equal(fc['temperature'].sel(prediction_timedelta=lead, drop=True),
                            truth['temperature'].sel(time=inits))
  scores = evaluation.rmse(fc, truth)
  for name in scores.data_vars:
    assert np.all(scores[name].sel(prediction_timedelta='0h').values == 0.0)
    assert np.all(scores[name].sel(prediction_timedelta='6h').values > 0.0)


def test_pairs_with_missing_valid_times_are_dropped():
  # Two trajectories 5 days apart with a gap: valid times in the gap and past
  # the end are missing from truth.
  a = _truth(ntime=6, start='2000-01-01', seed=2)
  b = _truth(ntime=6, start='2000-01-06', seed=3)
  truth = xr.concat([a, b], dim='time', data_vars='minimal')
  inits = truth.time.values  # 12 inits
  fc = _random_forecast(truth, inits, ['0h', '12h', '36h'])
  # Poison the forecasts whose valid time is missing: were they averaged in,
  # the score would be huge or NaN.
  times = set(pd.DatetimeIndex(truth.time.values))
  for i, t0 in enumerate(pd.DatetimeIndex(inits)):
    for j, lead in enumerate(pd.to_timedelta(fc.prediction_timedelta.values)):
      if t0 + lead not in times:
        fc['temperature'][i, j] = np.nan
  with pytest.warns(UserWarning, match='36h'):
    scores = evaluation.rmse(fc, truth)
  # Each trajectory holds 6 samples 6h apart (30h). 12h: the last two inits of
  # each have no valid time -> 8 left; 36h: no pair at all (NaN, warning).
  np.testing.assert_array_equal(scores['num_forecasts'].values, [12, 8, 0])
  t = scores['temperature'].values
  assert np.all(np.isfinite(t[:2])) and np.all(np.isnan(t[2]))
  ref = _numpy_scores(fc, truth, 'temperature', 850, 'rmse')
  np.testing.assert_allclose(scores['temperature'].sel(level=850).values[:2], ref[:2],
                             rtol=1e-10)


def test_no_pair_left_is_an_error():
  truth = _truth(ntime=4)
  fc = _random_forecast(truth, truth.time.values[:2], ['10D'])
  with pytest.raises(ValueError, match='no .init time, lead. pair'):
    evaluation.rmse(fc, truth)


def test_bad_inputs_are_reported():
  truth = _truth(ntime=4)
  with pytest.raises(ValueError, match='bare number'):
    evaluation.persistence_forecast(truth, truth.time.values[:1], [6])
  with pytest.raises(ValueError, match='not in truth'):
    evaluation.persistence_forecast(truth, ['1999-01-01'], ['6h'])
  fc = evaluation.persistence_forecast(truth, truth.time.values[:1], ['6h'])
  coarse = truth.isel(longitude=slice(None, None, 2))  # gaussian:4x4 != gaussian:8x4
  with pytest.raises(ValueError, match='regrid'):
    evaluation.rmse(fc, coarse)
  with pytest.raises(ValueError, match='prediction_timedelta'):
    evaluation.rmse(truth, truth)
  with pytest.raises(ValueError, match='unknown climatology'):
    evaluation.climatology(truth, by='monthly')


# ----------------------------------------------------------------------------
# Climatology and ACC.

def test_climatology_mean_and_forecast():
  truth = _truth()
  clim = evaluation.climatology(truth)
  assert clim.attrs['climatology'] == 'mean'
  np.testing.assert_allclose(clim['temperature'].values,
                             truth['temperature'].values.mean(axis=0), rtol=1e-12)
  inits = truth.time.values[:3]
  fc = evaluation.climatology_forecast(clim, inits, ['6h', '12h'])
  assert fc['temperature'].dims[:2] == ('time', 'prediction_timedelta')
  np.testing.assert_array_equal(
      fc['temperature'].isel(time=1, prediction_timedelta=1).values,
      clim['temperature'].values)
  scores = evaluation.rmse(fc, truth)
  ref = _numpy_scores(fc, truth, 'temperature', 500, 'rmse')
  np.testing.assert_allclose(scores['temperature'].sel(level=500).values, ref, rtol=1e-10)


def test_climatology_dayofyear_hour_matches_brute_force():
  # 6 days, 12-hourly: hours 0 and 12; a 3-day window.
  truth = _truth(ntime=12, start='2001-12-30', freq='12h')
  clim = evaluation.climatology(truth, by='dayofyear_hour', window_days=3)
  assert clim['temperature'].dims == ('dayofyear', 'hour', 'level', 'longitude', 'latitude')
  times = pd.DatetimeIndex(truth.time.values)
  x = truth['temperature'].values
  for doy in (1, 2, 364, 365, 366, 100):
    for hour in (0, 12):
      # Circular day-of-year distance on a 366-day year (the window wraps).
      dist = np.abs(times.day_of_year - doy)
      dist = np.minimum(dist, 366 - dist)
      sel = (dist <= 1) & (times.hour == hour)
      got = clim['temperature'].sel(dayofyear=doy, hour=hour).values
      if sel.any():
        np.testing.assert_allclose(got, x[sel].mean(axis=0), rtol=1e-12)
      else:
        assert np.all(np.isnan(got))
  fc = evaluation.climatology_forecast(clim, times[:2], ['12h'])
  np.testing.assert_array_equal(
      fc['temperature'].isel(time=1, prediction_timedelta=0).values,
      clim['temperature'].sel(dayofyear=times[2].day_of_year, hour=times[2].hour).values)


def test_acc_perfect_flipped_and_reference():
  truth = _truth()
  clim = evaluation.climatology(truth)
  inits = truth.time.values[:5]
  perfect = evaluation.persistence_forecast(truth, inits, ['0h'])
  np.testing.assert_allclose(evaluation.acc(perfect, truth, clim)['temperature'].values, 1.0,
                             rtol=1e-12)
  flipped = 2 * evaluation.climatology_forecast(clim, inits, ['0h']) - perfect
  np.testing.assert_allclose(evaluation.acc(flipped, truth, clim)['geopotential'].values,
                             -1.0, rtol=1e-12)
  fc = _random_forecast(truth, inits, ['6h', '18h'])
  scores = evaluation.acc(fc, truth, clim)
  for level in LEVELS:
    ref = _numpy_scores(fc, truth, 'geopotential', level, 'acc', clim=clim)
    np.testing.assert_allclose(scores['geopotential'].sel(level=level).values, ref, rtol=1e-10)
  assert np.all(np.abs(scores['geopotential'].values) < 1)


# ----------------------------------------------------------------------------
# Skill table.

def test_skill_table_contains_the_numbers():
  truth = _truth()
  inits = truth.time.values[:4]
  persistence = evaluation.rmse(
      evaluation.persistence_forecast(truth, inits, ['6h', '24h']), truth)
  clim = evaluation.climatology(truth)
  climatology = evaluation.rmse(
      evaluation.climatology_forecast(clim, inits, ['6h', '24h']), truth)
  table = evaluation.skill_table({'persistence': persistence, 'climatology': climatology},
                                 leads=('6h', '24h', '72h'))
  lines = table.splitlines()
  assert 'persistence' in lines[1] and 'climatology' in lines[1]
  z500 = [l for l in lines if l.startswith('geopotential') and ' 24h ' in l][0]
  assert 'm**2 s**-2' in z500
  assert f"{float(persistence['geopotential'].sel(level=500, prediction_timedelta='24h')):.4g}" in z500
  assert f"{float(climatology['geopotential'].sel(level=500, prediction_timedelta='24h')):.4g}" in z500
  t850 = [l for l in lines if l.startswith('temperature') and ' 6h ' in l][0]
  assert f"{float(persistence['temperature'].sel(level=850, prediction_timedelta='6h')):.4g}" in t850
  # 72h was not scored: n/a.
  assert [l for l in lines if ' 72h ' in l][0].split()[-2:] == ['n/a', 'n/a']
  assert len([l for l in lines if l.startswith(('geopotential', 'temperature'))]) == 6


def test_rmse_over_the_polar_caps():
  """An error put only poleward of 50 degrees: cap RMSE is that error, global RMSE less.

  (gaussian:8x4 has rows at +-24.1 and +-59.6 degrees.)
  """
  truth = _truth()
  fc = evaluation.persistence_forecast(truth, truth.time.values[:4], ['0h']).copy(deep=True)
  lat = fc['latitude']
  fc['temperature'] = fc['temperature'] + 2.0 * (np.abs(lat) >= 50)
  caps = evaluation.rmse(fc, truth, min_abs_latitude=50)
  glob = evaluation.rmse(fc, truth)
  np.testing.assert_allclose(caps['temperature'].values, 2.0, rtol=1e-12)
  np.testing.assert_allclose(caps['geopotential'].values, 0.0, atol=1e-9)
  assert 0 < float(glob['temperature'].max()) < 2.0
  with pytest.raises(ValueError, match='no latitude'):
    evaluation.rmse(fc, truth, min_abs_latitude=89.9)
