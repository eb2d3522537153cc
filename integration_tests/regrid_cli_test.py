"""End-to-end tests of tools/regrid.py on a small WB2-style zarr.

The input has latitude descending, longitudes -180..180, a time and a level dim,
NaNs over "land" in one variable and a static variable. The output is checked
for its dims, coords, attrs and values (against `ds.sphere.regrid` of the whole
dataset in memory, which is what the streamed, chunked run must reproduce), and
for global-integral conservation. Bad inputs must give one line on stderr and
exit status 1, without leaving an output behind.
"""

import os
import subprocess
import sys
import warnings

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import xarray_tensorstore

import sphere_plugin
from sphere_plugin import grids
from sphere_plugin import regrid
from sphere_plugin.cli import regrid as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'regrid.py')


def make_input(path, times=10):
  grid = grids.equiangular_with_poles(32, 17)
  lat, lon = grid.latitudes[::-1], np.arange(32) * 11.25 - 180.0
  la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing='ij')
  rng = np.random.default_rng(0)
  base = 250 + 30 * np.cos(la) ** 2 + 5 * np.sin(la) * np.cos(2 * lo)
  temp = base[None, None] + rng.normal(size=(times, 2) + base.shape)
  sst = np.where((np.abs(np.degrees(la)) < 30) & (np.cos(lo) > 0), np.nan, base)
  wind = 10 * np.cos(la)
  ds = xr.Dataset(
      {'temperature': (('time', 'level', 'latitude', 'longitude'), temp.astype(np.float32),
                       {'units': 'K', 'long_name': 'temperature'}),
       'sea_surface_temperature': (('time', 'latitude', 'longitude'),
                                   np.repeat(sst[None], times, 0).astype(np.float32)),
       'u_component_of_wind': (('time', 'level', 'latitude', 'longitude'),
                               np.broadcast_to(wind, temp.shape).astype(np.float32)),
       'v_component_of_wind': (('time', 'level', 'latitude', 'longitude'),
                               np.zeros(temp.shape, np.float32)),
       'land_sea_mask': (('latitude', 'longitude'), np.isnan(sst).astype(np.float32))},
      coords={'time': pd.date_range('2021-03-01', periods=times, freq='6h'),
              'level': np.array([500, 850]), 'latitude': lat, 'longitude': lon},
      attrs={'title': 'tiny WB2-style test set'})
  with warnings.catch_warnings():  # zarr 3's note on consolidated metadata
    warnings.simplefilter('ignore')
    ds.to_zarr(path, mode='w')  # format 3 here; the error cases below write format 2
  return ds


@pytest.fixture(scope='module')
def input_zarr(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('in') / 'wb2.zarr')
  return path, make_input(path)


def tool_env():
  """The environment of a tool run: this checkout's package first (not an installed one)."""
  return {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])}


def run_tool(*args):
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300, env=tool_env())


def test_cli_regrids_a_wb2_zarr_conservatively(input_zarr, tmp_path):
  path, ds = input_zarr
  out_path = str(tmp_path / 'hp.zarr')
  proc = run_tool(f'--input={path}', f'--output={out_path}', '--grid=healpix:8',
                  '--method=conservative', '--chunk=time=3')
  assert proc.returncode == 0, proc.stderr
  assert 'regrid to healpix:8' in proc.stderr  # the progress bar
  assert sorted(os.listdir(tmp_path)) == ['hp.zarr']  # no partial output left
  out = xarray_tensorstore.open_zarr(out_path).load()
  assert out.temperature.dims == ('time', 'level', 'pixel')
  assert out.sizes == {'time': 10, 'level': 2, 'pixel': 768}
  np.testing.assert_array_equal(out.time.values, ds.time.values)
  assert out.attrs['title'] == ds.attrs['title'] and out.attrs['healpix_nside'] == 8
  assert out.temperature.attrs['units'] == 'K'
  assert 'valid' in out.sea_surface_temperature.attrs['regrid_missing_values']
  assert out.sphere.grid == grids.healpix(8)
  # The streamed result equals the in-memory regrid of the whole dataset.
  want = ds.sphere.regrid('healpix:8', 'conservative')
  for name in ('temperature', 'sea_surface_temperature', 'land_sea_mask',
               'u_component_of_wind', 'v_component_of_wind'):
    np.testing.assert_allclose(out[name].values, want[name].values, rtol=1e-6, atol=1e-5)
  # Conservation of the global integral of a complete field.
  src_area = regrid.cell_areas(grids.equiangular_with_poles(32, 17))  # (lon, lat)
  src = ds.temperature.transpose(..., 'longitude', 'latitude').values[..., ::-1]
  src = np.roll(src, 16, axis=-2)  # longitudes from 0
  total_in = np.sum(src.astype(np.float64) * src_area, axis=(-2, -1))
  total_out = np.sum(out.temperature.values.astype(np.float64) * 4 * np.pi / 768, axis=-1)
  np.testing.assert_allclose(total_out, total_in, rtol=1e-6)
  # NaNs only where no valid ocean overlaps.
  assert 0 < float(out.sea_surface_temperature.isnull().mean()) < 0.3


