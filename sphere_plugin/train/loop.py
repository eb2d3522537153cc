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
import copy
import inspect
import json
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from absl import logging
import flax
import gin
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from sphere_plugin import stored_config
from sphere_plugin.train import task as task_lib

CONFIG_FILE = 'config.gin'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
TENSORBOARD_DIR = 'tensorboard'
_TASK_BINDING = 'sphere_plugin.train.train.task'


@flax.struct.dataclass
class TrainState:
  """Everything a step updates; a pytree (replicated over the mesh).

  Attributes:
    step: int32 scalar, the number of completed updates.
    params: the 'params' collection.
    model_state: the other flax collections, e.g. {'batch_stats': ...} ({} if none).
    opt_state: the optax state of `params`.
    rng: uint32 key data (`jax.random.key_data`) of the run's training key.
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array

  @property
  def variables(self) -> dict:
    """The flax variables {'params': ..., **model_state}."""
    return {'params': self.params, **self.model_state}


# ---------------------------------------------------------------------------
# Optimizer


@gin.configurable(module='sphere_plugin.train', denylist=['num_steps'])
def optimizer(name: str = 'adamw', learning_rate: float = 1e-3, schedule: str = 'cosine',
              warmup_steps: int = 0, total_steps: int | None = None,
              weight_decay: float = 0.0, clip_norm: float | None = None,
              momentum: float = 0.9, *, num_steps: int | None = None
              ) -> optax.GradientTransformation:
  """An optax optimizer with a learning-rate schedule, configured by gin.

  Bind it as `sphere_plugin.train.train.optimizer = @sphere_plugin.train.optimizer`
  (no parentheses) so that the loop calls it with `num_steps`, the default of
  `total_steps`.

  Args:
    name: 'adamw', 'adam', 'sgd' (with `momentum`; 0 for plain SGD) or 'lamb'.
    learning_rate: the peak learning rate.
    schedule: 'constant', 'cosine' (decay to 0 at total_steps) or 'linear'
      (decay to 0 at total_steps), each after a linear warmup from 0 over
      `warmup_steps`.
    warmup_steps: length of the warmup; when it is not below total_steps (a
      short run of a long config), a tenth of total_steps, with a warning.
    total_steps: where the decay ends; defaults to num_steps.
    weight_decay: decoupled weight decay (adamw, lamb, sgd; adam must be 0).
    clip_norm: if set, gradients are clipped to this global norm first.
    momentum: SGD momentum.
    num_steps: the run's length, passed by the loop.

  Returns:
    The optax.GradientTransformation.
  """
  total = total_steps if total_steps is not None else num_steps
  if learning_rate <= 0 or warmup_steps < 0:
    raise ValueError(f'optimizer: need learning_rate > 0 and warmup_steps >= 0, got '
                     f'{learning_rate}, {warmup_steps}')
  if schedule == 'constant':
    lr = optax.constant_schedule(learning_rate)
    if warmup_steps:
      lr = optax.join_schedules(
          [optax.linear_schedule(0.0, learning_rate, warmup_steps), lr], [warmup_steps])
  elif schedule in ('cosine', 'linear'):
    if total is None:
      raise ValueError(
          f"optimizer: schedule '{schedule}' needs total_steps; bind "
          'sphere_plugin.train.optimizer.total_steps, or bind train.optimizer = '
          '@sphere_plugin.train.optimizer without parentheses so the loop passes num_steps')
    if total < 1:
      raise ValueError(f'optimizer: total_steps must be >= 1, got {total}')
    if total <= warmup_steps:  # e.g. a short trial run of a config made for a long one
      short = total // 10
      logging.warning('optimizer: warmup_steps (%d) >= total_steps (%d): warming up over %d '
                      'steps instead; bind sphere_plugin.train.optimizer.warmup_steps to '
                      'choose', warmup_steps, total, short)
      warmup_steps = short
    if schedule == 'cosine':
      lr = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total, 0.0)
    else:
      lr = optax.join_schedules(
          [optax.linear_schedule(0.0, learning_rate, warmup_steps),
           optax.linear_schedule(learning_rate, 0.0, total - warmup_steps)], [warmup_steps])
  else:
    raise ValueError(f"optimizer: unknown schedule {schedule!r}; use 'constant', 'cosine' "
                     "or 'linear'")
  if name == 'adamw':
    tx = optax.adamw(lr, weight_decay=weight_decay)
  elif name == 'lamb':
    tx = optax.lamb(lr, weight_decay=weight_decay)
  elif name == 'adam':
    if weight_decay:
      raise ValueError("optimizer: 'adam' takes no weight_decay; use name='adamw'")
    tx = optax.adam(lr)
  elif name == 'sgd':
    tx = optax.sgd(lr, momentum=momentum or None)
    if weight_decay:
      tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  else:
    raise ValueError(f"optimizer: unknown name {name!r}; use 'adamw', 'adam', 'sgd' or 'lamb'")
  if clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
  return tx


def _as_optimizer(opt: Any, num_steps: int) -> optax.GradientTransformation:
  if opt is None:
    opt = optimizer
  if isinstance(opt, optax.GradientTransformation):
    return opt
  if callable(opt):
    try:
      parameters = inspect.signature(opt).parameters
    except (TypeError, ValueError):
      parameters = {}
    takes_steps = 'num_steps' in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    opt = opt(num_steps=num_steps) if takes_steps else opt()
    if isinstance(opt, optax.GradientTransformation):
      return opt
  raise TypeError(f'train.optimizer must be an optax.GradientTransformation or a factory '
                  f'returning one, got {type(opt).__name__}')


# ---------------------------------------------------------------------------
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
# Checkpoints


def _manager(workdir: str, max_to_keep: int | None = None, create: bool = True
             ) -> ocp.CheckpointManager:
  """The workdir's checkpoint manager (items 'variables' and 'train_state')."""
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  if not create and not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoints in {workdir!r} ({directory} does not exist)')
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
      cleanup_tmp_directories=create, create=create)
  return ocp.CheckpointManager(directory, options=options, item_handlers={
      'variables': ocp.StandardCheckpointHandler(),
      'train_state': ocp.StandardCheckpointHandler()})


