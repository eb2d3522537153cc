"""tools/train.py on QM9 (gin/qm9_small.gin, shrunk): kill, resume, continue.

A run on a tiny subset is killed with SIGKILL after its first checkpoint and
restarted with the same command. The resumed run must start from the last
checkpoint, end at num_steps, and log the same losses at every step as an
uninterrupted run (batches and rotations are functions of (seed, step)); the
final test evaluation must write test_metrics.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gin
import numpy as np

from sphere_plugin import train as train_lib
from sphere_plugin.molecules import qm9_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'train.py')
GIN = os.path.join(ROOT, 'gin', 'qm9_small.gin')
NUM_STEPS = 24
PARAMS = [
    "GRID = 'gaussian:8x4'",
    "INPUT_GRID = 'gaussian:8x4'",
    'sphere_plugin.nn.SphericalCNN.lmaxes = (3,)',
    'sphere_plugin.nn.SphericalCNN.features = (4,)',
    'sphere_plugin.nn.SphericalCNN.spins = (0,)',
    'sphere_plugin.nn.SphericalCNN.num_filter_params = (2,)',
    'sphere_plugin.models.MoleculeEncoder.features = 8',
    'sphere_plugin.models.QM9Regressor.hidden = 8',
    "sphere_plugin.train.QM9Task.targets = ('h', 'mu')",
    'sphere_plugin.train.QM9Task.size_buckets = (29,)',  # one compiled shape
    'sphere_plugin.train.QM9Task.train_size = 256',
    'sphere_plugin.train.QM9Task.valid_size = 32',
    'sphere_plugin.train.QM9Task.test_size = 32',
    f'sphere_plugin.train.train.num_steps = {NUM_STEPS}',
    'sphere_plugin.train.train.batch_size = 8',
    'sphere_plugin.train.train.eval_batch_size = 32',
    'sphere_plugin.train.train.checkpoint_every = 2',
    'sphere_plugin.train.train.eval_every = 12',
    'sphere_plugin.train.train.log_every = 1',
    'sphere_plugin.train.optimizer.warmup_steps = 2',
]


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu',
              JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, '.cache', 'jax'))


def _command(workdir):
  return [sys.executable, TOOL, f'--gin_file={GIN}', f'--workdir={workdir}',
          *[f'--gin_param={p}' for p in PARAMS]]


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return {r['step']: r['loss'] for r in rows if r['event'] == 'train'}, rows


def test_killed_qm9_run_resumes_and_its_losses_continue(tmp_path):
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'first.log', 'w') as log:
    proc = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not train_lib.checkpoint_steps(workdir):
      assert proc.poll() is None, open(tmp_path / 'first.log').read()[-3000:]
      assert time.monotonic() < deadline, 'no checkpoint after 240 s'
      time.sleep(0.02)
    proc.kill()
    proc.wait()
  last = train_lib.checkpoint_steps(workdir)[-1]
  assert last < NUM_STEPS and proc.returncode == -signal.SIGKILL

  done = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=400)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'resuming from step {last} of {NUM_STEPS}' in done.stderr
  assert 'QM9 test split (32 molecules' in done.stdout
  resumed, rows = _losses(workdir)
  assert sorted(resumed) == list(range(1, NUM_STEPS + 1))
  assert [r['step'] for r in rows if r['event'] == 'resume'] == [last]
  assert rows[-1]['event'] == 'test' and 'test_mae_h' in rows[-1]
  report = json.load(open(os.path.join(workdir, 'test_metrics.json')))
  assert set(report['targets']) == {'h', 'mu'}

  # The same run, uninterrupted, in this process.
  gin.parse_config_files_and_bindings(
      [GIN], PARAMS + ['sphere_plugin.train.train.progress = False',
                       'sphere_plugin.train.QM9Task.progress = False'])
  try:
    train_lib.train(str(tmp_path / 'straight'))
  finally:
    gin.clear_config()
  straight, _ = _losses(str(tmp_path / 'straight'))
  steps = sorted(straight)
  np.testing.assert_allclose([resumed[s] for s in steps], [straight[s] for s in steps],
                             rtol=1e-4)
  assert np.mean([straight[s] for s in steps[-6:]]) < np.mean([straight[s] for s in steps[:6]])

  # The trained model, rebuilt from the workdir alone, reproduces the test MAE.
  try:
    trained = qm9_task.TrainedQM9(workdir)
    test = trained.task.test
    n = int(test.num_atoms.max())
    pred = trained.predict(test.atomic_numbers[:, :n], test.positions[:, :n])
    emb = trained.embed(test.atomic_numbers[:4], test.positions[:4])
  finally:
    gin.clear_config()
  assert trained.step == NUM_STEPS and trained.targets == ('h', 'mu')
  mae = np.mean(np.abs(pred - test.targets[:, [9, 0]]), axis=0)
  np.testing.assert_allclose(mae, [report['targets']['h']['model_mae'],
                                   report['targets']['mu']['model_mae']], rtol=1e-5)
  assert emb['atoms'].shape == (4, 29, 8) and emb['molecule'].shape == (4, 8)
  # The trained filters run on a finer grid too (inference with less aliasing).
  try:
    finer = qm9_task.TrainedQM9(workdir, bindings=[
        "sphere_plugin.nn.SphericalCNN.grids = ('gaussian:16x8',)"])
    pred_fine = finer.predict(test.atomic_numbers[:, :n], test.positions[:, :n])
  finally:
    gin.clear_config()
  assert np.all(np.isfinite(pred_fine)) and not np.allclose(pred_fine, pred)
