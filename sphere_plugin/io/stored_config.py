"""Parsing a gin config stored in a workdir without running anything it names.

A training workdir's `config.gin` comes from whoever sent the run. Plain
`gin.parse_config` executes it in effect: `import x` imports any module, and
with `from __gin__ import dynamic_registration` every callable of an imported
module (`os.system`, `subprocess.run`) becomes a configurable that a reference
such as `@os.system()` calls. The loaders of this package (`forecast.load`,
`ds.sphere.predict(path)`, `tools/evaluate.py --workdir`, `train.restore`,
`TrainedQM9`) therefore check a stored config before gin sees it, against an
allowlist of what this package writes itself (`train.operative_config`):

- imports of `sphere_plugin` modules only; no `from __gin__ import ...`
  (dynamic registration) and no `include` of other files;
- bindings, block scopes and `@references` only to configurables that this
  package registered (their gin module is `sphere_plugin...`), and macros;
- values are gin literals (numbers, strings, tuples, lists, dicts), which gin
  parses with `ast.literal_eval` and never evaluates.

Anything else is refused with `UnsafeConfigError`, one line naming the file,
the line number and the offending text. Configs passed by the user on the
command line or as `bindings` are the user's own and are not checked.
"""

from __future__ import annotations

import importlib
import io
import os
from typing import Any, Sequence

import gin
from gin import config_parser

PACKAGE = 'sphere_plugin'


class UnsafeConfigError(ValueError):
  """A stored gin config asks for something outside this package's allowlist."""


class _Reference:
  """A `@name` or `@name()` as the checker's parser records it (never called)."""

  def __init__(self, name: str):
    self.name = name


class _RecordingDelegate(config_parser.ParserDelegate):
  """Turns references and macros into inert records instead of gin objects."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return _Reference(scoped_configurable_name)

  def macro(self, macro_name):
    return None  # %MACRO: a name bound by the same config, nothing to resolve


def _references(value: Any, found: list[str]) -> list[str]:
  """Names of the `_Reference`s in a parsed value (nested containers)."""
  stack = [value]
  while stack:
    v = stack.pop()
    if isinstance(v, _Reference):
      found.append(v.name)
    elif isinstance(v, dict):
      stack.extend(v.keys())
      stack.extend(v.values())
    elif isinstance(v, (list, tuple, set, frozenset)):
      stack.extend(v)
  return found


def _is_ours(module: str) -> bool:
  return module == PACKAGE or module.startswith(PACKAGE + '.')


def _refuse(location: config_parser.Location, filename: str, what: str) -> None:
  text = (location.line_content or '').strip()
  raise UnsafeConfigError(
      f'{filename} line {location.line_num}: refusing {text!r}: {what}; a stored '
      f'config may only import {PACKAGE} modules and bind {PACKAGE} configurables '
      '(loading a run must not run code)')


def _check_configurable(selector: str, location, filename: str) -> None:
  """Every configurable a selector can name must be registered by this package."""
  name = selector.rsplit('/', 1)[-1]  # drop scopes
  if name in ('gin.macro', 'gin.constant') or name.endswith(('/gin.macro', '/gin.constant')):
    return
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  matches = registry.matching_selectors(name)
  if not matches:
    _refuse(location, filename, f'{name!r} is not a configurable registered by {PACKAGE}')
  foreign = [m for m in matches if not _is_ours(registry[m].module or '')]
  if foreign:
    _refuse(location, filename, f'{name!r} names configurables outside {PACKAGE} '
            f'({", ".join(sorted(foreign))})')


def _named(text: str, name: str) -> io.StringIO:
  """`text` as a file-like object whose `name` gin puts in its error messages."""
  f = io.StringIO(text)
  f.name = name
  return f


def check(text: str, filename: str = '<config>') -> None:
  """Refuses a stored gin config that could run code; imports its own modules.

  Args:
    text: the config's text.
    filename: shown in the error.

  Raises:
    UnsafeConfigError: one line naming the first offending line.
    SyntaxError: the text is not valid gin.
  """
  statements = list(config_parser.ConfigParser(_named(text, filename), _RecordingDelegate()))
  for s in statements:  # imports first: they register the names bindings use
    if isinstance(s, config_parser.IncludeStatement):
      _refuse(s.location, filename, 'a stored config may not include other files')
    if isinstance(s, config_parser.ImportStatement):
      if s.module.startswith('__gin__'):
        _refuse(s.location, filename, 'dynamic registration makes any imported callable '
                'a configurable')
      if not _is_ours(s.module):
        _refuse(s.location, filename, f'{s.module!r} is not a {PACKAGE} module')
      importlib.import_module(s.module)
  for s in statements:
    if isinstance(s, config_parser.BindingStatement):
      if s.arg_name:  # `Name.param = value`; no arg_name: a macro definition
        _check_configurable(s.selector, s.location, filename)
      for ref in _references(s.value, []):
        _check_configurable(ref, s.location, filename)
    elif isinstance(s, config_parser.BlockDeclaration):
      _check_configurable(s.selector, s.location, filename)


def parse(path: str | os.PathLike, bindings: Sequence[str] = ()) -> None:
  """Checks `path` with `check`, then parses it and `bindings` into gin's config.

  Gin's global config is not cleared here; callers clear or save it first.

  Args:
    path: a stored config.gin.
    bindings: trusted gin lines from the caller (not checked), applied after.

  Raises:
    FileNotFoundError: no such file.
    UnsafeConfigError: see `check`.
  """
  path = os.fspath(path)
  with open(path, encoding='utf-8') as f:
    text = f.read()
  check(text, path)
  with gin.unlock_config():
    gin.parse_config(_named(text, path))
    if bindings:
      gin.parse_config(list(bindings))
