"""The short form of the forecasting study (tools/forecast_study.py) on tiny synthetic data.

One seed, three training steps per model, tiny models: the spherical forecaster
and the planar CNN on gaussian:16x8, the graph forecaster on the same data
regridded to healpix:4. Checks that the command writes every table and figure,
that every learned model and the baselines are in the table, and that the
finished runs are found again without training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import sphere_plugin  # registers ds.sphere
from sphere_plugin.weather import testdata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'forecast_study.py')

PLANAR = """
import sphere_plugin.weather.baselines
sphere_plugin.train.ForecastTask.model = @sphere_plugin.models.PlanarForecaster
sphere_plugin.models.PlanarForecaster.features = 8
sphere_plugin.models.PlanarForecaster.blocks = 1
"""
GRAPH = """
import sphere_plugin.weather.baselines
sphere_plugin.train.ForecastTask.model = @sphere_plugin.models.GraphForecaster
sphere_plugin.models.GraphForecaster.grid = 'healpix:4'
sphere_plugin.models.GraphForecaster.features = (8, 8)
"""


def short_form(tmp_path) -> list[str]:
  """Writes the tiny data and gin files; returns the study's gin bindings."""
  gauss, hpx = str(tmp_path / 'data.zarr'), str(tmp_path / 'hpx.zarr')
  ds = testdata.synthetic_dataset()
  ds.to_zarr(gauss, zarr_format=2, consolidated=True)
  ds.sphere.regrid('healpix:4', method='spectral').to_zarr(hpx, zarr_format=2,
                                                           consolidated=True)
  files = {}
  for name, path, extra in (('spherical', gauss, ''), ('planar', gauss, PLANAR),
                            ('graph', hpx, GRAPH)):
    files[name] = str(tmp_path / f'{name}.gin')
    with open(files[name], 'w', encoding='utf-8') as f:
      f.write(testdata.CONFIG.format(path=path) + extra)
  models = ', '.join(f"('{k}', '{v}')" for k, v in files.items())
  return [f'sphere_plugin.weather.study.StudyConfig.models = ({models})',
          'sphere_plugin.weather.study.StudyConfig.seeds = (0,)',
          'sphere_plugin.weather.study.StudyConfig.num_steps = 3',
          'sphere_plugin.weather.study.StudyConfig.physics_truncations = ()',
          "sphere_plugin.weather.study.StudyConfig.max_lead = '24h'",
          "sphere_plugin.weather.study.StudyConfig.leads = ('6h', '24h')",
          'sphere_plugin.weather.study.StudyConfig.rollout_days = 2.0',
          'sphere_plugin.weather.study.StudyConfig.rollout_inits = 1',
          'sphere_plugin.weather.study.StudyConfig.spectrum_day = 1.0']


@pytest.mark.filterwarnings('ignore:variable .land_sea_mask.')
def test_short_study_writes_every_output_and_resumes(tmp_path):
  params = short_form(tmp_path)
  out = str(tmp_path / 'study')
  cmd = [sys.executable, TOOL, f'--gin_file={os.path.join(ROOT, "gin", "forecast_study.gin")}',
         f'--output_dir={out}', *[f'--gin_param={p}' for p in params]]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  for f in ('study.md', 'table.csv', 'scores.nc', 'rollout.csv', 'ke_spectrum.csv',
            'rmse_vs_lead.png', 'rmse_polar_vs_lead.png', 'ke_spectrum.png', 'study.json'):
    assert os.path.getsize(os.path.join(out, f)) > 0, f
  table = pd.read_csv(os.path.join(out, 'table.csv'))
  assert set(table['model']) == {'spherical', 'planar', 'graph', 'persistence', 'climatology'}
  assert set(table['metric']) == {'rmse', 'acc', 'rmse_polar'}
  assert table['mean'].notna().all()
  summary = json.load(open(os.path.join(out, 'study.json'), encoding='utf-8'))
  assert set(summary['parameters']) == {'spherical', 'planar', 'graph'}
  assert all(v > 0 for v in summary['parameters'].values())
  rollout = pd.read_csv(os.path.join(out, 'rollout.csv'))
  assert len(rollout) == 3 and rollout['finite'].all()
  assert '| z500 (m**2 s**-2) | 24h |' in open(os.path.join(out, 'study.md')).read()
  # Resume: the finished runs are found, not trained again (no gin file is even read).
  from sphere_plugin.weather import study  # pylint: disable=g-import-not-at-top
  cfg = study.StudyConfig(models=(('spherical', '/nonexistent.gin'),), seeds=(0,), num_steps=3)
  runs = study.train_all(cfg, out, progress=False)
  assert runs['spherical', 0]['train_seconds'] == summary['train_seconds_mean']['spherical']