def test_cli_writes_netcdf_and_needs_overwrite(input_zarr, tmp_path):
  path, ds = input_zarr
  out_path = str(tmp_path / 'g.nc')
  args = [f'--input={path}', f'--output={out_path}', '--grid=gaussian:64x32',
          '--method=spectral', '--variables=temperature,land_sea_mask']
  with flagsaver.flagsaver(), pytest.warns(UserWarning, match='non-negative field'):
    flags.FLAGS(['regrid', *args])  # the 0/1 land-sea mask rings when regridded spectrally
    assert cli.main(['regrid']) == 0
  out = xr.open_dataset(out_path)
  assert set(out.data_vars) == {'temperature', 'land_sea_mask'}
  assert out.temperature.dims == ('time', 'level', 'latitude', 'longitude')
  assert out.latitude.values[0] > out.latitude.values[-1]  # the input's direction
  want = ds[['temperature']].sphere.regrid('gaussian:64x32')
  np.testing.assert_allclose(out.temperature.values, want.temperature.values, rtol=1e-6)
  out.close()
  proc = run_tool(*args)  # the output exists now
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"regrid: error: output '{out_path}' exists; pass --overwrite to replace it"]
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid', *args, '--overwrite', '--method=nearest'])
    assert cli.main(['regrid']) == 0
  assert xr.open_dataset(out_path).attrs['regrid_method'] == 'nearest'


def error_lines(stderr):
  """stderr without the progress bar's updates (a bar stopped mid-run stays on screen)."""
  return [l for l in stderr.strip().splitlines() if l.strip() and not l.startswith('regrid to ')]


def _error(capsys, **values):
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid'] + [f'--{k}={v}' for k, v in values.items()])
    code = cli.main(['regrid'])
  lines = error_lines(capsys.readouterr().err)
  assert code == 1 and len(lines) == 1 and lines[0].startswith('regrid: error: '), lines
  return lines[0]


def test_cli_bad_input_gives_one_line_errors(input_zarr, tmp_path, capsys):
  path, ds = input_zarr
  out = str(tmp_path / 'out.zarr')
  ok = dict(input=path, output=out, grid='healpix:4')
  assert 'unknown grid kind' in _error(capsys, **{**ok, 'grid': 'cubed:32'})
  assert 'does not exist' in _error(capsys, **{**ok, 'input': str(tmp_path / 'nope.zarr')})
  assert "['geopotential'] not in" in _error(capsys, **ok, variables='temperature,geopotential')
  assert 'missing' in _error(capsys, **ok, variables='u_component_of_wind')
  assert 'missing' in _error(capsys, **ok, vector_pairs='temperature:wind_v')
  assert 'does not exist' in _error(capsys, **{**ok, 'output': str(tmp_path / 'no' / 'o.zarr')})
  read_only = tmp_path / 'ro'
  read_only.mkdir()
  read_only.chmod(0o500)
  if not os.access(read_only, os.W_OK):  # root can write anyway
    assert 'not writable' in _error(capsys, **{**ok, 'output': str(read_only / 'o.zarr')})
  regional = str(tmp_path / 'regional.zarr')
  ds.isel(latitude=slice(2, 12)).to_zarr(regional, zarr_format=2)
  assert 'not a global' in _error(capsys, **{**ok, 'input': regional})
  irregular = str(tmp_path / 'irregular.zarr')
  ds.isel(longitude=[0, 1, 2, 4, 5, 6, 7] + list(range(8, 32))).to_zarr(irregular, zarr_format=2)
  assert 'equally spaced longitudes' in _error(capsys, **{**ok, 'input': irregular})
  assert 'is not a dim' in _error(capsys, **ok, chunk='member=2')
  assert not os.path.exists(out)


