"""SphericalCNNTower inside NeuralGCM's toy TL63 model (NeuralGCM 1.2.2 legacy API).

One model is built from the shipped checkpoint's gin config plus our lines: a
SphericalCNNTower in the encoder's mapping and another in the learned physics
(`DivCurlNeuralParameterization`) mapping. On NeuralGCM's ERA5 snapshot it
runs encode, one model step (which calls the physics tower) and decode, and
takes Adam steps on the encoder tower whose reconstruction loss goes down.
Small towers (4 channels, lmax 10) keep the suite's CPU time down; compiled
code is cached in .cache/jax.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from sphere_plugin import neuralgcm as sng

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'finetune_neuralgcm.py')
TOWER = dict(features=(4,), lmaxes=(10,), num_filter_params=(3,))
LR = 3e-3
BINDINGS = (sng.tower_bindings(sng.ENCODER, 'sphere_encoder', **TOWER)
            + sng.tower_bindings(sng.PHYSICS, 'sphere_physics', **TOWER))


@pytest.fixture(scope='module')
def setup():
  from neuralgcm import demo  # pylint: disable=g-import-not-at-top
  model = sng.build_model(sng.load_checkpoint(extra_bindings=BINDINGS))
  snap = demo.load_data(model.data_coords).isel(time=0)
  inputs = model.inputs_from_xarray(snap)
  forcings = model.forcings_from_xarray(snap)
  params, new = sng.init_params(model, inputs, forcings, jax.random.key(0), with_advance=True)
  return sng.with_params(model, params), inputs, forcings, new


def test_new_towers_are_initialised_and_the_rest_kept(setup):
  model, _, _, new = setup
  assert new and all('spherical_cnn_tower' in m for m in new), new
  assert any('weatherbench_to_primitive_encoder' in m for m in new)
  assert any('div_curl_neural_parameterization' in m for m in new)
  ckpt = sng.load_checkpoint()
  kept = [m for m in model.params if m in ckpt['params']]
  # Only the two replaced towers (EpdTower of the encoder's and of the physics'
  # mappings) leave the model; everything else keeps its trained values.
  dropped = [m for m in ckpt['params'] if m not in model.params]
  assert dropped
  for m in dropped:
    assert '/nodal_mapping/~/epd_tower/' in m and (
        'weatherbench_to_primitive_encoder/nodal_mapping' in m
        or 'div_curl_neural_parameterization/nodal_mapping' in m), m
  assert len(kept) + len(dropped) == len(ckpt['params'])
  for m in kept:
    for k, v in ckpt['params'][m].items():
      np.testing.assert_array_equal(model.params[m][k], v)


def test_encode_step_decode(setup):
  model, inputs, forcings, _ = setup
  state = model.encode(inputs, forcings, jax.random.key(1))
  vorticity = state.state.vorticity  # ModelState(state=StateWithTime(...)), modal
  assert vorticity.shape == (32, 128, 65)
  state2 = model.advance(state, forcings)  # physics tower runs here
  assert not np.allclose(state2.state.vorticity, vorticity)
  out = model.decode(state2, forcings)
  assert out['temperature'].shape == (37, 128, 64)
  for k in model.input_variables:
    assert np.isfinite(np.asarray(out[k])).all(), k
  # Physical sanity after one hour from an untrained encoder tower: temperatures
  # in a broad atmospheric range (the other modules keep their trained weights).
  t = np.asarray(out['temperature'])
  assert 150 < t.min() and t.max() < 350, (t.min(), t.max())


def test_gradient_steps_reduce_the_loss(setup):
  model, inputs, forcings, _ = setup
  trained, losses = sng.fit_tower(model, inputs, forcings, jax.random.key(2), steps=3,
                                  learning_rate=LR)
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  changed = [m for m in model.params
             if any(not np.array_equal(trained.params[m][k], v)
                    for k, v in model.params[m].items())]
  # Only the encoder's tower trains; the physics tower and NeuralGCM's modules are frozen.
  assert changed and all('spherical_cnn_tower' in m and 'weatherbench_to_primitive_encoder' in m
                         for m in changed), changed


def test_tower_grid_must_match_the_model():
  for grid, match in (("'equiangular:128x64'", 'equiangular:128x64, but the model runs'),
                      ("'gaussian:64x32'", 'gaussian:64x32, but the model runs')):
    ckpt = sng.load_checkpoint(extra_bindings=sng.tower_bindings(
        sng.ENCODER, 'sphere_encoder', grid=grid, **TOWER))
    with pytest.raises(ValueError, match=match):
      sng.build_model(ckpt)


def _tool():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('finetune_neuralgcm', TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_finetune_tool_writes_a_wb2_forecast(tmp_path):
  """The tool end to end, shortened: 2 training steps, a 1-hour forecast.

  Same towers, learning rate and snapshot as the fixture's model, so most of
  its compiled code comes from the persistent cache.
  """
  import xarray as xr  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'forecast.nc'
  result = _tool().finetune_and_forecast(str(out), steps=2, learning_rate=LR, days=1 / 24,
                                         output_hours=1, tower_args=TOWER, physics_tower=True)
  assert len(result['losses']) == 3 and result['losses'][-1] < result['losses'][0]
  assert not list(tmp_path.glob('*.partial-*'))
  ds = xr.open_dataset(out)
  assert dict(ds.sizes) == {'time': 1, 'prediction_timedelta': 1, 'level': 37,
                            'longitude': 128, 'latitude': 64}
  assert ds.prediction_timedelta.values[0] == np.timedelta64(1, 'h')
  assert str(ds.time.values[0]).startswith('1959-01-02')
  assert {'geopotential', 'temperature', 'u_component_of_wind', 'v_component_of_wind',
          'specific_humidity'} <= set(ds.data_vars)


def test_finetune_tool_one_line_error(tmp_path):
  proc = subprocess.run([sys.executable, TOOL, f'--output={tmp_path / "x.nc"}', '--days=0.1'],
                        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(
      'finetune_neuralgcm: error: ValueError: --days=0.1 is not a positive multiple')
  assert not (tmp_path / 'x.nc').exists()
