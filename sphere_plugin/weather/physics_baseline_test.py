"""The physics baseline is a real dinosaur integration that reproduces the data."""

from __future__ import annotations

import numpy as np
import pytest

from sphere_plugin.weather import held_suarez
from sphere_plugin.weather import physics_baseline as pb

# A tiny dataset: T10 on gaussian:32x16, 2 trajectories of 2 sampled days.
CFG = held_suarez.Config(grid='gaussian:32x16', layers=8, spinup_days=2, branch_days=1,
                         days=2, trajectories=2)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  import os  # pylint: disable=g-import-not-at-top
  os.environ['SPHERE_PLUGIN_CACHE'] = str(tmp_path_factory.mktemp('cache'))
  try:
    ds = held_suarez.simulate(progress=False, **{
        k: getattr(CFG, k) for k in ('grid', 'layers', 'spinup_days', 'branch_days', 'days',
                                     'trajectories')})
    states, times = pb.true_states(CFG, progress=False)
    yield ds, states, times
  finally:
    del os.environ['SPHERE_PLUGIN_CACHE']


def test_true_states_are_the_data_states(data):
  ds, states, times = data
  assert times.shape == (CFG.days, CFG.trajectories)
  assert states['vorticity'].shape[:2] == (CFG.days, CFG.trajectories)
  # Every kept time is a time of the dataset (00 UTC of a sampled day).
  assert set(times.ravel().tolist()) <= set(ds['time'].values.tolist())


def test_same_truncation_reproduces_the_data_to_round_off(data):
  ds, _, times = data
  inits = times[0]  # day 0 of both trajectories
  model = pb.PhysicsBaseline(truncation=CFG.resolved().truncation, config=CFG)
  fc = model.forecast(inits, steps=4, progress=False)
  assert fc['geopotential'].dims == ('time', 'prediction_timedelta', 'level', 'longitude',
                                     'latitude')
  for j, lead in enumerate(fc['prediction_timedelta'].values):
    for name in ('geopotential', 'temperature', 'u_component_of_wind', 'surface_pressure'):
      truth = ds[name].sel(time=inits + lead).values
      got = fc[name].isel(prediction_timedelta=j).values
      scale = float(np.abs(truth).max())
      # float32 round-off (relative 1e-6 of the field's size), not model error.
      np.testing.assert_allclose(got, truth, atol=2e-5 * scale, rtol=0,
                                 err_msg=f'{name} at {lead}')


def test_coarser_truncation_is_close_but_not_equal(data):
  ds, _, times = data
  inits = times[1]
  fc = pb.PhysicsBaseline(truncation=6, config=CFG).forecast(inits, steps=2, progress=False)
  truth = ds['temperature'].sel(time=inits + fc['prediction_timedelta'].values[0]).values
  got = fc['temperature'].isel(prediction_timedelta=0).values
  err = float(np.sqrt(np.mean((got - truth) ** 2)))
  assert 1e-3 < err < 5.0, err  # K: a different model, but the same weather
  with pytest.raises(ValueError, match='00 UTC'):
    pb.PhysicsBaseline(truncation=6, config=CFG).forecast(
        inits + np.timedelta64(6, 'h'), steps=1, progress=False)


def test_state_error_is_zero_for_the_data_states(data):
  ds, _, times = data
  err = pb.state_error(CFG, times[:, 0], ds, progress=False)
  assert set(err) == {'geopotential', 'temperature', 'u_component_of_wind',
                      'v_component_of_wind', 'surface_pressure'}
  assert err['temperature'] < 1e-3 and err['surface_pressure'] < 1.0, err
