"""What a run's workdir says about its configuration: the stored config.gin.

`operative_config` is what a run stores; `task_from_config` and `restore`
rebuild a run for inference; `stored_gin_config` is a context manager that parses
a workdir's config.gin in place of the caller's gin config and restores it after.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import re
from typing import Sequence

import gin
import jax

from sphere_plugin.io import stored_config
from sphere_plugin.train import checkpoints
from sphere_plugin.train import task as task_lib

CONFIG_FILE = 'config.gin'
_TASK_BINDING = 'sphere_plugin.train.train.task'

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


def _default_text(key: str) -> str | None:
  """repr of the declared default of a binding's parameter ('module.Name.param'), if any.

  A parameter that a newer version added is absent from an older run's
  config.gin; left at its default, it does not change the run.
  """
  selector, param = key.rsplit('/', 1)[-1].rsplit('.', 1)
  try:
    configurable = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    default = inspect.signature(configurable.wrapped).parameters[param].default
  except (KeyError, TypeError, ValueError, AttributeError):
    return None
  return None if default is inspect.Parameter.empty else repr(default)


def check_same_config(workdir: str, current: str) -> None:
  """Raises if `current` changes a binding of workdir/config.gin that resuming cannot.

  Bindings gin has not recorded in this process yet (configurables not called)
  are not compared; new or changed ones are, except RESUMABLE_BINDINGS and
  parameters absent from the stored file that are at their declared default
  (added by a newer version of the code).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = _bindings(f.read())
  now = _bindings(current)
  changed = [k for k in sorted(set(stored) | set(now))
             if k in now and stored.get(k) != now[k] and k not in RESUMABLE_BINDINGS
             and not k.endswith('.progress')
             and not (k not in stored and now[k] == _default_text(k))]
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
    sharding: see `checkpoints.latest_variables`.
  """
  task = task_lib.as_task(task) if task is not None else task_from_config(workdir)
  template = jax.eval_shape(task.init_variables, jax.random.key(0))
  return checkpoints.latest_variables(workdir, template, step=step, sharding=sharding)


@contextlib.contextmanager
def stored_gin_config(workdir: str):
  """Temporarily replaces the global gin config with `workdir/config.gin`.

  The stored config is checked by `stored_config.parse` first: one that
  imports foreign modules or names foreign callables is refused
  (`stored_config.UnsafeConfigError`) before gin runs any of it.
  """
  path = os.path.join(os.fspath(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir} has no {CONFIG_FILE}: not a training workdir')
  with gin.unlock_config():
    saved = gin.config_str()
    gin.clear_config()
    try:
      stored_config.parse(path)  # refuses a config that could run code
      yield
    finally:
      gin.clear_config()
      if saved.strip():
        gin.parse_config(saved)