MANIFEST_DIR = 'checkpoint_manifests'


def _step_dir(workdir: str, step: int) -> str:
  # Absolute: orbax refuses relative checkpoint paths (a relative --workdir is common).
  return os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR, str(step)))


def _manifest_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, MANIFEST_DIR, f'{step}.json')


def _step_files(directory: str) -> dict[str, int]:
  """{relative path: size} of every file under a step directory."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      out[os.path.relpath(path, directory)] = os.path.getsize(path)
  return out


def _damage(workdir: str, step: int) -> str | None:
  """Why checkpoint `step` is incomplete or damaged (None: it is whole).

  With manifests (written by the loop once orbax has finalised a save), a step
  is whole iff its manifest exists and every file it lists has its size; a
  step half-deleted by orbax's cleanup, or with a truncated file, is not.
  Workdirs from before manifests (no checkpoint_manifests/) fall back to
  orbax's own marker: commit_success.txt in every item directory.
  """
  directory = _step_dir(workdir, step)
  if not os.path.isdir(directory):
    return f'{directory} does not exist'
  if not os.path.isdir(os.path.join(workdir, MANIFEST_DIR)):
    for item in ('variables', 'train_state'):
      if not os.path.exists(os.path.join(directory, item, 'commit_success.txt')):
        return f'{item}/commit_success.txt is missing'
    return None
  try:
    with open(_manifest_path(workdir, step)) as f:
      want = json.load(f)
  except (OSError, ValueError):
    return 'it has no manifest (unfinished save or half-deleted)'
  for rel, size in want.items():
    path = os.path.join(directory, rel)
    if not os.path.exists(path):
      return f'{rel} is missing'
    if os.path.getsize(path) != size:
      return f'{rel} is {os.path.getsize(path)} bytes, {size} when saved'
  return None


def _step_dirs(workdir: str) -> list[int]:
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints in workdir, ascending.

  A checkpoint is complete when every file listed in its manifest
  (workdir/checkpoint_manifests/<step>.json, written after orbax finalised the
  save) is there with its size: unfinished saves, checkpoints half-deleted by
  a kill during orbax's cleanup and truncated files are not listed.
  """
  return [s for s in _step_dirs(workdir) if _damage(workdir, s) is None]


