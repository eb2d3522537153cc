"""Workdirs written before the layout change still load, predict and resume.

The fixtures in `fixtures/workdirs_v0/` were written by sphere_plugin at commit
b6948b5 (see its README); their config.gin files import the old module paths
(`sphere_plugin.data.weather`, `sphere_plugin.train.forecast_task`, ...), which
must keep working as re-exporting shims, with every gin name unchanged.
"""

from __future__ import annotations

import json
import os
import shutil

import gin
import numpy as np
import pytest
import xarray as xr

import sphere_plugin  # registers ds.sphere
from sphere_plugin.weather import inference
from sphere_plugin.io import stored_config
from sphere_plugin.train import loop
from sphere_plugin.molecules import qm9_task

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'workdirs_v0')


@pytest.fixture
def copy(tmp_path, monkeypatch):
  root = tmp_path / 'v0'
  shutil.copytree(FIXTURES, root)
  monkeypatch.chdir(root)  # the forecaster's config names its data as 'data.zarr'
  return root


def _resume(workdir: str, num_steps: int):
  with gin.unlock_config():
    gin.clear_config()
    stored_config.parse(os.path.join(workdir, 'config.gin'),
                        [f'sphere_plugin.train.train.num_steps = {num_steps}'])
    try:
      return loop.train(workdir)
    finally:
      gin.clear_config()


def _train_steps(workdir: str) -> list[int]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r['step'] for r in map(json.loads, f) if r['event'] == 'train']


def test_v0_forecaster_predicts_and_resumes(copy):
  model = inference.load('forecaster')
  assert model.step == 2
  data = xr.open_zarr('data.zarr')
  out = data.isel(time=slice(0, 2)).sphere.predict(model, steps=2, progress=False)
  assert out.sizes['prediction_timedelta'] == 2
  assert np.isfinite(out['temperature'].values).all()
  normalization = open(os.path.join('forecaster', 'normalization.json')).read()
  state = _resume('forecaster', 4)
  assert int(state.step) == 4
  assert _train_steps('forecaster')[-1] == 4
  assert open(os.path.join('forecaster', 'normalization.json')).read() == normalization
  assert inference.load('forecaster').step == 4


def test_v0_qm9_run_predicts(copy):
  # Resuming goes through the same loop as the forecaster's; a QM9 resume
  # would add ~80 s (compiling the step and the final invariance evaluation).
  trained = qm9_task.TrainedQM9('qm9')
  assert trained.step == 2 and tuple(trained.targets) == ('h', 'mu')
  z = np.array([[6, 1, 1, 1, 1]])
  x = np.array([[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                 [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]], np.float32)
  assert np.isfinite(trained.predict(z, x)).all()
