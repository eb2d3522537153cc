"""End-to-end tests of tools/regrid.py on a small WB2-style zarr.

The input has latitude descending, longitudes -180..180, a time and a level dim,
NaNs over "land" in one variable and a static variable. The output is checked
for its dims, coords, attrs and values (against `ds.sphere.regrid` of the whole
dataset in memory, which is what the streamed, chunked run must reproduce), and
for global-integral conservation. Bad inputs must give one line on stderr and
exit status 1, without leaving an output behind; so must faults (issue 17): a
concurrent run to the same output, SIGTERM, a full disk, stale partials of
dead runs, resource bombs (a huge declared time dim, absurd target grids), an
empty time dim, any unexpected exception.
"""

import os
import signal
import subprocess
import sys
import time
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
from sphere_plugin.testing import mixed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'regrid.py')


def make_input(path, times=10):
  ds = mixed.mixed_dataset(times)
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
  # What happens before the bar starts is said, not silent.
  assert 'regrid: preparing conservative regridding to healpix:8' in proc.stderr
  assert 'regrid: regridder ready in ' in proc.stderr
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


PROGRESS_NOTES = ('regrid to ', 'regrid: preparing ', 'regrid: regridder ready in ')


def error_lines(stderr):
  """stderr without progress: the bar's updates (a bar stopped mid-run stays on screen)
  and the notes said before it starts."""
  return [l for l in stderr.strip().splitlines()
          if l.strip() and not l.startswith(PROGRESS_NOTES)]


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


def test_sigterm_mid_run_removes_the_partial_and_writes_no_output(tmp_path):
  """SIGTERM used to kill the run at once, leaving <output>.partial-<pid> behind."""
  path = str(tmp_path / 'in.zarr')
  make_input(path, times=300)
  out = str(tmp_path / 'out.zarr')
  proc = subprocess.Popen([sys.executable, TOOL, f'--input={path}', f'--output={out}',
                           '--grid=healpix:4', '--method=nearest', '--chunk=time=1'],
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=tool_env())
  deadline = time.time() + 120
  while not os.path.exists(f'{out}.partial-{proc.pid}') and proc.poll() is None:
    assert time.time() < deadline, 'no partial output appeared'
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)  # the first chunk is written, 299 to go
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  assert error_lines(stderr) == ['regrid: stopped by SIGTERM; the partial output was removed']
  assert sorted(os.listdir(tmp_path)) == ['in.zarr']


def test_stale_partials_are_named_and_removed_on_request(input_zarr, tmp_path, capsys):
  """A partial left by a SIGKILLed run used to go unmentioned forever."""
  path, _ = input_zarr
  out = str(tmp_path / 'out.zarr')
  dead = 2**22 + 7  # above the largest pid Linux hands out: that process is gone
  stale = f'{out}.partial-{dead}'
  os.makedirs(os.path.join(stale, 'temperature'))
  args = [f'--input={path}', f'--output={out}', '--grid=healpix:4', '--method=nearest']
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid', *args])
    assert cli.main(['regrid']) == 0
  lines = error_lines(capsys.readouterr().err)
  assert lines[0] == (f"regrid: warning: stale partial outputs of {out!r} from runs that are "
                      f'gone: {stale}; delete them or pass --remove_stale_partials'), lines
  assert os.path.isdir(stale)  # named, not touched
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid', *args, '--overwrite', '--remove_stale_partials'])
    assert cli.main(['regrid']) == 0
  assert error_lines(capsys.readouterr().err)[0] == (
      f'regrid: removed stale partial outputs of {out!r}: {stale}')
  assert os.listdir(tmp_path) == ['out.zarr']


