"""Write-then-rename, so an interrupted writer never leaves a complete-looking output."""

from __future__ import annotations

import contextlib
import os
import shutil


def remove(path: str) -> None:
  """Removes a file or directory tree if it exists."""
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields `<path>.partial-<pid>` to write to; moves it to `path` on success.

  An existing `path` is removed only after the new one is in place. On any
  exception (KeyboardInterrupt included) the partial path is removed and `path`
  is left as it was. Works for files and directories (zarr stores).
  """
  path = os.fspath(path).rstrip('/')
  tmp = f'{path}.partial-{os.getpid()}'
  remove(tmp)
  try:
    yield tmp
    old = None
    if os.path.exists(path):
      old = f'{path}.old-{os.getpid()}'
      os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
      remove(old)
  finally:
    remove(tmp)