def _seal(workdir: str) -> None:
  """Writes manifests for finalised steps lacking one; drops stale ones (chief only).

  Call only after `manager.wait_until_finished()`: then every `<step>` dir is
  finalised and orbax's cleanup of old steps is over.
  """
  os.makedirs(os.path.join(workdir, MANIFEST_DIR), exist_ok=True)
  steps = set(_step_dirs(workdir))
  for name in os.listdir(os.path.join(workdir, MANIFEST_DIR)):
    stem = name.split('.')[0]
    if stem.isdigit() and int(stem) not in steps:
      os.remove(os.path.join(workdir, MANIFEST_DIR, name))
  for step in steps:
    if not os.path.exists(_manifest_path(workdir, step)):
      _write_text(_manifest_path(workdir, step),
                  json.dumps(_step_files(_step_dir(workdir, step)), indent=0, sort_keys=True))


def _remove_incomplete(workdir: str, keep: Sequence[int]) -> None:
  """Removes step dirs not in `keep` (half-deleted, unsealed), so orbax can save there."""
  import shutil  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.join(workdir, MANIFEST_DIR)):
    return  # a workdir from before manifests: nothing is known to be incomplete
  for step in _step_dirs(workdir):
    if step not in keep:
      shutil.rmtree(_step_dir(workdir, step), ignore_errors=True)
      with contextlib.suppress(FileNotFoundError):
        os.remove(_manifest_path(workdir, step))


def _save(manager: ocp.CheckpointManager, state: TrainState, step: int, workdir: str) -> None:
  """Saves `step`, waits for orbax to finalise it (and its cleanup), then seals it."""
  manager.save(step, force=True, args=ocp.args.Composite(
      variables=ocp.args.StandardSave(state.variables),
      train_state=ocp.args.StandardSave(
          {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng})))
  manager.wait_until_finished()
  if jax.process_index() == 0:
    _seal(workdir)


def _one_line(e: BaseException, limit: int = 400) -> str:
  text = ' '.join(str(e).split()) or type(e).__name__
  return text if len(text) <= limit else text[:limit] + ' ...'