def test_a_failed_write_removes_the_partial_after_in_flight_writes(input_zarr, tmp_path,
                                                                   monkeypatch, capsys):
  """On a full disk the clean-up raced zarr's other in-flight writes, which left a chunk."""
  import zarr.storage._local as zarr_local  # pylint: disable=g-import-not-at-top
  path, _ = input_zarr
  out = str(tmp_path / 'out.zarr')
  real_put = zarr_local._put
  failed = []

  def full_disk(file_path, value, exclusive=False):
    if 'temperature' in str(file_path):
      if not failed:
        failed.append(file_path)
        raise OSError(28, 'No space left on device', str(file_path))
      time.sleep(0.5)  # a sibling write still in flight when the first one fails
    return real_put(file_path, value, exclusive=exclusive)

  monkeypatch.setattr(zarr_local, '_put', full_disk)
  line = _error(capsys, input=path, output=out, grid='healpix:4', method='nearest')
  time.sleep(1.0)  # any straggler would have written by now
  assert os.listdir(tmp_path) == []
  assert f"writing {out!r} failed ([Errno 28] No space left on device" in line, line
  assert 'MiB free on its file system' in line


def make_declared_only(path, times=10**10):
  """A ~60 KB zarr declaring (time, latitude, longitude) = (times, 17, 32), no chunk written."""
  import zarr  # pylint: disable=g-import-not-at-top
  grid = grids.equiangular_with_poles(32, 17)
  root = zarr.open_group(path, mode='w', zarr_format=2)
  data = root.create_array('temperature', shape=(times, 17, 32), chunks=(8, 17, 32),
                           dtype='float32', fill_value=float('nan'))
  data.attrs['_ARRAY_DIMENSIONS'] = ['time', 'latitude', 'longitude']
  for name, values in (('latitude', grid.latitudes), ('longitude', grid.longitudes)):
    coord = root.create_array(name, shape=values.shape, dtype='float64', fill_value=None)
    coord[:] = values
    coord.attrs['_ARRAY_DIMENSIONS'] = [name]
  zarr.consolidate_metadata(path)