def test_an_interrupted_run_leaves_nothing_that_looks_complete(input_zarr, tmp_path,
                                                               monkeypatch):
  path, _ = input_zarr
  out = str(tmp_path / 'out.zarr')
  calls = []
  original = cli.accessor.regrid_dataset

  def fail_on_third_chunk(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return original(*args, **kwargs)

  monkeypatch.setattr(cli.accessor, 'regrid_dataset', fail_on_third_chunk)
  with pytest.raises(KeyboardInterrupt):
    cli.regrid_file(path, out, 'healpix:4', 'nearest', chunk='time=2', progress=False)
  assert os.listdir(tmp_path) == []


def test_cli_streams_mixed_variables_along_a_default_time_like_dim(tmp_path):
  """Later chunks hold only some variables: static winds, a time series, a zonal mean."""
  ds = make_input(str(tmp_path / 'tmp.zarr'), times=7).rename(time='valid_time')
  ds['10m_u_component_of_wind'] = ds.u_component_of_wind.isel(valid_time=0, level=0, drop=True)
  ds['10m_v_component_of_wind'] = ds.v_component_of_wind.isel(valid_time=0, level=0, drop=True)
  ds['co2'] = ('valid_time', np.arange(7.0))
  ds['zonal_mean'] = ds.temperature.mean('longitude')
  path = str(tmp_path / 'in.nc')
  ds.to_netcdf(path)
  out_path = str(tmp_path / 'out.zarr')
  args = [f'--input={path}', f'--output={out_path}', '--grid=healpix:4', '--method=nearest']
  with flagsaver.flagsaver(), pytest.warns(UserWarning, match='zonal_mean'):
    flags.FLAGS(['regrid', *args])
    assert cli.main(['regrid']) == 0
  assert cli.default_chunk_dim(ds, ('longitude', 'latitude')) == 'valid_time'
  out = xr.open_zarr(out_path).load()
  assert 'zonal_mean' not in out and out.sizes['valid_time'] == 7
  np.testing.assert_array_equal(out.co2.values, np.arange(7.0))
  with pytest.warns(UserWarning, match='zonal_mean'):
    want = ds.sphere.regrid('healpix:4', 'nearest')
  for name in ('temperature', 'u_component_of_wind', '10m_u_component_of_wind',
               '10m_v_component_of_wind', 'sea_surface_temperature'):
    np.testing.assert_allclose(out[name].values, want[name].values, rtol=1e-6, atol=1e-6)


def test_cli_refuses_inf_with_the_spectral_method(input_zarr, tmp_path, capsys):
  """One Inf used to make the whole field NaN with exit status 0."""
  _, ds = input_zarr
  path = str(tmp_path / 'inf.zarr')
  t = ds.temperature.values.copy()
  t[1, 0, 3, 3] = -np.inf
  ds[['temperature']].assign(temperature=(ds.temperature.dims, t)).to_zarr(path, zarr_format=2)
  out = str(tmp_path / 'out.zarr')
  line = _error(capsys, input=path, output=out, grid='healpix:4', chunk='time=4')
  assert "variable 'temperature'" in line and '1 -Inf' in line, line
  assert sorted(os.listdir(tmp_path)) == ['inf.zarr']


@pytest.mark.parametrize('name', ['out.zarr', 'out.nc'])
def test_an_output_that_appears_during_the_run_is_not_replaced(input_zarr, tmp_path,
                                                                monkeypatch, capsys, name):
  """Two runs to one output: the last to finish used to replace the first, both 'wrote'."""
  path, _ = input_zarr
  out = str(tmp_path / name)
  original = cli.accessor.regrid_dataset

  def other_run_finishes_first(*args, **kwargs):
    if not os.path.exists(out):
      if name.endswith('.zarr'):
        os.makedirs(out)
        out_file = os.path.join(out, 'theirs')
      else:
        out_file = out
      with open(out_file, 'w') as f:
        f.write('theirs')
    return original(*args, **kwargs)

  monkeypatch.setattr(cli.accessor, 'regrid_dataset', other_run_finishes_first)
  line = _error(capsys, input=path, output=out, grid='healpix:4', method='nearest',
                chunk='time=5')
  assert 'appeared while this run was writing it' in line and '--overwrite' in line, line
  assert os.listdir(tmp_path) == [name]  # the partial is gone
  assert open(os.path.join(out, 'theirs') if name.endswith('.zarr') else out).read() == 'theirs'
  with flagsaver.flagsaver():  # --overwrite replaces it
    flags.FLAGS(['regrid', f'--input={path}', f'--output={out}', '--grid=healpix:4',
                 '--method=nearest', '--overwrite'])
    assert cli.main(['regrid']) == 0
  assert xr.open_dataset(out, engine='zarr' if name.endswith('.zarr') else None).sizes[
      'pixel'] == 192
