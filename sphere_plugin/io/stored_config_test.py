"""A stored config.gin cannot run code, through any loader of a workdir."""

import os
import subprocess
import sys

import gin
import pytest

from sphere_plugin.io import stored_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What an attacker would put in a workdir they send: dynamic registration makes
# subprocess.check_call a configurable; each loader evaluates one of the two
# references (the task of train/restore/TrainedQM9, the WeatherSpec of
# inference.load/predict/evaluate).
_MALICIOUS = """\
from __gin__ import dynamic_registration
import subprocess
import sphere_plugin.weather
import sphere_plugin.train
subprocess.check_call.args = ['touch', '{marker}']
sphere_plugin.data.weather.WeatherSpec.path = @subprocess.check_call()
sphere_plugin.train.train.task = @subprocess.check_call()
"""


@pytest.fixture
def hostile_workdir(tmp_path):
  """A workdir whose config.gin would create `marker` if gin ran it."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  marker = tmp_path / 'PWNED'
  (workdir / 'config.gin').write_text(_MALICIOUS.format(marker=marker))
  for name in ('normalization.json', 'template.nc'):  # so inference.load reaches the config
    (workdir / name).write_text('{}')
  yield str(workdir), marker
  gin.clear_config()


def _loaders():
  from sphere_plugin import accessor  # pylint: disable=unused-import  (registers ds.sphere)
  from sphere_plugin.weather import inference
  from sphere_plugin import train
  from sphere_plugin.cli import evaluate
  from sphere_plugin.molecules import qm9_task
  import xarray as xr
  return {
      'inference.load': inference.load,
      'ds.sphere.predict': lambda w: xr.Dataset().sphere.predict(w),
      'evaluate training spec': evaluate._training_spec,  # pylint: disable=protected-access
      'train.restore': train.restore,
      'train.task_from_config': train.task_from_config,
      'TrainedQM9': qm9_task.TrainedQM9,
  }


@pytest.mark.parametrize('loader', sorted(_loaders()))
def test_no_loader_runs_a_hostile_config(hostile_workdir, loader):
  workdir, marker = hostile_workdir
  with pytest.raises(stored_config.UnsafeConfigError, match=r'config.gin line 1: .*__gin__'):
    _loaders()[loader](workdir)
  assert not marker.exists()


def test_evaluate_cli_refuses_in_one_line(hostile_workdir):
  workdir, marker = hostile_workdir
  proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'evaluate.py'),
                         f'--workdir={workdir}'], capture_output=True, text=True, cwd=REPO,
                        timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 1, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if 'refusing' in l]
  assert len(lines) == 1 and 'dynamic registration' in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not marker.exists()


@pytest.mark.parametrize('line, why', [
    ('import os', "'os' is not a sphere_plugin module"),
    ('import sphere_plugin.train\ninclude "other.gin"', 'may not include'),
    ('import gin.config', "'gin.config' is not a sphere_plugin module"),
    # A configurable that exists in this process but is not ours (gin's own).
    ('import sphere_plugin.train\nsphere_plugin.train.train.task = @gin.singleton()',
     "outside sphere_plugin"),
    ('import sphere_plugin.train\nos.system.command = "ls"', 'not a configurable registered'),
    ('import sphere_plugin.train\nsphere_plugin.train.train.task = {"a": [@os.system()]}',
     'not a configurable registered'),
    ('import sphere_plugin.train\nscope/builtins.eval.source = "1"',
     'not a configurable registered'),
])
def test_refused_lines(line, why):
  with pytest.raises(stored_config.UnsafeConfigError, match=why) as e:
    stored_config.check(line, 'w/config.gin')
  bad_line = len(line.splitlines())
  assert str(e.value).startswith(f'w/config.gin line {bad_line}: refusing ')
  assert '\n' not in str(e.value)


@pytest.mark.parametrize('name', ['forecaster_small.gin', 'qm9_small.gin', 'toy.gin',
                                  'forecaster.gin', 'qm9.gin'])
def test_shipped_configs_pass(name):
  # What training writes is checked by every test that loads a trained workdir
  # (forecast_test, qm9 and train integration tests); these are the sources.
  with open(os.path.join(REPO, 'gin', name), encoding='utf-8') as f:
    stored_config.check(f.read(), name)
