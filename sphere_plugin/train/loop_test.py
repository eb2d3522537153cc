"""Tests of the training loop on the toy BatchNorm task (sphere_plugin.train.toy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sphere_plugin import train as train_lib
from sphere_plugin.train import loop
from sphere_plugin.train import toy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET = dict(progress=False, log_every=1, eval_every=1000)


def _plain_steps(task, tx, batches, num_steps):
  """Reference: the same updates with plain, unsharded, un-jitted jax."""
  state = loop.create_state(task, tx, seed=0)
  params, model_state, opt_state = state.params, state.model_state, state.opt_state
  for _, batch in zip(range(num_steps), batches):
    def loss_fn(p):
      return task.loss({'params': p, **model_state}, batch, jax.random.key(0), True)
    (_, (model_state, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return {'params': params, **model_state}


_PARALLEL_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np, optax
    from sphere_plugin.train import checkpoints, loop, toy
    assert jax.device_count() == 4, jax.devices()
    try:
      loop.train(sys.argv[1] + '/bad', task=toy.ToyTask(), batch_size=6, progress=False)
      error = None
    except ValueError as e:
      error = str(e)
    state = loop.train(sys.argv[1] + '/run', task=toy.ToyTask(), num_steps=2, batch_size=8,
                       optimizer=optax.sgd(0.1), checkpoint_every=1, progress=False)
    leaves = jax.tree_util.tree_flatten_with_path(state.variables)[0]
    np.savez(sys.argv[1] + '/out.npz', **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    devices = len(jax.tree.leaves(state.params)[0].sharding.device_set)
    # The compiled step must reduce across devices (gradients, BatchNorm moments).
    task, tx, mesh = toy.ToyTask(), optax.sgd(0.1), loop.make_mesh()
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    batch = loop._global_batch(next(task.train_batches(8, seed=0, start_step=0)), rows, 8, 0)
    abstract = checkpoints.abstract(jax.eval_shape(lambda: loop.create_state(task, tx, 0)),
                              jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    hlo = loop.make_train_step(task, tx, mesh).lower(abstract, batch).compile().as_text()
    print(json.dumps({'error': error, 'param_devices': devices,
                      'batch_devices': len(batch['x'].sharding.device_set),
                      'all_reduce': hlo.count('all-reduce(')}))
''')


def test_data_parallel_step_equals_single_device_computation(tmp_path):
  # 4 faked CPU devices, batch 8 sharded 2 rows per device, 2 SGD steps through
  # BatchNorm in train mode, vs the same steps on the whole batch without any
  # sharding. Tolerance rtol 1e-5: only the float32 reduction order differs.
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _PARALLEL_SCRIPT, str(tmp_path)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads(proc.stdout.strip().splitlines()[-1])
  assert 'not divisible by the 4 devices' in info['error']
  assert info['param_devices'] == info['batch_devices'] == 4
  assert info['all_reduce'] > 0, info

  task, tx = toy.ToyTask(), optax.sgd(0.1)
  want = _plain_steps(task, tx, task.train_batches(8, seed=0, start_step=0), 2)
  got = np.load(tmp_path / 'out.npz')
  want_leaves = jax.tree_util.tree_flatten_with_path(want)[0]
  assert sorted(got.files) == sorted(jax.tree_util.keystr(k) for k, _ in want_leaves)
  for path, value in want_leaves:
    np.testing.assert_allclose(got[jax.tree_util.keystr(path)], value, rtol=1e-5, atol=1e-7,
                               err_msg=jax.tree_util.keystr(path))

  # The check can fail: per-device batch statistics (each device normalising
  # its own 2 rows) give a clearly different running variance.
  batch = next(task.train_batches(8, seed=0, start_step=0))
  variables = task.init_variables(jax.random.split(jax.random.key(0))[0])
  per_device = [task.loss(variables, {k: v[i:i + 2] for k, v in batch.items()},
                          None, True)[1][0]['batch_stats'] for i in range(0, 8, 2)]
  global_ = task.loss(variables, batch, None, True)[1][0]['batch_stats']
  var_local = np.mean([s['BatchNorm_0']['var'] for s in per_device], axis=0)
  assert np.max(np.abs(var_local - global_['BatchNorm_0']['var'])) > 1e-2


class _SigtermAt(toy.ToyTask):
  """Sends this process SIGTERM while fetching the batch of step `at`."""

  def __init__(self, at):
    super().__init__()
    self.at = at

  def train_batches(self, batch_size, *, seed, start_step, **kw):
    for step, batch in enumerate(super().train_batches(batch_size, seed=seed,
                                                       start_step=start_step, **kw), start_step):
      if step == self.at:
        signal.raise_signal(signal.SIGTERM)
      yield batch


def test_resume_after_sigterm_equals_straight_run(tmp_path):
  if threading.current_thread() is not threading.main_thread():
    pytest.skip('signal handlers need the main thread')  # SIGTERM would kill the runner
  tx = loop.optimizer('adamw', 1e-2, 'cosine', warmup_steps=2, num_steps=10)
  split, straight = str(tmp_path / 'split'), str(tmp_path / 'straight')
  kw = dict(num_steps=10, batch_size=8, optimizer=tx, checkpoint_every=4, **QUIET)
  previous = signal.getsignal(signal.SIGTERM)
  # The batch of step 5 is fetched while step 4 -> 5 runs: the loop stops at 5.
  state = train_lib.train(split, task=_SigtermAt(5), **kw)
  assert int(state.step) == 5 and loop.checkpoint_steps(split) == [4, 5]
  assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
  resumed = train_lib.train(split, task=toy.ToyTask(), **kw)
  reference = train_lib.train(straight, task=toy.ToyTask(), **kw)
  assert int(resumed.step) == int(reference.step) == 10
  # Same device, same ops: equal up to ~1e-6 (float32 rounding at most).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               (resumed.variables, resumed.opt_state), (reference.variables, reference.opt_state))
  rows = [json.loads(line) for line in open(os.path.join(split, 'metrics.jsonl'))]
  train_steps = [r['step'] for r in rows if r['event'] == 'train']
  assert train_steps == list(range(1, 11))  # each step logged once across both runs
  assert [r['event'] for r in rows if r['step'] == 5][-2:] == ['preempted', 'resume']
  # A finished workdir: nothing to train, the final state comes back.
  again = train_lib.train(split, task=toy.ToyTask(), **kw)
  np.testing.assert_array_equal(again.params['Dense_0']['kernel'],
                                resumed.params['Dense_0']['kernel'])
  variables, step = train_lib.latest_variables(split, reference.variables)
  assert step == 10
  np.testing.assert_array_equal(variables['batch_stats']['BatchNorm_0']['mean'],
                                reference.model_state['batch_stats']['BatchNorm_0']['mean'])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / 'nan')
  with pytest.raises(FloatingPointError, match=r'diverged at step 5 .*loss is nan.*last '
                     r'checkpoint is 4'):
    train_lib.train(workdir, task=toy.ToyTask(nan_at_step=5), num_steps=10, batch_size=4,
                    optimizer=optax.adam(1e-2), checkpoint_every=2, **QUIET)
  assert loop.checkpoint_steps(workdir) == [2, 4]
  template = jax.eval_shape(toy.ToyTask().init_variables, jax.random.key(0))
  variables, step = train_lib.latest_variables(workdir, template)
  assert step == 4 and all(np.isfinite(x).all() for x in jax.tree.leaves(variables))
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert max(r['step'] for r in rows) == 5  # nothing logged for the bad step

  # Finite loss, non-finite update (infinite learning rate): caught too.
  with pytest.raises(FloatingPointError, match=r'step 0 .*parameters hold NaN/Inf'):
    train_lib.train(str(tmp_path / 'inf'), task=toy.ToyTask(), num_steps=3, batch_size=4,
                    optimizer=optax.sgd(np.inf), **QUIET)
  assert loop.checkpoint_steps(str(tmp_path / 'inf')) == []


def test_incompatible_checkpoint_names_the_workdir(tmp_path):
  workdir = str(tmp_path / 'w')
  kw = dict(num_steps=1, batch_size=4, optimizer=optax.sgd(0.1), **QUIET)
  train_lib.train(workdir, task=toy.ToyTask(hidden=8), **kw)
  with pytest.raises(ValueError, match=r"checkpoint 1 of workdir '.*/w' was trained with "
                     r'another model.*params/BatchNorm_0/bias is float32\[8\] in the checkpoint '
                     r'but float32\[16\] in the model.*new --workdir') as e:
    train_lib.train(workdir, task=toy.ToyTask(hidden=16), num_steps=2, batch_size=4,
                    optimizer=optax.sgd(0.1), **QUIET)
  # The checkpoints are intact: no advice to delete them.
  assert 'delete' not in str(e.value) and loop.checkpoint_steps(workdir) == [1]
  with pytest.raises(ValueError, match='train_state holds other arrays'):
    train_lib.train(workdir, task=toy.ToyTask(hidden=8), num_steps=2, batch_size=4,
                    optimizer=optax.adam(0.1), **QUIET)
  with pytest.raises(ValueError, match='num_steps must be a positive integer'):
    train_lib.train(workdir, task=toy.ToyTask(), num_steps=0)
  assert isinstance(train_lib.as_task(toy.ToyTask), toy.ToyTask)  # gin's @ToyTask
  with pytest.raises(TypeError, match='lacks init_variables'):
    train_lib.train(workdir, task=object(), num_steps=1)


def test_optimizer_schedules_follow_the_formulas():
  # SGD on a unit gradient: the update is exactly -lr(step).
  def lrs(tx, n):
    params, state, out = jnp.zeros(()), None, []
    state = tx.init(params)
    for _ in range(n):
      updates, state = tx.update(jnp.ones(()), state, params)
      out.append(-float(updates))
    return np.array(out)

  s = np.arange(10)
  cosine = lrs(loop.optimizer('sgd', 2.0, 'cosine', warmup_steps=2, momentum=0, num_steps=10), 10)
  want = np.where(s < 2, 2.0 * s / 2, 0.5 * 2.0 * (1 + np.cos(np.pi * (s - 2) / 8)))
  np.testing.assert_allclose(cosine, want, rtol=1e-6, atol=1e-7)
  linear = lrs(loop.optimizer('sgd', 1.0, 'linear', total_steps=4, momentum=0), 4)
  np.testing.assert_allclose(linear, [1.0, 0.75, 0.5, 0.25], rtol=1e-6)
  constant = lrs(loop.optimizer('sgd', 0.3, 'constant', warmup_steps=3, momentum=0), 5)
  np.testing.assert_allclose(constant, [0.0, 0.1, 0.2, 0.3, 0.3], rtol=1e-6)
  clipped = lrs(loop.optimizer('sgd', 1.0, 'constant', clip_norm=0.5, momentum=0), 1)
  np.testing.assert_allclose(clipped, [0.5], rtol=1e-6)
  # A short trial of a long config (warmup 100, 20 steps): a tenth of the run warms up.
  short = lrs(loop.optimizer('sgd', 1.0, 'linear', warmup_steps=100, momentum=0,
                             num_steps=20), 4)
  np.testing.assert_allclose(short, [0.0, 0.5, 1.0, 1 - 1 / 18], rtol=1e-6)
  with pytest.raises(ValueError, match='needs total_steps'):
    loop.optimizer('adamw', schedule='cosine')
  with pytest.raises(ValueError, match='unknown name'):
    loop.optimizer('adagrad', schedule='constant')
  with pytest.raises(ValueError, match='use name=.adamw.'):
    loop.optimizer('adam', schedule='constant', weight_decay=1e-4)


_CLASH_SCRIPT = textwrap.dedent('''
    import sys
    import gin
    from sphere_plugin.train import loop
    from sphere_plugin.train import toy  # registers ToyTask
    @gin.configurable('optimizer', module='another_package')  # e.g. NeuralGCM's optimizer
    def other_optimizer(learning_rate=0.1):
      return learning_rate
    task = loop.task_from_config(sys.argv[1])
    print(type(task).__name__, gin.query_parameter('sphere_plugin.train.optimizer.learning_rate'))
''')


def test_config_gin_uses_full_names_that_parse_beside_same_named_configurables(tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  gin.clear_config()  # earlier tests in this process may have left bindings behind
  gin.parse_config_files_and_bindings([os.path.join(ROOT, 'gin', 'toy.gin')], [
      'sphere_plugin.train.train.num_steps = 2', 'sphere_plugin.train.optimizer.warmup_steps = 0',
      'sphere_plugin.train.optimizer.learning_rate = 0.0123'])
  try:
    train_lib.train(workdir, progress=False)
  finally:
    gin.clear_config()
  text = open(os.path.join(workdir, 'config.gin')).read()
  assert 'sphere_plugin.train.optimizer.learning_rate = 0.0123' in text
  assert '\noptimizer.' not in text  # no short names
  out = subprocess.run([sys.executable, '-c', _CLASH_SCRIPT, workdir], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ['ToyTask', '0.0123']


def _two_checkpoints(workdir, num_steps=2, **kw):
  kw = dict(batch_size=4, optimizer=optax.sgd(0.1), checkpoint_every=1, **QUIET, **kw)
  train_lib.train(workdir, task=toy.ToyTask(), num_steps=num_steps, **kw)
  return kw


def _data_files(workdir, step):
  root = os.path.join(workdir, 'checkpoints', str(step), 'variables', 'ocdbt.process_0', 'd')
  return sorted(os.path.join(root, n) for n in os.listdir(root))


def test_damaged_latest_checkpoint_falls_back_to_the_older_one(tmp_path, capsys):
  workdir = str(tmp_path / 'w')
  kw = _two_checkpoints(workdir)
  template = jax.eval_shape(toy.ToyTask().init_variables, jax.random.key(0))
  older, _ = train_lib.latest_variables(workdir, template, step=1)
  for path in _data_files(workdir, 2):  # truncated data files of the newest checkpoint
    with open(path, 'r+b') as f:
      f.truncate(10)
  capsys.readouterr()
  variables, step = train_lib.latest_variables(workdir, template)
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, variables, older)
  warning = [line for line in capsys.readouterr().err.splitlines() if 'warning' in line]
  assert len(warning) == 1 and 'checkpoint 2' in warning[0] and 'damaged' in warning[0]
  assert 'using checkpoint 1' in warning[0], warning
  # Resuming training falls back the same way and replaces the damaged step.
  state = train_lib.train(workdir, task=toy.ToyTask(), num_steps=3, **kw)
  assert int(state.step) == 3 and loop.checkpoint_steps(workdir) == [1, 2, 3]
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if r['event'] == 'resume'] == [1]
  assert train_lib.latest_variables(workdir, template)[1] == 3


def test_half_deleted_older_checkpoint_is_not_listed(tmp_path):
  # What a SIGKILL during orbax's removal of an old checkpoint leaves: some
  # files of that step are gone, the directory is still there.
  workdir = str(tmp_path / 'w')
  kw = _two_checkpoints(workdir, num_steps=3)
  assert loop.checkpoint_steps(workdir) == [1, 2, 3]
  os.remove(_data_files(workdir, 1)[0])
  os.remove(os.path.join(workdir, 'checkpoints', '1', 'train_state', '_METADATA'))
  assert loop.checkpoint_steps(workdir) == [2, 3]
  template = jax.eval_shape(toy.ToyTask().init_variables, jax.random.key(0))
  with pytest.raises(FileNotFoundError, match='no complete checkpoint 1'):
    train_lib.latest_variables(workdir, template, step=1)
  state = train_lib.train(workdir, task=toy.ToyTask(), num_steps=4, **kw)
  assert int(state.step) == 4 and loop.checkpoint_steps(workdir) == [2, 3, 4]


def _gin_train(workdir, *bindings):
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.parse_config_files_and_bindings([os.path.join(ROOT, 'gin', 'toy.gin')], [
      'sphere_plugin.train.train.progress = False', 'sphere_plugin.train.optimizer.warmup_steps = 0',
      'sphere_plugin.train.train.checkpoint_every = 1', *bindings])
  try:
    return train_lib.train(workdir)
  finally:
    gin.clear_config()


def test_resume_keeps_the_stored_config_and_refuses_changes_that_matter(tmp_path):
  workdir = str(tmp_path / 'run')
  _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 2')
  config = open(os.path.join(workdir, 'config.gin')).read()
  # Training longer (and logging more often) is a resumption.
  state = _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 3',
                     'sphere_plugin.train.train.log_every = 1')
  assert int(state.step) == 3
  assert open(os.path.join(workdir, 'config.gin')).read() == config
  # Another learning rate is another run: one line naming the binding.
  with pytest.raises(ValueError) as e:
    _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 4',
               'sphere_plugin.train.optimizer.learning_rate = 0.5')
  message = str(e.value).splitlines()[0]
  assert 'sphere_plugin.train.optimizer.learning_rate is 0.01 in its config.gin but 0.5' in message
  assert 'new --workdir' in message
  assert loop.checkpoint_steps(workdir)[-1] == 3  # nothing trained
  assert open(os.path.join(workdir, 'config.gin')).read() == config


def test_resume_accepts_a_parameter_added_later_at_its_default(tmp_path):
  workdir = str(tmp_path / 'run')
  _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 2')
  # A parameter that a newer version added, at its default, is the same run:
  # simulate an older config.gin that lacks `step_delay`.
  path = os.path.join(workdir, 'config.gin')
  text = ''.join(l for l in open(path) if 'ToyTask.step_delay' not in l)
  open(path, 'w').write(text)
  state = _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 3')
  assert int(state.step) == 3
  # ... but not one that differs from its default.
  open(path, 'w').write(text)
  with pytest.raises(ValueError, match='ToyTask.step_delay is unset in its config.gin but 0.01'):
    _gin_train(workdir, 'sphere_plugin.train.train.num_steps = 4',
               'sphere_plugin.train.ToyTask.step_delay = 0.01')
