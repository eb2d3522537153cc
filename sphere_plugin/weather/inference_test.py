"""Trained-forecaster loading, rollouts and `ds.sphere.predict`, on a tiny trained workdir."""

from __future__ import annotations

import os

import gin
import numpy as np
import pytest
import xarray as xr

import sphere_plugin  # registers ds.sphere
from sphere_plugin.weather import inference
from sphere_plugin import grids
from sphere_plugin.weather.testdata import CONFIG
from sphere_plugin.weather.testdata import GRID
from sphere_plugin.weather.testdata import LEVEL_VARS
from sphere_plugin.weather.testdata import synthetic_dataset
from sphere_plugin import weather
from sphere_plugin.train import loop

@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp('forecast')
  path = str(root / 'data.zarr')
  synthetic_dataset().to_zarr(path, zarr_format=2, consolidated=True)
  work = str(root / 'work')
  with gin.unlock_config():
    gin.clear_config()
    gin.parse_config(CONFIG.format(path=path))
    try:
      loop.train(work)
    finally:
      gin.clear_config()
  return work


@pytest.fixture(scope='module')
def model(workdir):
  return inference.load(workdir)


def test_load_without_training_data(workdir, model):
  assert model.step == 3
  assert model.grid == GRID
  # The workdir alone rebuilds the model: the template replaces the dataset.
  assert model.data.path == os.path.join(workdir, inference.TEMPLATE_FILE)
  assert gin.config_str().strip() == ''  # the caller's (empty) gin config is restored


def test_predict_matches_rollout_and_wb2_layout(model):
  ds = synthetic_dataset().isel(time=slice(30, 33))
  out = ds.sphere.predict(model, steps=2)
  assert out['temperature'].dims == ('time', 'prediction_timedelta', 'level', 'longitude',
                                     'latitude')
  np.testing.assert_array_equal(out['prediction_timedelta'].values,
                                np.array([6, 12], 'timedelta64[h]').astype('timedelta64[ns]'))
  np.testing.assert_array_equal(out['time'].values, ds['time'].values)
  assert out['temperature'].attrs['units'] == 'K'
  assert set(out.data_vars) == set(LEVEL_VARS) | {'surface_pressure'}
  state = model.data.state_arrays(ds)
  ref = model.rollout(state, ds['time'].values, 2)  # (3, 2, 16, 8, C)
  c = model.data.channels.index('temperature_850')
  np.testing.assert_allclose(out['temperature'].sel(level=850).values, ref[..., c], rtol=1e-6)
  # Scalar time: no time dim in the result.
  one = ds.isel(time=0).sphere.predict(model, steps=1)
  assert 'time' not in one.dims and one['geopotential'].dims[0] == 'prediction_timedelta'


def test_predict_keeps_input_layout(model):
  ds = synthetic_dataset().isel(time=slice(30, 32))
  flipped = ds.assign_coords(longitude=(ds.longitude + 180) % 360 - 180).sortby(
      'longitude').isel(latitude=slice(None, None, -1)).transpose(
          'time', 'level', 'latitude', 'longitude')
  a = ds.sphere.predict(model, steps=1)
  b = flipped.sphere.predict(model, steps=1)
  assert b['temperature'].dims[-2:] == ('latitude', 'longitude')
  np.testing.assert_array_equal(b.latitude.values, flipped.latitude.values)
  np.testing.assert_array_equal(b.longitude.values, flipped.longitude.values)
  back = b.assign_coords(longitude=b.longitude % 360).sortby('longitude').sortby('latitude')
  back = back.assign_coords(longitude=a.longitude, latitude=a.latitude)
  xr.testing.assert_allclose(a['temperature'], back['temperature'].transpose(
      *a['temperature'].dims), rtol=1e-5)


