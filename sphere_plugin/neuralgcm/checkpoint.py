"""Loading NeuralGCM legacy checkpoints safely on the current JAX.

NeuralGCM checkpoints are pickles of `{'model_config_str', 'aux_ds_dict',
'params'}`. The shipped ones hold JAX arrays pickled by an old JAX whose
abstract values carried `named_shape`, so `pickle.load` fails on current JAX
(`ShapedArray.__new__() got an unexpected keyword argument 'named_shape'`).
And a pickle can run arbitrary code. `load_pickle` therefore uses a restricted
unpickler: it accepts only NumPy array reconstruction, NumPy dtypes and scalars,
old JAX arrays (rebuilt as NumPy arrays) and plain containers, and refuses
every other global with `UnsafePickleError`. Load only files you trust anyway.

NeuralGCM parses a model's gin config with `skip_unknown=True`: a reference
to a configurable that is not registered (e.g. `@SphericalCNNTower` before
`sphere_plugin.neuralgcm` is imported) parses silently and fails only when the
model is first called. `unresolved_references` finds such names in a config
string and `check_parsed_config` finds the placeholders gin left in the
currently parsed config; `load_checkpoint` refuses a config with either.
"""

from __future__ import annotations

import importlib.resources
import io
import os
import pickle
import re
from typing import Any, Sequence

import gin
import numpy as np

IMPORT_HINT = 'import sphere_plugin.neuralgcm first'
PLUGIN_NAMES = ('SphericalCNNTower',)


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for a global outside the allowed array/container set."""


def _rebuild_jax_array(fun, args, arr_state, aval_state):
  """Stand-in for `jax._src.array._reconstruct_array`: returns the NumPy array.

  `fun(*args)` was resolved by the restricted unpickler, so it is NumPy's own
  `_reconstruct`; `aval_state` (the old abstract value, e.g. `named_shape`) is
  dropped.
  """
  del aval_state
  if fun is not _np_reconstruct():
    raise UnsafePickleError('old JAX array built with an unexpected function '
                            f'{getattr(fun, "__name__", fun)!r}')
  value = fun(*args)
  value.__setstate__(arr_state)
  return value


def _multiarray():
  try:
    from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  except ImportError:  # NumPy 1.x
    from numpy.core import multiarray  # pylint: disable=g-import-not-at-top
  return multiarray


def _np_reconstruct():
  return _multiarray()._reconstruct  # pylint: disable=protected-access


def _allowed(module: str, name: str):
  """The object a pickle may refer to as module.name, or None."""
  if (module, name) == ('jax._src.array', '_reconstruct_array'):
    return _rebuild_jax_array
  if module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    if name == '_reconstruct':
      return _np_reconstruct()
    if name == 'scalar':
      return _multiarray().scalar
  if module == 'numpy':
    if name == 'ndarray':
      return np.ndarray
    if name == 'dtype':
      return np.dtype
  if module == 'builtins' and name in ('dict', 'list', 'tuple', 'set', 'frozenset',
                                       'complex', 'slice', 'bytearray'):
    return getattr(__import__('builtins'), name)
  if module == 'collections' and name in ('OrderedDict',):
    import collections  # pylint: disable=g-import-not-at-top
    return collections.OrderedDict
  return None


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler for array checkpoints: arrays, dtypes, scalars, plain containers."""

  def find_class(self, module: str, name: str):
    """The allowed global `module.name`; raises UnsafePickleError for any other."""
    obj = _allowed(module, name)
    if obj is None:
      raise UnsafePickleError(
          f'refusing to load {module}.{name} from a pickle: only NumPy/JAX array '
          'reconstruction and plain containers are allowed in a NeuralGCM checkpoint')
    return obj


def load_pickle(source: str | os.PathLike | bytes) -> Any:
  """Loads a pickle through `RestrictedUnpickler`.

  Args:
    source: a path or the pickle's bytes.

  Returns:
    The unpickled object; JAX arrays come back as NumPy arrays.

  Raises:
    UnsafePickleError: the pickle refers to anything else.
  """
  if isinstance(source, (bytes, bytearray)):
    data = bytes(source)
  else:
    with open(source, 'rb') as f:
      data = f.read()
  return RestrictedUnpickler(io.BytesIO(data)).load()


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
