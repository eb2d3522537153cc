"""Tests of the embedded Held-Suarez dataset (a few simulated days at T21).

Physics checks are independent of the code under test:

* temperatures lie in 180..330 K: the Held-Suarez radiative-equilibrium
  temperature spans 200..315 K, and a few days of dynamics from it move
  temperatures by far less than 20 K beyond that range.
* z500 lies between the 500 hPa heights of the radiative-equilibrium columns
  at the pole (coldest, ~4.70 km) and the equator (warmest, ~5.87 km), both
  integrated here with the hypsometric equation from the Held-Suarez formula,
  widened by 300 m for surface pressures of 1000 +- 30 hPa (H dp/p ~ 8 km *
  0.03 = 240 m) and the first days' adjustment.
* the geopotential thickness between 850 and 500 hPa equals the hypsometric
  R * T_mean * ln(850/500), T_mean the log-pressure mean of the temperature
  over five levels 500..850 hPa, to 0.5 % at every point (measured 0.30 %; the
  mean of T850 and T500 alone is off by up to 1 % where T curves in log p).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

from sphere_plugin import grids
from sphere_plugin.weather import held_suarez

# Extra levels between 500 and 850 hPa for the hydrostatic check.
LEVELS = (250, 500, 575, 650, 750, 850)
SMALL = dict(spinup_days=4, branch_days=1, days=2, trajectories=2, seed=3, levels=LEVELS)
R_DRY = 287.0  # J/kg/K (dinosaur uses 1004 * 2/7 = 286.86)
G = 9.80665
KAPPA = 2 / 7
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def store(tmp_path_factory):
  path = tmp_path_factory.mktemp('hs') / 'hs.zarr'
  out = held_suarez.make_dataset(path, progress=False, **SMALL)
  assert out == str(path)
  return out


@pytest.fixture(scope='module')
def ds(store):
  return xr.open_zarr(store).load()


def test_wb2_names_units_dims_coords_dtypes(ds, store):
  nt = SMALL['trajectories'] * SMALL['days'] * 4
  for name in held_suarez.PRESSURE_LEVEL_VARIABLES:
    assert ds[name].dims == ('time', 'level', 'longitude', 'latitude')
    assert ds[name].shape == (nt, len(LEVELS), 64, 32)
  assert ds['surface_pressure'].dims == ('time', 'longitude', 'latitude')
  for name in ('geopotential_at_surface', 'land_sea_mask'):
    assert ds[name].dims == ('longitude', 'latitude')
    np.testing.assert_array_equal(ds[name].values, 0)
  expected_units = {'geopotential': 'm**2 s**-2', 'temperature': 'K',
                    'u_component_of_wind': 'm s**-1', 'v_component_of_wind': 'm s**-1',
                    'surface_pressure': 'Pa', 'geopotential_at_surface': 'm**2 s**-2',
                    'land_sea_mask': '1'}
  assert set(ds.data_vars) == set(expected_units)
  for name, units in expected_units.items():
    assert ds[name].attrs['units'] == units
    assert ds[name].dtype == np.float32
  assert ds['level'].values.tolist() == list(LEVELS)
  assert ds['level'].attrs['units'] == 'hPa'
  lon, lat = ds['longitude'].values, ds['latitude'].values
  np.testing.assert_allclose(lon, 360 * np.arange(64) / 64)
  assert np.all(np.diff(lat) > 0) and -90 < lat[0] < -85 and 85 < lat[-1] < 90
  assert ds['longitude'].attrs['units'] == 'degrees_east'
  assert ds['latitude'].attrs['units'] == 'degrees_north'
  assert np.issubdtype(ds['time'].dtype, np.datetime64)
  assert ds['trajectory'].dims == ('time',)
  assert np.issubdtype(ds['trajectory'].dtype, np.integer)
  assert grids.from_dataset(ds) == grids.gaussian(64, 32)
  # zarr format 2, as WB2 uses.
  assert zarr.open_group(store, mode='r').metadata.zarr_format == 2
  assert ds.attrs['truncation'] == 'T21' and ds.attrs['dt_minutes'] == 30
  assert len(ds.attrs['spinup_eddy_kinetic_energy']) == SMALL['spinup_days']


def test_dates_are_six_hourly_and_trajectories_do_not_overlap(ds):
  per = SMALL['days'] * 4
  traj = ds['trajectory'].values
  np.testing.assert_array_equal(traj, np.repeat(np.arange(SMALL['trajectories']), per))
  times = ds['time'].values
  assert np.all(np.diff(times) > np.timedelta64(0))
  for k in range(SMALL['trajectories']):
    t = times[traj == k]
    assert t[0] == np.datetime64(f'{2000 + k}-01-01T00:00')
    assert np.all(np.diff(t) == np.timedelta64(6, 'h'))


def _equilibrium_z500(lat_deg, ps=1e5):
  """500 hPa height (m) of a resting column at the Held-Suarez equilibrium temperature."""
  p = np.linspace(5e4, ps, 2001)
  lat = np.radians(lat_deg)
  teq = np.maximum(200.0, (315.0 - 60.0 * np.sin(lat) ** 2
                           - 10.0 * np.log(p / 1e5) * np.cos(lat) ** 2) * (p / 1e5) ** KAPPA)
  return R_DRY / G * np.trapezoid(teq, np.log(p))


def test_plausible_physics(ds):
  for name in held_suarez.PRESSURE_LEVEL_VARIABLES + ('surface_pressure',):
    assert np.all(np.isfinite(ds[name].values)), name
  t = ds['temperature'].values
  assert 180 < t.min() and t.max() < 330
  z500 = ds['geopotential'].sel(level=500).values / G
  low, high = _equilibrium_z500(90.0), _equilibrium_z500(0.0)
  assert 4650 < low < 4750 and 5820 < high < 5920  # the envelope itself
  assert low - 300 < z500.min() and z500.max() < high + 300, (z500.min(), z500.max())
  # Monotone in height.
  z = ds['geopotential'].values
  assert np.all(np.diff(z, axis=1) < 0)
  ps = ds['surface_pressure'].values
  assert 9.5e4 < ps.min() and ps.max() < 1.06e5
  assert np.abs(ds['u_component_of_wind'].values).max() < 100
  # Global mean surface pressure stays 1000 hPa (mass conservation), to 0.1 %.
  w = grids.gaussian(64, 32).quadrature_weights / (4 * np.pi)
  np.testing.assert_allclose((ps * w).sum((-2, -1)), 1e5, rtol=1e-3)


def test_geopotential_is_hydrostatic(ds):
  z, t = ds['geopotential'], ds['temperature']
  thickness = (z.sel(level=500) - z.sel(level=850)).values
  log_p = np.log(np.array(LEVELS[1:], float))
  # Layer-mean temperature in log p from the five levels 500..850 (trapezoid).
  t_mean = np.trapezoid(t.sel(level=list(LEVELS[1:])).values, log_p, axis=1) / np.ptp(log_p)
  rel = thickness / (R_DRY * t_mean * np.log(850 / 500)) - 1
  assert np.abs(rel).max() < 5e-3, np.abs(rel).max()   # measured 3.0e-3
  assert abs(rel.mean()) < 2e-3, rel.mean()             # measured -0.9e-3
  # Two levels only (T taken linear in log p): the curvature of T costs ~1 %.
  two = R_DRY * 0.5 * (t.sel(level=500) + t.sel(level=850)).values * np.log(850 / 500)
  assert np.abs(thickness / two - 1).max() < 0.02


def test_trajectories_differ(ds):
  a = ds['temperature'].where(ds['trajectory'] == 0, drop=True).values
  b = ds['temperature'].where(ds['trajectory'] == 1, drop=True).values
  rms = np.sqrt(np.mean((a - b) ** 2))
  assert rms > 0.1, rms


def test_eddy_kinetic_energy(ds):
  eke = held_suarez.eddy_kinetic_energy(ds)
  assert eke.dims == ('time', 'level')
  assert np.all(eke.values >= 0)
  u = ds['u_component_of_wind'].values
  v = ds['v_component_of_wind'].values
  np.testing.assert_allclose(held_suarez.eddy_kinetic_energy(u, v), eke.values, rtol=1e-6)
  # Independent: cos(latitude)-weighted mean of the eddy energy of a known field.
  lon, lat = np.meshgrid(np.radians(ds['longitude'].values), np.radians(ds['latitude'].values),
                         indexing='ij')
  uu = 3.0 + 2.0 * np.cos(3 * lon)   # eddy part 2 cos(3 lon): mean square 2
  vv = np.cos(lat) * np.sin(lon)     # eddy: mean over lat of cos^2 lat * 1/2 = 1/3
  np.testing.assert_allclose(held_suarez.eddy_kinetic_energy(uu, vv), 0.5 * (2 + 1 / 3),
                             rtol=1e-6)
  # Descending latitude gives the same.
  flipped = ds.isel(latitude=slice(None, None, -1))
  np.testing.assert_allclose(held_suarez.eddy_kinetic_energy(flipped).values, eke.values,
                             rtol=1e-5)


def test_cache_reuse_and_mismatch(store, monkeypatch):
  def fail(**_):
    raise AssertionError('simulate must not run for a cached store')
  monkeypatch.setattr(held_suarez, 'simulate', fail)
  assert held_suarez.make_dataset(store, progress=False, **SMALL) == store
  with pytest.raises(FileExistsError, match=r'different configuration.*days: 2 there, 3 asked'):
    held_suarez.make_dataset(store, progress=False, **dict(SMALL, days=3))
  # --overwrite regenerates; a failure then leaves the old store intact.
  with pytest.raises(AssertionError):
    held_suarez.make_dataset(store, overwrite=True, progress=False, **SMALL)
  assert held_suarez.make_dataset(store, progress=False, **SMALL) == store


def test_not_our_store_is_refused(tmp_path):
  other = tmp_path / 'other.zarr'
  xr.Dataset({'x': ('a', np.zeros(3))}).to_zarr(other, zarr_format=2)
  with pytest.raises(FileExistsError, match='not a dataset made by make_dataset'):
    held_suarez.make_dataset(other, progress=False, **SMALL)


def test_atomic_write(ds, tmp_path, monkeypatch):
  def interrupted(**_):
    raise KeyboardInterrupt
  monkeypatch.setattr(held_suarez, 'simulate', interrupted)
  out = tmp_path / 'out.zarr'
  with pytest.raises(KeyboardInterrupt):
    held_suarez.make_dataset(out, progress=False, **SMALL)
  assert not out.exists()
  monkeypatch.setattr(held_suarez, 'simulate', lambda **_: ds)
  original = xr.Dataset.to_zarr

  def write_then_fail(self, store, *args, **kwargs):
    original(self, store, *args, **kwargs)
    assert os.path.isdir(store)
    raise RuntimeError('disk full')
  monkeypatch.setattr(xr.Dataset, 'to_zarr', write_then_fail)
  with pytest.raises(RuntimeError, match='disk full'):
    held_suarez.make_dataset(out, progress=False, **SMALL)
  assert not out.exists()
  assert os.listdir(tmp_path) == []  # no partial store left either
  monkeypatch.setattr(xr.Dataset, 'to_zarr', original)
  assert held_suarez.make_dataset(out, progress=False, **SMALL) == str(out)
  assert out.exists()


def test_config_validation():
  with pytest.raises(ValueError, match='Gaussian grids'):
    held_suarez.Config(grid='healpix:8').resolved()
  with pytest.raises(ValueError, match='truncation T40 does not fit'):
    held_suarez.Config(truncation=40).resolved()
  with pytest.raises(ValueError, match='must divide'):
    held_suarez.Config(dt_minutes=7).resolved()
  assert held_suarez.Config().resolved().truncation == 21
  assert held_suarez.Config(truncation=31).resolved().dt_minutes == 20
  t42 = held_suarez.Config(grid='gaussian:128x64').resolved()
  assert (t42.truncation, t42.dt_minutes) == (42, 15)
  assert held_suarez.Config(days=400).years_per_trajectory == 2


def test_command_line(store, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  args = [sys.executable, os.path.join(REPO, 'tools', 'make_dataset.py'), f'--output={store}']
  args += [f'--{k}={",".join(map(str, v)) if k == "levels" else v}' for k, v in SMALL.items()]
  run = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
  assert run.returncode == 0, run.stderr
  assert 'reused' in run.stdout
  run = subprocess.run(args + ['--days=5'], capture_output=True, text=True, env=env,
                       check=False)
  assert run.returncode == 1
  assert 'different configuration' in run.stderr and 'Traceback' not in run.stderr


def test_make_dataset_on_regrids_once_and_reuses_the_store(tmp_path, monkeypatch):
  # A small stand-in for the embedded dataset (simulating it takes minutes).
  from sphere_plugin.io import cache  # pylint: disable=g-import-not-at-top
  from sphere_plugin.weather import testdata  # pylint: disable=g-import-not-at-top
  source = str(tmp_path / 'source.zarr')
  ds = testdata.synthetic_dataset()
  ds.attrs['config_hash'] = 'abc'
  ds.to_zarr(source, zarr_format=2, consolidated=True)
  monkeypatch.setattr(held_suarez, 'make_dataset', lambda **kwargs: source)
  monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / 'cache'))
  path = held_suarez.make_dataset_on('healpix:4', progress=False)
  out = xr.open_zarr(path)
  assert out.sizes['pixel'] == 192 and out.attrs['regrid_grid'] == 'healpix:4'
  assert out.attrs['source_config_hash'] == 'abc'
  stamp = os.path.getmtime(path)
  assert held_suarez.make_dataset_on('healpix:4', progress=False) == path
  assert os.path.getmtime(path) == stamp  # reused, not rewritten