def test_a_huge_declared_time_dim_is_streamed_lazily(tmp_path, monkeypatch):
  """time = 10**10 used to make the CLI build 1.25e9 chunk slices (GBs) before any work."""
  path = str(tmp_path / 'huge.zarr')
  make_declared_only(path)
  calls = []
  original = cli.accessor.regrid_dataset

  def stop_at_the_third_chunk(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return original(*args, **kwargs)

  def too_slow(signum, frame):
    raise TimeoutError('chunk planning did not finish in 30 s')

  monkeypatch.setattr(cli.accessor, 'regrid_dataset', stop_at_the_third_chunk)
  previous = signal.signal(signal.SIGALRM, too_slow)
  signal.alarm(30)
  try:
    with pytest.raises(KeyboardInterrupt):
      cli.regrid_file(path, str(tmp_path / 'out.zarr'), 'healpix:4', 'nearest',
                      progress=False)
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  assert len(calls) == 3 and os.listdir(tmp_path) == ['huge.zarr']
  assert cli.chunk_steps('time', 8, 10**10)[0] == 1_250_000_000


def test_absurd_target_grids_are_refused_in_one_line(input_zarr, tmp_path, capsys):
  """healpix:1000000 or gaussian:10000000x5000000 used to be a MemoryError traceback."""
  path, _ = input_zarr
  ok = dict(input=path, output=str(tmp_path / 'out.zarr'))
  line = _error(capsys, **ok, grid='healpix:1000000')
  assert line.startswith('regrid: error: MemoryError: regridding ') and 'TiB' in line, line
  assert 'budget 4.00 GiB' in line and '--memory_budget_gib' in line
  line = _error(capsys, **ok, grid='gaussian:10000000x5000000', method='nearest')
  assert 'gaussian:10000000x5000000' in line and 'MemoryError' in line, line
  assert os.listdir(tmp_path) == []


def test_a_zero_length_time_dim_is_a_clear_error(input_zarr, tmp_path, capsys):
  """An empty input used to end in "No such file or directory: '...partial-<pid>'"."""
  _, ds = input_zarr
  path = str(tmp_path / 'empty.zarr')
  ds.isel(time=slice(0, 0)).to_zarr(path, zarr_format=2)
  line = _error(capsys, input=path, output=str(tmp_path / 'out.zarr'), grid='healpix:4')
  assert "has no data: dim 'time' has length 0" in line, line
  assert os.listdir(tmp_path) == ['empty.zarr']


@pytest.mark.parametrize('error,expected', [
    (RuntimeError('NetCDF: HDF error'), 'failed (RuntimeError: NetCDF: HDF error); '),
    (MemoryError('Unable to allocate 3.2 GiB'), 'MemoryError: Unable to allocate 3.2 GiB'),
])
def test_any_failure_is_one_line_and_verbose_adds_the_traceback(input_zarr, tmp_path,
                                                                monkeypatch, capsys,
                                                                error, expected):
  """Errors other than ValueError/KeyError/OSError used to escape as tracebacks."""
  path, _ = input_zarr

  def fail(*args, **kwargs):
    raise error

  monkeypatch.setattr(xr.Dataset, 'to_netcdf', fail)
  ok = dict(input=path, output=str(tmp_path / 'out.nc'), grid='healpix:4', method='nearest')
  assert expected in _error(capsys, **ok)
  assert os.listdir(tmp_path) == []
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid'] + [f'--{k}={v}' for k, v in ok.items()] + ['--verbose'])
    assert cli.main(['regrid']) == 1
  lines = error_lines(capsys.readouterr().err)
  assert lines[0] == 'Traceback (most recent call last):' and expected in lines[-1], lines


def test_cli_keeps_each_wind_components_attrs_and_notes_missing_only_where_nan(tmp_path):
  path = str(tmp_path / 'cf.zarr')
  ds = make_input(path, times=4)
  ds['u_component_of_wind'].attrs.update(long_name='U component of wind',
                                         standard_name='eastward_wind')
  ds['v_component_of_wind'].attrs.update(long_name='V component of wind',
                                         standard_name='northward_wind')
  sst = ds.sea_surface_temperature.values.copy()
  sst[:2] = 280.0  # NaN only from the second chunk on: the note must still be written
  ds['sea_surface_temperature'] = (ds.sea_surface_temperature.dims, sst)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ds.to_zarr(path, mode='w')
  out_path = str(tmp_path / 'hp.zarr')
  proc = run_tool(f'--input={path}', f'--output={out_path}', '--grid=healpix:4',
                  '--method=bilinear', '--chunk=time=2')
  assert proc.returncode == 0, proc.stderr
  out = xr.open_zarr(out_path)
  assert out.v_component_of_wind.attrs['long_name'] == 'V component of wind'
  assert out.v_component_of_wind.attrs['standard_name'] == 'northward_wind'
  assert out.u_component_of_wind.attrs['standard_name'] == 'eastward_wind'
  assert 'valid' in out.sea_surface_temperature.attrs['regrid_missing_values']
  assert 'regrid_missing_values' not in out.temperature.attrs
  assert 'regrid_missing_values' not in out.u_component_of_wind.attrs


def test_cli_ringing_warning_is_one_line_per_variable(input_zarr, tmp_path):
  path, _ = input_zarr
  proc = run_tool(f'--input={path}', f'--output={tmp_path / "g.zarr"}', '--grid=gaussian:64x32',
                  '--variables=land_sea_mask,temperature', '--chunk=time=3')
  assert proc.returncode == 0, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if 'Gibbs' in l]
  assert len(lines) == 1, proc.stderr  # 4 chunks, one warning
  assert lines[0].startswith("regrid: warning: variable 'land_sea_mask':"), lines
  assert 'after regridding vs 0/1 before' in lines[0]
  assert '.py:' not in proc.stderr  # no source location inside the library