def _key_name(key) -> str:
  for attr in ('key', 'idx', 'name'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes(tree) -> dict[str, tuple]:
  """{'a/b/c': (shape, dtype name)} of a tree of arrays or array metadata."""
  return {'/'.join(_key_name(k) for k in path): (tuple(x.shape), np.dtype(x.dtype).name)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _fmt(shape_dtype: tuple) -> str:
  return f'{shape_dtype[1]}{list(shape_dtype[0])}'


class CheckpointMismatchError(ValueError):
  """A whole checkpoint whose arrays do not fit the model (another configuration)."""


class CheckpointCorruptError(ValueError):
  """A checkpoint with missing, truncated or unreadable files."""


def _mismatch(step: int, workdir: str, detail: str) -> CheckpointMismatchError:
  return CheckpointMismatchError(
      f'checkpoint {step} of workdir {workdir!r} was trained with another model or optimizer '
      f'configuration: {detail}; run with the configuration in its config.gin, or train '
      'this one in a new --workdir (the checkpoints there are intact)')


def _corrupt(step: int, workdir: str, detail: str) -> CheckpointCorruptError:
  return CheckpointCorruptError(f'checkpoint {step} of workdir {workdir!r} is damaged: {detail}')


def _check_compatible(step: int, workdir: str, items: dict):
  """Compares the checkpoint's array shapes with the targets' (clear messages)."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  for name, target in items.items():
    try:
      tree = ocp.StandardCheckpointHandler().metadata(
          epath.Path(_step_dir(workdir, step)) / name).tree
    except Exception as e:  # pylint: disable=broad-except
      raise _corrupt(step, workdir, f'cannot read its {name} metadata ({_one_line(e, 200)})'
                     ) from e
    saved, want = _shapes(tree), _shapes(target)
    if name == 'variables':
      problems = ([f'{k} is missing in the checkpoint' for k in want if k not in saved] +
                  [f'{k} is not in the model' for k in saved if k not in want] +
                  [f'{k} is {_fmt(saved[k])} in the checkpoint but {_fmt(want[k])} in the model'
                   for k in want if k in saved and saved[k] != want[k]])
    elif sorted(saved.values()) != sorted(want.values()):
      problems = [f'its {name} holds other arrays (another optimizer?)']
    else:
      problems = []
    if problems:
      more = f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''
      raise _mismatch(step, workdir, '; '.join(problems[:3]) + more)


def _restore_items(step: int, workdir: str, **items) -> dict:
  """Restores `items` of one checkpoint; CheckpointCorruptError / MismatchError otherwise."""
  damage = _damage(workdir, step)
  if damage:
    raise _corrupt(step, workdir, damage)
  _check_compatible(step, workdir, items)
  checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
  out = {}
  for name, target in items.items():
    try:
      out[name] = checkpointer.restore(os.path.join(_step_dir(workdir, step), name),
                                       args=ocp.args.StandardRestore(target))
    except Exception as e:  # pylint: disable=broad-except
      raise _corrupt(step, workdir, f'restoring {name} failed ({_one_line(e, 200)})') from e
  return out


def _restore_newest(workdir: str, steps: Sequence[int], **items) -> tuple[dict, int, list]:
  """Restores the newest of `steps` that restores: (items, step, [damaged newer steps]).

  Damaged (or unfinished) checkpoints newer than it are skipped with one
  warning line; a mismatch raises at once (older checkpoints of the same run
  would not fit either).
  """
  damaged, errors = [], []
  for step in sorted(steps, reverse=True):
    try:
      restored = _restore_items(step, workdir, **items)
    except CheckpointCorruptError as e:
      damaged.append(step)
      errors.append(str(e))
      continue
    if damaged:
      _warn(f'{errors[0]}; using checkpoint {step}, the newest that restores')
    return restored, step, damaged
  if errors:
    raise CheckpointCorruptError(f'no checkpoint of workdir {workdir!r} restores: '
                                 + '; '.join(errors[:2]) + ' -- train in a new --workdir')
  raise FileNotFoundError(f'no complete checkpoints in {workdir!r}')


def _abstract(tree, sharding=None):
  """Leaves -> ShapeDtypeStruct with `sharding` (default: the leaf's or device 0)."""
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def one(x):
    s = sharding or getattr(x, 'sharding', None) or default
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
  return jax.tree.map(one, tree)


def latest_variables(workdir: str, template_variables, *, step: int | None = None,
                     sharding: jax.sharding.Sharding | None = None) -> tuple[dict, int]:
  """Restores the flax variables (no optimizer state) of a checkpoint.

  Args:
    workdir: a training workdir.
    template_variables: variables of the same tree, shapes and dtypes (arrays
      or `jax.eval_shape` output), e.g. `jax.eval_shape(task.init_variables, key)`.
    step: which checkpoint (default: the newest that restores; a damaged newer
      one is skipped with a warning).
    sharding: where to put the arrays (default: the template's sharding, else
      the first device).

  Returns:
    (variables, step).
  """
  items = {'variables': _abstract(template_variables, sharding)}
  if step is None:
    restored, step, _ = _restore_newest(workdir, _step_dirs(workdir), **items)
  else:
    if step not in checkpoint_steps(workdir):
      raise FileNotFoundError(f'no complete checkpoint {step} in {workdir!r} '
                              f'(it has {checkpoint_steps(workdir)})')
    restored = _restore_items(step, workdir, **items)
  return dict(restored['variables']), int(step)


_BINDING = re.compile(r'^((?:[\w.]+/)*)([\w.]+)\.(\w+) = ')


def operative_config() -> str:
  """gin's operative config, with every binding under its full module-qualified name.

  `gin.operative_config_str` writes the shortest names unique in this
  process (`optimizer.learning_rate`); a process that has also registered a
  configurable of the same short name (NeuralGCM has an `optimizer`) could
  not parse those back. Full names (`sphere_plugin.train.optimizer...`) parse
  anywhere the same modules are importable.
  """
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  full = {}
  for _, selector in gin.config._OPERATIVE_CONFIG:  # pylint: disable=protected-access
    full[registry.minimal_selector(selector)] = selector
  lines = []
  for line in gin.operative_config_str().splitlines():
    m = _BINDING.match(line)
    if m and m.group(2) in full:
      line = f'{m.group(1)}{full[m.group(2)]}.{m.group(3)} = {line[m.end():]}'
    lines.append(line)
  return '\n'.join(lines) + '\n'


# Bindings that may differ between a run and its resumption: how long, how
# often to log / evaluate / checkpoint, and display. Anything else (data,
# model, optimizer, seed, batch size) would change what the checkpoint means.
RESUMABLE_BINDINGS = frozenset(
    f'sphere_plugin.train.train.{name}' for name in (
        'num_steps', 'checkpoint_every', 'eval_every', 'log_every', 'max_to_keep',
        'eval_batch_size', 'progress'))


def _bindings(text: str) -> dict[str, str]:
  """{'scope/module.name.param': value text} of a gin config (continuations joined)."""
  out, key = {}, None
  for line in text.splitlines():
    m = _BINDING.match(line)
    if m:
      key = f'{m.group(1)}{m.group(2)}.{m.group(3)}'
      out[key] = line[m.end():].strip()
    elif key and line.strip() and not line.lstrip().startswith('#') and line[:1].isspace():
      out[key] += ' ' + line.strip()
    else:
      key = None
  return {k: ' '.join(v.split()) for k, v in out.items()}


def _check_same_config(workdir: str, current: str) -> None:
  """Raises if `current` changes a binding of workdir/config.gin that resuming cannot.

  Bindings gin has not recorded in this process yet (configurables not called)
  are not compared; new or changed ones are, except RESUMABLE_BINDINGS.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = _bindings(f.read())
  now = _bindings(current)
  changed = [k for k in sorted(set(stored) | set(now))
             if k in now and stored.get(k) != now[k] and k not in RESUMABLE_BINDINGS
             and not k.endswith('.progress')]
  if changed:
    k = changed[0]
    more = f' (and {len(changed) - 1} more: {", ".join(changed[1:4])})' if len(changed) > 1 else ''
    raise ValueError(
        f'resuming {workdir!r} with a changed configuration: {k} is '
        f'{stored.get(k, "unset")} in its config.gin but {now.get(k, "unset")} now{more}; '
        'its checkpoints and statistics belong to the stored one: resume with the same '
        'configuration (only num_steps and the checkpoint/eval/log periods may change) or '
        'start a new run in a new --workdir')


def task_from_config(workdir: str, bindings: Sequence[str] = ()) -> task_lib.Task:
  """Rebuilds the task of a run from workdir/config.gin.

  Clears gin's global config and parses that file into it (so models and data
  configured there are rebuilt as they were trained), then `bindings` (gin
  lines that override it, e.g. a finer grid for inference). The stored file is
  checked by `stored_config.parse` first: one that imports foreign modules or
  names foreign callables raises `stored_config.UnsafeConfigError` before gin
  runs any of it; `bindings` are the caller's own and are not checked.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist (is {workdir!r} a training workdir?)')
  gin.clear_config()
  try:
    stored_config.parse(path, bindings)  # refuses a config that could run code
  except KeyError as e:
    if 'Ambiguous selector' not in str(e):
      raise
    raise ValueError(f'{path} uses short gin names that are ambiguous in this process '
                     f'({str(e).splitlines()[0]}): the run was written before config.gin '
                     'used full names; qualify the names in that file (e.g. '
                     'sphere_plugin.train.optimizer) or load it in a process that has not '
                     'imported the other package') from e
  try:
    reference = gin.query_parameter(_TASK_BINDING)
  except ValueError as e:
    raise ValueError(f'{path} binds no {_TASK_BINDING}; pass the task explicitly') from e
  return task_lib.as_task(copy.deepcopy(reference))  # evaluates @Task() references


def restore(workdir: str, task: task_lib.Task | None = None, *, step: int | None = None,
            sharding: jax.sharding.Sharding | None = None) -> tuple[dict, int]:
  """(variables, step) of a run's checkpoint, for inference.

  Args:
    workdir: a training workdir.
    task: the run's task; default: rebuilt from workdir/config.gin with
      `task_from_config` (which replaces gin's global config).
    step: which checkpoint (default: the latest).
    sharding: see `latest_variables`.
  """
  task = task_lib.as_task(task) if task is not None else task_from_config(workdir)
  template = jax.eval_shape(task.init_variables, jax.random.key(0))
  return latest_variables(workdir, template, step=step, sharding=sharding)


# ---------------------------------------------------------------------------
# Logging


def _write_text(path: str, text: str) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


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
  _write_text(path, ''.join(keep))


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


def _say(message: str) -> None:
  logging.info(message)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f'train: {message}', file=sys.stderr)


