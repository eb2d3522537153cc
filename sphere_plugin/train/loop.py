"""A data-parallel, resumable training loop configured by gin.

    python tools/train.py --gin_file=gin/toy.gin --workdir=/tmp/run

runs `train(workdir)` with every other argument from gin (the task, sizes, the
optimizer `sphere_plugin.train.optimizer`). Killing the process and running the
same command again continues from the last checkpoint; a workdir that already
holds the final step is returned at once.

Devices. One `jax.sharding.Mesh` with a single axis 'data' over all devices
(all hosts' after `jax.distributed.initialize()`). The train state is
replicated; each batch is sharded along axis 0, every process contributing its
local rows (`jax.make_array_from_process_local_data`). The step is one
`jax.jit` over the global batch, so every mean over the batch axis in the loss
(BatchNorm statistics included) is the mean over the whole global batch; XLA
inserts the cross-device reductions. The same code runs on one CPU, on faked
CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`), on GPUs and
on many hosts.

What the workdir (a POSIX path; shared by all hosts in a multi-host run) holds:
    config.gin         the operative gin config, written when a run starts
                       (rebuilds the task: `restore(workdir)`). A resumed run
                       keeps it and refuses a configuration that differs in
                       anything but `RESUMABLE_BINDINGS` (num_steps, the
                       checkpoint/eval/log periods, progress): use a new
                       --workdir for a new run.
    checkpoints/<step>/ orbax checkpoints, every `checkpoint_every` steps, at
                       the end, and when SIGTERM arrives; the newest
                       `max_to_keep` are kept. Each holds two items:
                       'variables' (flax variables {'params', **model_state},
                       what inference needs: `latest_variables`) and
                       'train_state' ({'step', 'opt_state', 'rng'}).
                       Orbax writes `<step>.orbax-checkpoint-tmp*` and renames
                       it to `<step>` when complete; leftover tmp dirs are
                       removed on the next start.
    checkpoint_manifests/<step>.json  {file: size} of a checkpoint, written
                       once orbax has finalised its save (and its cleanup of
                       older steps). `checkpoint_steps` lists only steps whose
                       files all match: unfinished saves and checkpoints
                       half-deleted by a kill during cleanup are never listed
                       or resumed from. A damaged newest checkpoint is skipped
                       with a warning for the newest one that restores
                       (`CheckpointCorruptError`); one that does not fit the
                       model is a `CheckpointMismatchError`.
    metrics.jsonl      one JSON object per event: {"event": "start" | "resume"
                       | "train" | "eval" | "preempted" | "done" | "test",
                       "step",
                       "time" (unix seconds), "elapsed_s" (this run), ...}.
                       "train" rows average the training metrics ("loss" and
                       the task's) over the steps since the previous row and
                       give "steps_per_s"; "eval" rows hold task.evaluate's
                       metrics; a "test" row (after "done") holds the
                       metrics of the task's optional
                       `final_evaluation(variables, workdir=, batch_size=)`,
                       called once when a run reaches num_steps. On resume, rows past the restored step (logged
                       by the killed run after its last checkpoint) are dropped.
    tensorboard/       the same scalars for TensorBoard ('train/<name>',
                       'eval/<name>'), purged past the restored step on resume.
    (task artifacts)   whatever `task.save_artifacts(workdir)` writes when a
                       run starts; on resume they are kept and read back with
                       the task's optional `load_artifacts(workdir)` (the
                       forecaster's normalisation statistics).

Steps. `step` counts completed updates: checkpoint <s> holds the state after s
updates, and the batch consumed by the update from s to s+1 is the task's batch
for step s. The step's rng is `fold_in(key, s)`, so a resumed run computes what
an uninterrupted one would.

Failures. A non-finite loss or non-finite updated parameters raise
`FloatingPointError` naming the step; that state is not saved, so the last
checkpoint is the last good one. SIGTERM (e.g. preemption) and SIGINT (Ctrl-C)
make the loop save a checkpoint at the end of the current step and return
normally.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import gin
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from sphere_plugin.io import atomic
from sphere_plugin.train import checkpoints
from sphere_plugin.train import console
from sphere_plugin.train import optimizers
from sphere_plugin.train import task as task_lib
from sphere_plugin.train import workdir as workdir_lib
from sphere_plugin.train.state import TrainState

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'


# State, sharding and the step


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all, every host's)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ('data',))


def create_state(task: task_lib.Task, tx: optax.GradientTransformation,
                 seed: int) -> TrainState:
  """The initial TrainState (step 0) of `task` for `seed`; traceable.

  The init key and the training key are `jax.random.split(jax.random.key(seed))`.
  """
  init_key, train_key = jax.random.split(jax.random.key(seed))
  variables = dict(task.init_variables(init_key))
  if 'params' not in variables:
    raise ValueError(f"{type(task).__name__}.init_variables returned no 'params' "
                     f'(got {sorted(variables)})')
  params = variables.pop('params')
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                    opt_state=tx.init(params), rng=jax.random.key_data(train_key))


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(task: task_lib.Task, tx: optax.GradientTransformation,
                    mesh: Mesh) -> Callable:
  """The jitted step `(state, batch) -> (state, metrics, ok)`.

  The state is replicated and donated; the batch (each array (batch, ...)) is
  sharded along axis 0 over the mesh axis 'data'. metrics: {'loss',
  'grad_norm', **task metrics}, scalars. ok: {'loss': bool, 'params': bool},
  whether the loss and the updated parameters are finite.
  """
  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))

  def step_fn(state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      return task.loss({'params': params, **state.model_state}, batch, rng, True)

    (loss, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    model_state = dict(model_state)
    if jax.tree.structure(model_state) != jax.tree.structure(state.model_state):
      raise ValueError(
          f'{type(task).__name__}.loss returned a model state with collections '
          f'{sorted(model_state)} and tree {jax.tree.structure(model_state)}; expected the '
          f'non-params collections of init_variables: {jax.tree.structure(state.model_state)}')
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), **metrics}
    ok = {'loss': jnp.isfinite(loss), 'params': _all_finite(params)}
    new = state.replace(step=state.step + 1, params=params, model_state=model_state,
                        opt_state=opt_state)
    return new, metrics, ok

  return jax.jit(step_fn, in_shardings=(replicated, rows),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=0)


def _global_batch(local: dict, sharding: NamedSharding, batch_size: int, step: int) -> dict:
  """This process's rows -> global jax arrays sharded along axis 0."""
  if not isinstance(local, dict) or not local:
    raise TypeError(f'train_batches must yield non-empty dicts of arrays (step {step}), '
                    f'got {type(local).__name__}')
  rows = batch_size // jax.process_count()
  out = {}
  for key, value in local.items():
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != rows:
      raise ValueError(
          f'train_batches: {key!r} at step {step} has shape {value.shape}; expected '
          f'{rows} rows (batch_size {batch_size} / {jax.process_count()} processes) on axis 0')
    out[key] = jax.make_array_from_process_local_data(sharding, value,
                                                      (batch_size,) + value.shape[1:])
  return out