def test_cli_shows_no_jax_backend_info_line(input_zarr, tmp_path):
  path, _ = input_zarr
  env = tool_env()
  env.pop('JAX_PLATFORMS', None)  # as a user runs it: JAX probes for TPU/GPU backends
  proc = subprocess.run(
      [sys.executable, TOOL, f'--input={path}', f'--output={tmp_path / "g.zarr"}',
       '--grid=healpix:4', '--method=spectral', '--variables=temperature'],
      capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr
  # JAX's INFO line ('Unable to initialize backend ...') landed inside the progress bar.
  assert 'xla_bridge.py' not in proc.stderr and 'initialize backend' not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------
# HEALPix conventions (issue 16, item 3): NESTED in, xdggs / CF / easy.gems out.

def band_limited_gaussian(path, times=3):
  """gaussian:32x16 (lmax 15) with fields of degree <= 6: healpix:8 (exact to
  degree 2*nside = 16) holds them, so a round trip through it keeps them."""
  grid = grids.gaussian(32, 16)
  la, lo = np.meshgrid(np.radians(grid.latitudes), np.radians(grid.longitudes), indexing='ij')
  base = 1 + np.sin(la) + np.cos(la) ** 2 * np.cos(2 * lo) + 0.5 * np.cos(la) ** 6 * np.sin(6 * lo)
  temp = np.stack([base * (1 + 0.1 * t) for t in range(times)]).astype(np.float32)
  ds = xr.Dataset({'temperature': (('time', 'latitude', 'longitude'), temp, {'units': 'K'})},
                  coords={'time': pd.date_range('2021-03-01', periods=times, freq='6h'),
                          'latitude': grid.latitudes, 'longitude': grid.longitudes})
  ds.to_zarr(path, mode='w', zarr_format=2)
  return ds


def test_cli_healpix_output_decodes_with_xdggs_and_round_trips(tmp_path):
  import healpy  # pylint: disable=g-import-not-at-top
  import xdggs  # pylint: disable=g-import-not-at-top
  src_path, hp_path, back_path = (str(tmp_path / n) for n in ('g.zarr', 'hp.zarr', 'back.zarr'))
  ds = band_limited_gaussian(src_path)
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid', f'--input={src_path}', f'--output={hp_path}', '--grid=healpix:8',
                 '--healpix_order=nested', '--chunk=time=2'])
    assert cli.main(['regrid']) == 0
  hp = xr.open_zarr(hp_path)
  decoded = xdggs.decode(hp)
  info = decoded.dggs.grid_info
  assert (info.level, info.indexing_scheme) == (3, 'nested')
  assert hp.crs.attrs['grid_mapping_name'] == 'healpix' and hp.crs.attrs[
      'indexing_scheme'] == 'nested' and hp.crs.attrs['healpix_order'] == 'nest'
  assert hp.temperature.attrs['grid_mapping'] == 'crs'
  # NESTED numbers: the in-memory RING regrid, reordered by healpy.
  ring = ds.sphere.regrid('healpix:8')
  np.testing.assert_allclose(hp.temperature.values,
                             healpy.reorder(ring.temperature.values, r2n=True), rtol=0,
                             atol=1e-6)
  # Back to the source grid by the CLI (in-process: tools/regrid.py is the same main,
  # and a subprocess costs seconds of JAX start-up), reading the NESTED store. The
  # field is band-limited (degree 6), so the round trip is exact up to float32:
  # 1e-5, the bound of the spectral round-trip checks.
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid', f'--input={hp_path}', f'--output={back_path}',
                 '--grid=gaussian:32x16'])
    assert cli.main(['regrid']) == 0
  back = xr.open_zarr(back_path)
  assert 'crs' not in back.coords and back.attrs['regrid_source_grid'] == 'healpix:8'
  assert 'healpix_order' not in back.attrs
  np.testing.assert_allclose(back.temperature.transpose(*ds.temperature.dims).values,
                             ds.temperature.values, rtol=0, atol=1e-5)


