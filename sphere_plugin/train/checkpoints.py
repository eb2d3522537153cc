"""Orbax checkpoints of a workdir: saving, sealing, verifying and restoring.

Each step is `checkpoints/<step>/` (items `variables` and `train_state`) with a
manifest `checkpoint_manifests/<step>.json` of its files and sizes, written
once orbax has finished; a step without a matching manifest is damaged.
Restoring takes the newest checkpoint that restores and names the damaged ones.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from sphere_plugin.io import atomic
from sphere_plugin.train import console
from sphere_plugin.train.state import TrainState


CHECKPOINT_DIR = 'checkpoints'


def manager(workdir: str, max_to_keep: int | None = None, create: bool = True
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


def step_dirs(workdir: str) -> list[int]:
  """Steps that have a directory under checkpoints/ (complete or not), ascending."""
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
  return [s for s in step_dirs(workdir) if _damage(workdir, s) is None]


def _seal(workdir: str) -> None:
  """Writes manifests for finalised steps lacking one; drops stale ones (chief only).

  Call only after `manager.wait_until_finished()`: then every `<step>` dir is
  finalised and orbax's cleanup of old steps is over.
  """
  os.makedirs(os.path.join(workdir, MANIFEST_DIR), exist_ok=True)
  steps = set(step_dirs(workdir))
  for name in os.listdir(os.path.join(workdir, MANIFEST_DIR)):
    stem = name.split('.')[0]
    if stem.isdigit() and int(stem) not in steps:
      os.remove(os.path.join(workdir, MANIFEST_DIR, name))
  for step in steps:
    if not os.path.exists(_manifest_path(workdir, step)):
      atomic.write_text(_manifest_path(workdir, step),
                  json.dumps(_step_files(_step_dir(workdir, step)), indent=0, sort_keys=True))


def remove_incomplete(workdir: str, keep: Sequence[int]) -> None:
  """Removes step dirs not in `keep` (half-deleted, unsealed), so orbax can save there."""
  import shutil  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.join(workdir, MANIFEST_DIR)):
    return  # a workdir from before manifests: nothing is known to be incomplete
  for step in step_dirs(workdir):
    if step not in keep:
      shutil.rmtree(_step_dir(workdir, step), ignore_errors=True)
      with contextlib.suppress(FileNotFoundError):
        os.remove(_manifest_path(workdir, step))


def save(manager: ocp.CheckpointManager, state: TrainState, step: int, workdir: str) -> None:
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


def restore_newest(workdir: str, steps: Sequence[int], **items) -> tuple[dict, int, list]:
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
      console.warn(f'{errors[0]}; using checkpoint {step}, the newest that restores')
    return restored, step, damaged
  if errors:
    raise CheckpointCorruptError(f'no checkpoint of workdir {workdir!r} restores: '
                                 + '; '.join(errors[:2]) + ' -- train in a new --workdir')
  raise FileNotFoundError(f'no complete checkpoints in {workdir!r}')


def abstract(tree, sharding=None):
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
  items = {'variables': abstract(template_variables, sharding)}
  if step is None:
    restored, step, _ = restore_newest(workdir, step_dirs(workdir), **items)
  else:
    if step not in checkpoint_steps(workdir):
      raise FileNotFoundError(f'no complete checkpoint {step} in {workdir!r} '
                              f'(it has {checkpoint_steps(workdir)})')
    restored = _restore_items(step, workdir, **items)
  return dict(restored['variables']), int(step)