# ---------------------------------------------------------------------------
# Logging


def _truncate_metrics(path: str, step: int) -> None:
  """Drops rows past `step` (and a torn last line) from a metrics file."""
  if not os.path.exists(path):
    return
  keep = []
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue
      if row.get('step', 0) <= step:
        keep.append(json.dumps(row) + '\n')
  atomic.write_text(path, ''.join(keep))


class _Log:
  """metrics.jsonl + TensorBoard, written by process 0 only."""

  def __init__(self, workdir: str, start_step: int, active: bool):
    self.active, self.started = active, time.time()
    self._file = self._writer = None
    if not active:
      return
    path = os.path.join(workdir, METRICS_FILE)
    _truncate_metrics(path, start_step)  # rows of a killed run past its last checkpoint
    self._file = open(path, 'a')
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._writer = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                              purge_step=start_step + 1, flush_secs=30)

  def event(self, event: str, step: int, scalars: dict | None = None, **extra) -> None:
    if not self.active:
      return
    now = time.time()
    row = {'event': event, 'step': step, 'time': round(now, 3),
           'elapsed_s': round(now - self.started, 3)}
    for name, value in (scalars or {}).items():
      row[name] = float(value)
      self._writer.add_scalar(f'{event}/{name}', float(value), step)
    row.update(extra)
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()

  def flush(self) -> None:
    if self.active:
      self._writer.flush()

  def close(self) -> None:
    if self.active:
      self._file.close()
      self._writer.close()