def test_cli_refuses_partial_sky_healpix_in_one_line(tmp_path, capsys):
  path = str(tmp_path / 'partial.zarr')
  cells = np.arange(20, 768)
  xr.Dataset({'t': (('time', 'cells'), np.ones((2, cells.size), np.float32))},
             coords={'time': [0, 1],
                     'cell_ids': ('cells', cells, {'grid_name': 'healpix', 'level': 3,
                                                   'indexing_scheme': 'nested'})}
             ).to_zarr(path, zarr_format=2)
  line = _error(capsys, input=path, output=str(tmp_path / 'out.zarr'), grid='gaussian:32x16')
  assert 'full sphere' in line and '20 cells missing' in line and 'nested ids 0, 1, 2' in line
  assert not os.path.exists(tmp_path / 'out.zarr')


def _run_main(capsys, **values):
  """cli.main in this process (no JAX start-up per run); returns (exit code, stderr)."""
  with flagsaver.flagsaver():
    flags.FLAGS(['regrid'] + [f'--{k}={v}' for k, v in values.items()])
    code = cli.main(['regrid'])
  return code, capsys.readouterr().err


def test_one_command_regrids_a_mixed_file_with_per_variable_methods(tmp_path, capsys):
  """Smooth fields, winds, an SST with NaN over land and precipitation in one file."""
  path = str(tmp_path / 'mixed.zarr')
  ds = mixed.mixed_dataset(times=4, precipitation=True)
  ds.to_zarr(path, mode='w', zarr_format=2)
  # Spectral for all refuses the SST, naming it and the per-variable way out.
  code, err = _run_main(capsys, input=path, output=str(tmp_path / 'a.zarr'), grid='healpix:8')
  assert code == 1 and "'sea_surface_temperature'" in err and '--method_for' in err
  assert not os.path.exists(tmp_path / 'a.zarr')
  # --method_for: the SST (and the rain) conservative, the rest spectral.
  code, err = _run_main(
      capsys, input=path, output=str(tmp_path / 'b.zarr'), grid='healpix:8',
      method='spectral', method_for='sea_surface_temperature=conservative,'
      'total_precipitation_6hr=conservative', chunk='time=3')
  assert code == 0, err
  b = xr.open_zarr(str(tmp_path / 'b.zarr')).load()
  assert b.sea_surface_temperature.attrs['regrid_method'] == 'conservative'
  assert b.temperature.attrs['regrid_method'] == 'spectral' and b.attrs['regrid_method'] == 'mixed'
  # auto: the same choice from the data and the names; printed in the summary.
  code, err = _run_main(capsys, input=path, output=str(tmp_path / 'c.zarr'), grid='healpix:8',
                        method='auto', chunk='time=3')
  assert code == 0, err
  summary = [l for l in err.splitlines() if l.startswith('wrote ')]
  assert len(summary) == 1 and 'methods: ' in summary[0], err
  assert 'sea_surface_temperature (missing values)' in summary[0]
  assert 'total_precipitation_6hr (non-negative flux or mask' in summary[0]
  assert 'u_component_of_wind:v_component_of_wind (vector pair)' in summary[0]
  c = xr.open_zarr(str(tmp_path / 'c.zarr')).load()
  got = {n: c[n].attrs['regrid_method'] for n in c.data_vars}
  assert got == {'temperature': 'spectral', 'u_component_of_wind': 'spectral',
                 'v_component_of_wind': 'spectral', 'sea_surface_temperature': 'conservative',
                 'total_precipitation_6hr': 'conservative', 'land_sea_mask': 'conservative'}
  for name in c.data_vars:
    if name != 'land_sea_mask':  # spectral in b: not named in --method_for
      np.testing.assert_array_equal(c[name].values, b[name].values)
  # The streamed result equals the in-memory one; winds went through the spin-1 pair.
  want = ds.sphere.regrid('healpix:8', 'auto')
  for name in c.data_vars:
    np.testing.assert_allclose(c[name].values, want[name].values, rtol=1e-6, atol=1e-5)
  assert float(c.total_precipitation_6hr.min()) >= 0
  code, err = _run_main(capsys, input=path, output=str(tmp_path / 'd.zarr'), grid='healpix:8',
                        method_for='temperature')
  assert code == 1 and 'regrid: error: --method_for needs NAME=METHOD' in err