def test_predict_on_another_grid_comes_back_on_it(model):
  ds = synthetic_dataset().isel(time=slice(30, 32))
  fine = ds.sphere.regrid('equiangular:32x16', method='conservative')
  out = fine.sphere.predict(model, steps=1)
  assert out.sphere.grid == grids.parse('equiangular:32x16')
  # Same forecast as on the model grid, up to the regridding there and back.
  ref = ds.sphere.predict(model, steps=1).sphere.regrid('equiangular:32x16', method='conservative')
  # The synthetic fields carry grid-scale noise, which two conservative
  # regriddings smooth differently: compare RMS, relative to the field's spread.
  rms = float(np.sqrt(((out['temperature'] - ref['temperature']) ** 2).mean()))
  assert rms < 0.1 * float(ref['temperature'].std()), rms


def test_predict_on_nested_healpix_answers_in_the_inputs_order(model):
  """A NESTED (xdggs / CF / easy.gems-described) input: RING inside, NESTED out.

  Reference: the same forecast from the RING version, reordered by healpy's
  nest2ring (nested map = ring map[..., nest2ring(ids)]); the
  model and both regriddings see identical arrays, so 1e-6 is float32 slack.
  """
  import healpy  # pylint: disable=g-import-not-at-top
  ds = synthetic_dataset().isel(time=slice(30, 32))
  ring = ds.sphere.regrid('healpix:4', method='conservative')
  nested = ds.sphere.regrid('healpix:4', method='conservative', order='nested')
  a = ring.sphere.predict(model, steps=1)
  b = nested.sphere.predict(model, steps=1)
  assert b.sphere.grid == grids.healpix(4) and b.crs.attrs['healpix_order'] == 'nest'
  assert grids.healpix_layout(b).order == 'nested'
  np.testing.assert_array_equal(b.cell_ids.values, nested.cell_ids.values)
  np.testing.assert_allclose(b['temperature'].values,
                             a['temperature'].values[..., healpy.nest2ring(4, np.arange(192))],
                             rtol=1e-6,
                             atol=1e-6)


def test_predict_names_missing_variables_and_levels(model):
  ds = synthetic_dataset().isel(time=slice(30, 31))
  with pytest.raises(ValueError, match='surface_pressure'):
    ds.drop_vars('surface_pressure').sphere.predict(model)
  with pytest.raises(ValueError, match='850'):
    ds.sel(level=[500]).sphere.predict(model)
  with pytest.raises(ValueError, match='steps'):
    ds.sphere.predict(model, steps=0)
  with pytest.raises(FileNotFoundError, match='not a'):
    inference.load(os.path.dirname(model.workdir))


def test_evaluate_writes_scores_and_figures(workdir, tmp_path):
  from sphere_plugin.cli import evaluate  # pylint: disable=g-import-not-at-top
  result = evaluate.evaluate(workdir, str(tmp_path), max_lead='12h', init_every='6h',
                             leads=('6h', '12h'), progress=False)
  for name in ('scores.nc', 'skill.txt', 'rmse_vs_lead.png', 'map_z500_12h.png',
               'map_t850_12h.png'):
    assert os.path.getsize(tmp_path / name) > 0, name
  rmse = result['rmse']
  # Persistence against an independent computation from the test-period data.
  truth = synthetic_dataset().sel(time=slice('2002-01-01', '2002-12-31'))
  z = truth['geopotential'].sel(level=500).values  # (T, lon, lat)
  w = grids.parse('gaussian:16x8').quadrature_weights
  w = w / w.mean()
  n = truth.sizes['time'] - 2  # initial times: windows of 12 h inside the period
  ref = np.sqrt(np.mean([np.mean((z[i + 1] - z[i]) ** 2 * w) for i in range(n)]))
  got = float(rmse['persistence']['geopotential'].sel(level=500, prediction_timedelta='6h'))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  assert 'persistence' in result['table'] and 'model' in result['table']
  scores = xr.open_dataset(tmp_path / 'scores.nc')
  assert list(scores['metric'].values) == ['rmse', 'acc']
  # ACC of persistence at a lead of 0 would be 1; at 6 h it is high but below 1.
  a = float(result['acc']['persistence']['temperature'].sel(level=850, prediction_timedelta='6h'))
  assert 0 < a < 1