def _warn(message: str) -> None:
  logging.warning(message)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f'train: warning: {message}', file=sys.stderr)


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
  tx = _as_optimizer(optimizer, num_steps)
  mesh = make_mesh()
  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  with contextlib.ExitStack() as stack:
    sigterm = stack.enter_context(_sigterm_flag())
    steps = _step_dirs(workdir)
    _barrier('sphere_plugin_listed_checkpoints')
    if not steps:
      state = jax.jit(lambda: create_state(task, tx, seed), out_shardings=replicated)()
      start = 0
    else:
      abstract = _abstract(jax.eval_shape(lambda: create_state(task, tx, seed)), replicated)
      _check_same_config(workdir, operative_config())  # after init: modules have run
      restored, start, damaged = _restore_newest(
          workdir, steps, variables=abstract.variables,
          train_state={'step': abstract.step, 'opt_state': abstract.opt_state,
                       'rng': abstract.rng})
      steps = [s for s in checkpoint_steps(workdir) if s <= start]
      variables, rest = dict(restored['variables']), restored['train_state']
      state = TrainState(step=rest['step'], params=variables.pop('params'),
                         model_state=variables, opt_state=rest['opt_state'], rng=rest['rng'])
      if int(state.step) != start:
        raise ValueError(f'checkpoint {start} of {workdir!r} holds step {int(state.step)}')
      if start >= num_steps:
        _say(f'{workdir} already holds step {start} (num_steps {num_steps}); nothing to train')
        return state
    _barrier('sphere_plugin_restored')
    if is_chief:  # unsealed, half-deleted and damaged steps would block saving there
      _remove_incomplete(workdir, keep=steps)
    _barrier('sphere_plugin_cleaned')
    manager = _manager(workdir, max_to_keep)
    stack.callback(manager.close)
    stack.callback(manager.wait_until_finished)  # runs first: pending saves complete

    if start == 0 and is_chief:
      _write_text(os.path.join(workdir, CONFIG_FILE), operative_config())
      task.save_artifacts(workdir)
    # On resume config.gin and the task's artifacts (normalisation statistics)
    # stay as the checkpoint was trained with; the task reloads its artifacts.
    load = getattr(task, 'load_artifacts', None)
    if start and callable(load):
      load(workdir)
    log = _Log(workdir, start, is_chief)
    stack.callback(log.close)
    if start:
      _say(f'resuming from step {start} of {num_steps} in {workdir}')
      log.event('resume', start)
    else:
      n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
      _say(f'training {num_steps} steps on {devices} device(s) in {processes} process(es), '
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
      _say('compiling the training step (the first step takes longer; later ones are fast)')
    compile_started = time.perf_counter()
    while step < num_steps:
      state, metrics, ok = train_step(state, batch)
      step += 1
      if step < num_steps:
        batch = next_batch(step)  # host work overlaps the device's step
      metrics, ok = jax.device_get((metrics, ok))
      if compile_started is not None:
        _say(f'first step compiled and run in {time.perf_counter() - compile_started:.1f} s')
        compile_started = None
      if not (ok['loss'] and ok['params']):
        what = (f'the loss is {float(metrics["loss"])}' if not ok['loss'] else
                f'the loss is finite ({float(metrics["loss"]):.6g}) but the updated '
                'parameters hold NaN/Inf')
        manager.wait_until_finished()
        last = (checkpoint_steps(workdir) or [None])[-1]
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
        _save(manager, state, step, workdir)
        log.flush()
      if stop:
        manager.wait_until_finished()
        log.event('preempted', step)
        _say(f'{sigterm.get("name", "SIGTERM")}: saved checkpoint {step} in {workdir}; run the '
             'same command to resume')
        return state
    manager.wait_until_finished()
    log.event('done', step)
    final = getattr(task, 'final_evaluation', None)
    if callable(final):
      log.event('test', step, final(state.variables, workdir=workdir,
                                    batch_size=eval_batch_size or batch_size))
    return state
