"""End-to-end tests of tools/train.py on the toy task (gin/toy.gin).

A run is killed with SIGKILL between checkpoints and restarted with the same
command: it must continue from the last complete checkpoint (not from 0), end
at num_steps, keep one metrics row per step, and leave only checkpoints that
restore. SIGTERM must save a checkpoint at the current step and exit 0. Errors
(bad gin, divergence) are one line with exit status 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from absl import flags
from absl.testing import flagsaver
import gin
import jax
import numpy as np
import pytest

from sphere_plugin import train as train_lib
from sphere_plugin.train import cli
from sphere_plugin.train import toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'train.py')
GIN = os.path.join(ROOT, 'gin', 'toy.gin')
NUM_STEPS = 60
# 0.05 s per step: the run takes ~3 s, long enough to be caught between checkpoints.
PARAMS = [f'sphere_plugin.train.train.num_steps={NUM_STEPS}',
          'sphere_plugin.train.train.checkpoint_every=10',
          'sphere_plugin.train.train.eval_every=20',
          'sphere_plugin.train.train.log_every=5',
          'sphere_plugin.train.ToyTask.step_delay=0.05']

cli.define_flags()


def _command(workdir):
  return [sys.executable, TOOL, f'--gin_file={GIN}', f'--workdir={workdir}',
          *[f'--gin_param={p}' for p in PARAMS]]


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu',
              JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, '.cache', 'jax'))


def _start(workdir, log):
  return subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=log,
                          stderr=subprocess.STDOUT)


def _wait_for_checkpoint(proc, workdir, at_least, timeout=90.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    steps = train_lib.checkpoint_steps(workdir)
    if steps and steps[-1] >= at_least:
      return
    assert proc.poll() is None, f'the run exited early with status {proc.returncode}'
    time.sleep(0.05)
  proc.kill()
  raise AssertionError(f'no checkpoint >= {at_least} after {timeout} s')


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'first.log', 'w') as log:
    proc = _start(workdir, log)
    _wait_for_checkpoint(proc, workdir, 20)
    proc.kill()
    proc.wait()
  saved = train_lib.checkpoint_steps(workdir)
  last = saved[-1]
  assert 20 <= last < NUM_STEPS and proc.returncode == -signal.SIGKILL
  # What a kill during a save leaves: orbax's tmp dir, never a `<step>` dir.
  # It must be ignored (and cleaned up), not resumed from.
  junk = os.path.join(workdir, 'checkpoints', f'{last + 10}.orbax-checkpoint-tmp-123')
  os.makedirs(os.path.join(junk, 'variables'))

  proc = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resuming from step {last} of {NUM_STEPS}' in proc.stderr
  assert not os.path.exists(junk)
  assert train_lib.checkpoint_steps(workdir) == [40, 50, 60]  # max_to_keep 3

  rows = _rows(workdir)
  assert [r['step'] for r in rows if r['event'] == 'train'] == list(range(5, 65, 5))
  assert [r['step'] for r in rows if r['event'] == 'eval'] == [20, 40, 60]
  assert [r['step'] for r in rows if r['event'] == 'resume'] == [last]
  assert rows[-1]['event'] == 'done' and rows[-1]['step'] == NUM_STEPS
  assert all(np.isfinite(r['loss']) and r['time'] > 0 for r in rows if r['event'] == 'train')
  assert os.path.exists(os.path.join(workdir, 'toy_task.json'))
  assert any(n.startswith('events.out.tfevents')
             for n in os.listdir(os.path.join(workdir, 'tensorboard')))

  # Every kept checkpoint restores; restore() rebuilds the task from config.gin.
  template = jax.eval_shape(toy.ToyTask().init_variables, jax.random.key(0))
  for step in (40, 50, 60):
    variables, got = train_lib.latest_variables(workdir, template, step=step)
    assert got == step and all(np.isfinite(x).all() for x in jax.tree.leaves(variables))
  try:
    variables, step = train_lib.restore(workdir)
  finally:
    gin.clear_config()
  assert step == NUM_STEPS
  np.testing.assert_array_equal(variables['params']['Dense_1']['kernel'],
                                train_lib.latest_variables(workdir, template)[0]
                                ['params']['Dense_1']['kernel'])


def test_sigterm_saves_at_the_current_step_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'run.log', 'w') as log:
    proc = _start(workdir, log)
    _wait_for_checkpoint(proc, workdir, 10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
  text = open(tmp_path / 'run.log').read()
  stopped = int(re.search(r'SIGTERM: saved checkpoint (\d+)', text).group(1))
  assert 10 <= stopped < NUM_STEPS
  assert train_lib.checkpoint_steps(workdir)[-1] == stopped
  assert _rows(workdir)[-1] == {**_rows(workdir)[-1], 'event': 'preempted', 'step': stopped}


def test_sigint_saves_at_the_current_step_and_exits_cleanly(tmp_path):
  # Ctrl-C: the same as SIGTERM, not a KeyboardInterrupt traceback.
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'run.log', 'w') as log:
    proc = _start(workdir, log)
    _wait_for_checkpoint(proc, workdir, 10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, open(tmp_path / 'run.log').read()[-2000:]
  text = open(tmp_path / 'run.log').read()
  stopped = int(re.search(r'SIGINT: saved checkpoint (\d+)', text).group(1))
  assert 10 <= stopped < NUM_STEPS and 'Traceback' not in text
  assert 'train: compiling the training step' in text and 'first step compiled' in text
  assert train_lib.checkpoint_steps(workdir)[-1] == stopped
  assert _rows(workdir)[-1] == {**_rows(workdir)[-1], 'event': 'preempted', 'step': stopped}


def test_two_processes_with_distributed_flag_match_one_process(tmp_path, clean_gin):
  # Two "hosts" with 2 faked CPU devices each, found by jax.distributed's SLURM
  # detection (faked through its environment variables; the coordinator on a
  # free local port). Each feeds its 4 rows of the global batch of 8.
  workdir, params = str(tmp_path / 'two'), ['sphere_plugin.train.train.num_steps=12',
                                            'sphere_plugin.train.train.checkpoint_every=6']
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  procs = []
  for i in range(2):
    env = dict(_env(), XLA_FLAGS='--xla_force_host_platform_device_count=2',
               JAX_COORDINATOR_ADDRESS=f'localhost:{port}', SLURM_JOB_ID='1',
               SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2', SLURM_PROCID=str(i),
               SLURM_LOCALID=str(i))
    log = open(tmp_path / f'p{i}.log', 'w')
    procs.append(subprocess.Popen(
        [sys.executable, TOOL, f'--gin_file={GIN}', f'--workdir={workdir}', '--distributed',
         *[f'--gin_param={p}' for p in params]], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout=120) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert codes == [0, 0], open(tmp_path / 'p0.log').read()[-2000:]
  start = _rows(workdir)[0]
  assert (start['devices'], start['processes']) == (4, 2)

  # The same run in this process on its one device.
  gin.parse_config_files_and_bindings([GIN], params + ['sphere_plugin.train.train.progress=False'])
  single = str(tmp_path / 'one')
  state = train_lib.train(single)
  assert train_lib.checkpoint_steps(workdir) == train_lib.checkpoint_steps(single) == [6, 12]
  variables, _ = train_lib.latest_variables(workdir, state.variables)
  # Only the float32 reduction order differs (4 partial sums vs 1).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               variables, state.variables)
  loss = {r['step']: r['loss'] for r in _rows(single) if r['event'] == 'train'}
  for row in _rows(workdir):
    if row['event'] == 'train':
      np.testing.assert_allclose(row['loss'], loss[row['step']], rtol=1e-5)


@pytest.fixture
def clean_gin():
  yield
  gin.clear_config()


def _cli_error(capsys, workdir, *params):
  with flagsaver.flagsaver():
    flags.FLAGS(['train', f'--gin_file={GIN}', f'--workdir={workdir}',
                 '--gin_param=sphere_plugin.train.train.progress=False',
                 *[f'--gin_param={p}' for p in params]])
    code = cli.main(['train'])
  lines = capsys.readouterr().err.strip().splitlines()
  # Progress messages come first ('train: ...'); the error is the last line, alone.
  assert code == 1 and lines[-1].startswith('train: error: '), lines
  assert not any(line.startswith('train: error') for line in lines[:-1]), lines
  return lines[-1]


def test_cli_errors_are_one_line(tmp_path, capsys, clean_gin):
  workdir = str(tmp_path / 'w')
  assert 'bad gin config' in _cli_error(capsys, workdir, 'sphere_plugin.train.train.nope=1')
  gin.clear_config()
  # A typo in a gin file: the one line names the file, the line and its text.
  typo = tmp_path / 'typo.gin'
  typo.write_text('import sphere_plugin.train\n\nsphere_plugin.train.train.num_stepz = 3\n')
  message = _cli_error(capsys, workdir, f'include "{typo}"')
  assert f'(file "{typo}", line 3: sphere_plugin.train.train.num_stepz = 3)' in message, message
  gin.clear_config()
  message = _cli_error(capsys, workdir, 'sphere_plugin.train.ToyTask.nan_at_step=3',
                       'sphere_plugin.train.train.checkpoint_every=2')
  assert 'diverged at step 3' in message and 'last checkpoint is 2' in message
  assert train_lib.checkpoint_steps(workdir) == [2]