_PARALLEL = """
import sys
import gin, jax, numpy as np
from sphere_plugin.weather import testdata
from sphere_plugin.train import loop
assert jax.device_count() == int(sys.argv[3]), jax.devices()
gin.parse_config(testdata.CONFIG.format(path=sys.argv[1]) + testdata.ONE_STEP)
state = loop.train(sys.argv[2])
assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == jax.device_count()
leaves = jax.tree_util.tree_flatten_with_path(state.variables)[0]
np.savez(sys.argv[2] + '/out.npz', **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
"""



def test_four_devices_train_step_equals_one_device(workdir, tmp_path):
  """One step of the forecaster (spectral batch norms in train mode), batch 4.

  4 faked CPU devices hold one row each; batch statistics and gradients must be
  reduced over the global batch to match one device. Tolerance rtol 1e-4,
  atol 1e-6: float32 reduction order differs (sums over the batch inside the
  transforms and the batch norms).
  """
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  data = os.path.join(os.path.dirname(workdir), 'data.zarr')
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = {}
  for n in (1, 4):
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
               JAX_PLATFORMS='cpu')
    run = str(tmp_path / f'd{n}')
    proc = subprocess.run([sys.executable, '-c', _PARALLEL, data, run, str(n)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out[n] = np.load(os.path.join(run, 'out.npz'))
  assert sorted(out[1].files) == sorted(out[4].files)
  for k in out[1].files:
    np.testing.assert_allclose(out[4][k], out[1][k], rtol=1e-4, atol=1e-6, err_msg=k)
  # The step did something: batch statistics left their initial values.
  stats = [k for k in out[1].files if 'batch_stats' in k and k.endswith("['var']")]
  assert stats and max(float(np.abs(out[1][k] - 1).max()) for k in stats) > 1e-3


def test_predict_streams_over_initial_times(model):
  """Peak memory is about one output, not several (input and output regridded per batch).

  The input is on a finer grid than the model, so the regridded output
  dominates memory; before streaming, predict held the whole input regridded,
  the whole forecast on both grids and a reindexed copy (4-5 outputs).
  """
  import tracemalloc
  fine = synthetic_dataset().isel(time=slice(0, 32)).sphere.regrid('equiangular:96x48',
                                                           method='conservative')
  streamed = fine.sphere.predict(model, steps=2, batch_size=2)  # warm-up: compile, weights
  one_shot = fine.sphere.predict(model, steps=2, batch_size=32)
  for name in one_shot.data_vars:  # float32 model: batch size changes the rounding only
    diff = float(abs(streamed[name] - one_shot[name]).max())
    assert diff <= 1e-4 * float(one_shot[name].std()), (name, diff)
  tracemalloc.start()
  try:
    out = fine.sphere.predict(model, steps=2, batch_size=2)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert out.sizes['time'] == 32
  assert peak < 1.6 * out.nbytes, (peak / 2**20, out.nbytes / 2**20)


def test_resume_trains_with_the_stored_statistics(workdir, tmp_path, monkeypatch):
  # A resumed run must keep normalization.json (the checkpoint was trained with
  # it) and train with it, even where recomputing would give other values.
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from sphere_plugin.weather import forecast_task  # pylint: disable=g-import-not-at-top
  work = str(tmp_path / 'work')
  shutil.copytree(workdir, work)
  path = os.path.join(work, weather.NORMALIZER_FILENAME)
  stored = json.load(open(path))
  stored['std'] = [v * 1.07 for v in stored['std']]
  with open(path, 'w') as f:
    json.dump(stored, f)
  text = open(path).read()
  used = []
  original = forecast_task.ForecastTask.train_batches

  def spy(self, *args, **kwargs):
    used.append(np.asarray(self.data.normalizer.std))
    return original(self, *args, **kwargs)
  monkeypatch.setattr(forecast_task.ForecastTask, 'train_batches', spy)
  with gin.unlock_config():
    gin.clear_config()
    gin.parse_config(CONFIG.format(path=os.path.join(os.path.dirname(workdir), 'data.zarr')))
    gin.bind_parameter('sphere_plugin.train.train.num_steps', 4)
    try:
      state = loop.train(work)
    finally:
      gin.clear_config()
  assert int(state.step) == 4
  assert open(path).read() == text
  np.testing.assert_allclose(used[0], np.float32(stored['std']), rtol=1e-6)


def test_predict_keeps_each_variables_attrs_and_says_how_it_regridded(model):
  ds = synthetic_dataset().isel(time=slice(30, 32))
  ds['u_component_of_wind'].attrs.update(long_name='U component of wind',
                                         standard_name='eastward_wind')
  ds['v_component_of_wind'].attrs.update(long_name='V component of wind',
                                         standard_name='northward_wind')
  fine = ds.sphere.regrid('equiangular:32x16', method='bilinear')
  assert fine.attrs['regrid_method'] == 'bilinear'
  out = fine.sphere.predict(model, steps=1)  # regrids conservatively itself
  assert out['v_component_of_wind'].attrs['standard_name'] == 'northward_wind'
  assert out['u_component_of_wind'].attrs['standard_name'] == 'eastward_wind'
  assert out.attrs['regrid_method'] == 'conservative'
  assert out.attrs['regrid_source_grid'] == str(model.grid)
  # On the model grid nothing is regridded: no regrid attrs (the input's are stale).
  stamped = ds.assign_attrs(regrid_method='nearest', regrid_source_grid='healpix:4')
  same = stamped.sphere.predict(model, steps=1)
  assert 'regrid_method' not in same.attrs and 'regrid_source_grid' not in same.attrs


def test_predict_shows_progress_unless_asked_not_to(model, capsys):
  ds = synthetic_dataset().isel(time=slice(30, 33))
  ds.sphere.predict(model, steps=1, batch_size=2)
  assert 'predict 1 step(s)' in capsys.readouterr().err
  ds.sphere.predict(model, steps=1, batch_size=2, progress=False)
  assert 'predict' not in capsys.readouterr().err


def test_validation_rollout_equals_the_multi_step_rollout(workdir):
  # ForecastTask.evaluate compiles one step and loops it (a k-step program took
  # over 10 minutes to compile on HEALPix); its predictions must be the rollout's.
  import jax  # pylint: disable=g-import-not-at-top
  from sphere_plugin.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from sphere_plugin.weather import forecaster  # pylint: disable=g-import-not-at-top
  with workdir_lib.stored_gin_config(workdir):
    task = workdir_lib.task_from_config(workdir)
    variables, _ = workdir_lib.restore(workdir, task)
  task.evaluate(variables, batch_size=2)  # builds task._eval_fn
  batch = task.data.load(task.data.window_starts('valid', 3)[:2], 3)
  got = np.asarray(task._eval_fn(variables, batch['inputs'], batch['forcings']))
  want, _ = jax.jit(lambda v, x, f: forecaster.rollout(task.model, v, x, f, task.diff_scale))(
      variables, batch['inputs'], batch['forcings'])
  assert got.shape == (2, 3) + batch['inputs'].shape[1:]
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_training_spec_evaluates_an_embedded_grid_macro(tmp_path, monkeypatch):
  """gin/forecaster_small_healpix.gin binds `embedded_grid = %GRID`: the macro's value is used."""
  from sphere_plugin.weather import forecast_task  # pylint: disable=g-import-not-at-top
  (tmp_path / 'config.gin').write_text(
      "import sphere_plugin.weather.forecast_task\n"
      "GRID = 'healpix:16'\n"
      "sphere_plugin.train.ForecastTask.embedded_grid = %GRID\n")
  seen = []
  monkeypatch.setattr(forecast_task, 'with_embedded_data',
                      lambda spec, grid, progress=True: seen.append(grid) or spec)
  inference.training_spec(str(tmp_path))
  assert seen == ['healpix:16']