@contextlib.contextmanager
def _sigterm_flag():
  """Yields a dict whose 'set' turns True on SIGTERM or SIGINT (main thread only).

  'name' says which arrived. Ctrl-C therefore stops the run like a preemption:
  a checkpoint at the end of the current step, then a normal return.
  """
  flag = {'set': False}
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, frame):
    del frame
    flag['set'], flag['name'] = True, signal.Signals(signum).name

  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def _barrier(name: str) -> None:
  """All processes wait here (multi-host runs); nothing on one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _stop_requested(flag: dict) -> bool:
  if jax.process_count() == 1:
    return flag['set']
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag['set']))))


# ---------------------------------------------------------------------------
# The loop


@gin.configurable(module='sphere_plugin.train', denylist=['workdir'])
def train(workdir: str, task: Any = gin.REQUIRED, *, num_steps: int = 1000,
          batch_size: int = 8, optimizer: Any = None, seed: int = 0,
          checkpoint_every: int = 100, eval_every: int = 200, log_every: int = 10,
          max_to_keep: int = 3, eval_batch_size: int | None = None,
          progress: bool = True) -> TrainState:
  """Trains `task` data-parallel over all devices; resumes from workdir.

  See the module docstring for what is written where.

  Args:
    workdir: the run's directory (created if needed).
    task: a `sphere_plugin.train.Task`, or a class / factory called with no
      arguments to make one (gin: `@MyTask()` or `@MyTask`).
    num_steps: total number of updates.
    batch_size: global batch size; divisible by the number of devices.
    optimizer: an optax.GradientTransformation, or a factory called with
      `num_steps=num_steps`; default `sphere_plugin.train.optimizer` with its gin
      bindings.
    seed: seeds initialisation, per-step rngs and the task's batches.
    checkpoint_every: checkpoint period in steps (also at num_steps and SIGTERM).
    eval_every: `task.evaluate` period in steps (also at num_steps).
    log_every: training-metrics period in steps.
    max_to_keep: number of newest checkpoints kept.
    eval_batch_size: batch size passed to evaluate (default batch_size).
    progress: show a tqdm progress bar (process 0).

  Returns:
    The final TrainState (replicated over the mesh): at num_steps, or at the
    step where SIGTERM stopped the run.

  Raises:
    FloatingPointError: the loss or the updated parameters became NaN/Inf.
    ValueError: bad sizes, or a workdir whose checkpoint does not fit the model.
  """
  for name, value in (('num_steps', num_steps), ('batch_size', batch_size),
                      ('checkpoint_every', checkpoint_every), ('eval_every', eval_every),
                      ('log_every', log_every), ('max_to_keep', max_to_keep)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f'{name} must be a positive integer, got {value!r}')
  devices, processes = jax.device_count(), jax.process_count()
  if batch_size % devices:
    raise ValueError(f'batch_size {batch_size} is not divisible by the {devices} '
                     f'devices ({jax.devices()[0].platform}); use a multiple of {devices}')
  task = task_lib.as_task(task)
  tx = optimizers.as_optimizer(optimizer, num_steps)
  mesh = make_mesh()
  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  with contextlib.ExitStack() as stack:
    sigterm = stack.enter_context(_sigterm_flag())
    steps = checkpoints.step_dirs(workdir)
    _barrier('sphere_plugin_listed_checkpoints')
    if not steps:
      state = jax.jit(lambda: create_state(task, tx, seed), out_shardings=replicated)()
      start = 0
    else:
      abstract = checkpoints.abstract(jax.eval_shape(lambda: create_state(task, tx, seed)), replicated)
      workdir_lib.check_same_config(workdir, workdir_lib.operative_config())  # after init: modules have run
      restored, start, damaged = checkpoints.restore_newest(
          workdir, steps, variables=abstract.variables,
          train_state={'step': abstract.step, 'opt_state': abstract.opt_state,
                       'rng': abstract.rng})
      steps = [s for s in checkpoints.checkpoint_steps(workdir) if s <= start]
      variables, rest = dict(restored['variables']), restored['train_state']
      state = TrainState(step=rest['step'], params=variables.pop('params'),
                         model_state=variables, opt_state=rest['opt_state'], rng=rest['rng'])
      if int(state.step) != start:
        raise ValueError(f'checkpoint {start} of {workdir!r} holds step {int(state.step)}')
      if start >= num_steps:
        console.say(f'{workdir} already holds step {start} (num_steps {num_steps}); nothing to train')
        return state
    _barrier('sphere_plugin_restored')
    if is_chief:  # unsealed, half-deleted and damaged steps would block saving there
      checkpoints.remove_incomplete(workdir, keep=steps)
    _barrier('sphere_plugin_cleaned')
    manager = checkpoints.manager(workdir, max_to_keep)
    stack.callback(manager.close)
    stack.callback(manager.wait_until_finished)  # runs first: pending saves complete

    if start == 0 and is_chief:
      atomic.write_text(os.path.join(workdir, workdir_lib.CONFIG_FILE), workdir_lib.operative_config())
      task.save_artifacts(workdir)
    # On resume config.gin and the task's artifacts (normalisation statistics)
    # stay as the checkpoint was trained with; the task reloads its artifacts.
    load = getattr(task, 'load_artifacts', None)
    if start and callable(load):
      load(workdir)
    log = _Log(workdir, start, is_chief)
    stack.callback(log.close)
    if start:
      console.say(f'resuming from step {start} of {num_steps} in {workdir}')
      log.event('resume', start)
    else:
      n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
      console.say(f'training {num_steps} steps on {devices} device(s) in {processes} process(es), '
           f'{n_params} parameters, workdir {workdir}')
      log.event('start', 0, devices=devices, processes=processes, num_steps=num_steps,
                batch_size=batch_size, parameters=n_params)

    train_step = make_train_step(task, tx, mesh)
    batches = iter(task.train_batches(batch_size, seed=seed, start_step=start,
                                      process_index=jax.process_index(),
                                      process_count=processes))

    def next_batch(step):
      try:
        local = next(batches)
      except StopIteration:
        raise ValueError(f'{type(task).__name__}.train_batches ended before step {step} '
                         f'(num_steps {num_steps})') from None
      return _global_batch(local, rows, batch_size, step)

    bar = stack.enter_context(tqdm.tqdm(
        total=num_steps, initial=start, desc='train', unit='step',
        disable=not (progress and is_chief), dynamic_ncols=True, mininterval=1.0,
        file=sys.stderr))
    step = start
    window, window_start = [], time.perf_counter()
    batch = next_batch(step)
    if step < num_steps:
      console.say('compiling the training step (the first step takes longer; later ones are fast)')
    compile_started = time.perf_counter()
    while step < num_steps:
      state, metrics, ok = train_step(state, batch)
      step += 1
      if step < num_steps:
        batch = next_batch(step)  # host work overlaps the device's step
      metrics, ok = jax.device_get((metrics, ok))
      if compile_started is not None:
        console.say(f'first step compiled and run in {time.perf_counter() - compile_started:.1f} s')
        compile_started = None
      if not (ok['loss'] and ok['params']):
        what = (f'the loss is {float(metrics["loss"])}' if not ok['loss'] else
                f'the loss is finite ({float(metrics["loss"]):.6g}) but the updated '
                'parameters hold NaN/Inf')
        manager.wait_until_finished()
        last = (checkpoints.checkpoint_steps(workdir) or [None])[-1]
        raise FloatingPointError(
            f'training diverged at step {step - 1} (the update from step {step - 1} to '
            f'{step}): {what}; this state was not saved; the last checkpoint is '
            f'{last if last is not None else "none"} in {workdir}')
      window.append(metrics)
      bar.update(1)
      stop = _stop_requested(sigterm) and step < num_steps
      if step % log_every == 0 or step == num_steps or stop:
        now = time.perf_counter()
        means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        log.event('train', step, means, steps_per_s=round(len(window) / (now - window_start), 3))
        bar.set_postfix(loss=f'{means["loss"]:.4g}', refresh=False)
        window, window_start = [], now
      if step % eval_every == 0 or step == num_steps:
        log.event('eval', step, task.evaluate(
            state.variables, batch_size=eval_batch_size or batch_size))
      if step % checkpoint_every == 0 or step == num_steps or stop:
        checkpoints.save(manager, state, step, workdir)
        log.flush()
      if stop:
        manager.wait_until_finished()
        log.event('preempted', step)
        console.say(f'{sigterm.get("name", "SIGTERM")}: saved checkpoint {step} in {workdir}; run the '
             'same command to resume')
        return state
    manager.wait_until_finished()
    log.event('done', step)
    final = getattr(task, 'final_evaluation', None)
    if callable(final):
      log.event('test', step, final(state.variables, workdir=workdir,
                                    batch_size=eval_batch_size or batch_size))
    return state


# Names that lived here before the loop was split (old imports keep working).
from sphere_plugin.train.checkpoints import checkpoint_steps  # noqa: E402,F401
from sphere_plugin.train.checkpoints import CheckpointCorruptError  # noqa: E402,F401
from sphere_plugin.train.checkpoints import CheckpointMismatchError  # noqa: E402,F401
from sphere_plugin.train.checkpoints import latest_variables  # noqa: E402,F401
from sphere_plugin.train.optimizers import optimizer  # noqa: E402,F401
from sphere_plugin.train.workdir import RESUMABLE_BINDINGS  # noqa: E402,F401
from sphere_plugin.train.workdir import restore  # noqa: E402,F401
from sphere_plugin.train.workdir import task_from_config  # noqa: E402,F401

