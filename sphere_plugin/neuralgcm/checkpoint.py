"""Loading NeuralGCM legacy checkpoints safely on the current JAX.

NeuralGCM checkpoints are pickles of `{'model_config_str', 'aux_ds_dict',
'params'}`. The shipped ones hold JAX arrays pickled by an old JAX whose
abstract values carried `named_shape`, so `pickle.load` fails on current JAX
(`ShapedArray.__new__() got an unexpected keyword argument 'named_shape'`).
And a pickle can run arbitrary code or forge memory. `load_pickle` therefore
uses `sphere_plugin.safe_pickle`: it rebuilds numeric arrays only from (dtype,
shape, bytes), accepts NumPy dtypes and scalars of numeric kinds, old JAX
arrays (as NumPy arrays) and plain containers, and refuses everything else
with `UnsafePickleError`.

NeuralGCM parses a model's gin config with `skip_unknown=True`: a reference
to a configurable that is not registered (e.g. `@SphericalCNNTower` before
`sphere_plugin.neuralgcm` is imported) parses silently and fails only when the
model is first called. `unresolved_references` finds such names in a config
string and `check_parsed_config` finds the placeholders gin left in the
currently parsed config; `load_checkpoint` refuses a config with either.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from typing import Any, Sequence

import gin

from sphere_plugin.io import safe_pickle
from sphere_plugin.io.safe_pickle import RestrictedUnpickler, UnsafePickleError  # pylint: disable=unused-import  (public names)

IMPORT_HINT = 'import sphere_plugin.neuralgcm first'
PLUGIN_NAMES = ('SphericalCNNTower',)


def load_pickle(source: str | os.PathLike | bytes) -> Any:
  """Loads a pickle through the memory-safe `safe_pickle.RestrictedUnpickler`.

  Args:
    source: a path or the pickle's bytes.

  Returns:
    The unpickled object; JAX arrays come back as NumPy arrays.

  Raises:
    UnsafePickleError: the pickle refers to anything but numeric arrays,
      dtypes, scalars and plain containers, or is malformed.
  """
  return safe_pickle.load(source)


def demo_checkpoint_path() -> str:
  """Path of NeuralGCM's shipped toy checkpoint (TL63 stochastic 'mini')."""
  import neuralgcm  # pylint: disable=g-import-not-at-top
  return str(importlib.resources.files(neuralgcm).joinpath('data/tl63_stochastic_mini.pkl'))


_REF = re.compile(r'@([A-Za-z_][\w./]*)')
_LHS = re.compile(r'(?m)^\s*([A-Za-z_][\w./]*)\.\w+\s*=')
_STRING = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _configurable_names(config_str: str) -> set[str]:
  text = _STRING.sub("''", '\n'.join(l.split('#', 1)[0] for l in config_str.splitlines()))
  names = {m.group(1) for m in _REF.finditer(text)}
  names |= {m.group(1) for m in _LHS.finditer(text)}
  return {n.rsplit('/', 1)[-1] for n in names}


def _hint(names: Sequence[str]) -> str:
  ours = [n for n in names if n.rsplit('.', 1)[-1] in PLUGIN_NAMES]
  return f' ({IMPORT_HINT})' if ours else ''


def unresolved_references(config_str: str) -> list[str]:
  """Configurables named in a gin config that are not registered in this process.

  Both references (`@Name`, `@scope/Name()`) and binding targets
  (`scope/Name.param = ...`) count: with `skip_unknown=True` gin drops either
  silently.

  Args:
    config_str: gin config text.

  Returns:
    Sorted unresolved names (scopes removed).
  """
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  return sorted(n for n in _configurable_names(config_str) if not registry.matching_selectors(n))


def check_config(config_str: str) -> None:
  """Raises ValueError naming every unresolved configurable of `config_str`."""
  missing = unresolved_references(config_str)
  if missing:
    raise ValueError(
        f'gin config names configurables that are not registered: {", ".join(missing)}'
        f'{_hint(missing)}; NeuralGCM would drop them silently (skip_unknown) and fail '
        'at the first call')


def _unknown_in(value, found: list[str]):
  if isinstance(value, gin.config._UnknownConfigurableReference):  # pylint: disable=protected-access
    found.append(value.selector)
  elif isinstance(value, dict):
    for v in value.values():
      _unknown_in(v, found)
  elif isinstance(value, (list, tuple, set)):
    for v in value:
      _unknown_in(v, found)


def check_parsed_config() -> None:
  """Refuses a currently parsed gin config that holds unknown references.

  A config parsed with `skip_unknown=True` before the referenced configurable
  was registered keeps a placeholder that importing the module later does not
  fix. This finds them.

  Raises:
    ValueError: naming the unknown references and the binding that holds each.
  """
  bad = []
  for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    for pname, value in params.items():
      found = []
      _unknown_in(value, found)
      where = f'{scope + "/" if scope else ""}{selector.rsplit(".", 1)[-1]}.{pname}'
      bad += [f'@{n} (in {where})' for n in found]
  if bad:
    names = [b.split(' ', 1)[0][1:] for b in bad]
    raise ValueError(
        f'the parsed gin config holds references that were unknown when it was parsed: '
        f'{"; ".join(sorted(bad))}{_hint(names)} and parse the config again (NeuralGCM '
        'parses with skip_unknown=True, which keeps a placeholder that fails at the first '
        'call)')


def load_checkpoint(path: str | os.PathLike | None = None,
                    extra_bindings: str | Sequence[str] = ()) -> dict[str, Any]:
  """Loads a NeuralGCM legacy checkpoint safely and checks its gin config.

  Args:
    path: checkpoint pickle; default NeuralGCM's toy TL63 checkpoint.
    extra_bindings: gin lines appended to `model_config_str` (later bindings
      override earlier ones), e.g. the lines that put a `SphericalCNNTower`
      into the encoder.

  Returns:
    `{'model_config_str', 'aux_ds_dict', 'params'}` with NumPy params, ready
    for `neuralgcm.PressureLevelModel.from_checkpoint`.

  Raises:
    UnsafePickleError: the file is not a plain array pickle.
    ValueError: the file is not a NeuralGCM checkpoint, or its config names
      configurables that are not registered.
  """
  import neuralgcm.legacy.api  # pylint: disable=g-import-not-at-top,unused-import  (registers NeuralGCM's names)
  ckpt = load_pickle(demo_checkpoint_path() if path is None else path)
  keys = {'model_config_str', 'aux_ds_dict', 'params'}
  if not isinstance(ckpt, dict) or not keys <= set(ckpt):
    got = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
    raise ValueError(f'not a NeuralGCM checkpoint: expected a dict with keys {sorted(keys)}, '
                     f'got {got}')
  if isinstance(extra_bindings, str):
    extra_bindings = [extra_bindings]
  if extra_bindings:
    ckpt = dict(ckpt)
    ckpt['model_config_str'] = (ckpt['model_config_str'] + '\n\n# sphere_plugin overrides\n'
                                + '\n'.join(extra_bindings) + '\n')
  check_config(ckpt['model_config_str'])
  return ckpt
