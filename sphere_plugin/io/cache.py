"""Where sphere_plugin keeps what it makes once and reuses (datasets, converted files).

`cache_dir()` is, in order:
1. `$SPHERE_PLUGIN_CACHE`, when set;
2. `<checkout>/.cache` when the package runs from a source checkout (an
   editable install or `PYTHONPATH`: a `pyproject.toml` sits beside the
   package), as `make test` and `make demo` expect;
3. `$XDG_CACHE_HOME/sphere_plugin`, by default `~/.cache/sphere_plugin`,
   for an installed wheel: never inside site-packages.
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = 'SPHERE_PLUGIN_CACHE'
_CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def cache_dir() -> pathlib.Path:
  """The cache directory (not created here; writers create what they need)."""
  if os.environ.get(ENV_VAR):
    return pathlib.Path(os.environ[ENV_VAR]).expanduser()
  if (_CHECKOUT / 'pyproject.toml').is_file() and (_CHECKOUT / 'sphere_plugin').is_dir():
    return _CHECKOUT / '.cache'
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return pathlib.Path(base) / 'sphere_plugin'


def data_path(name: str) -> pathlib.Path:
  """`cache_dir() / 'data' / name`: a generated or converted dataset file."""
  return cache_dir() / 'data' / name
