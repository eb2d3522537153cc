"""Write-then-rename, so an interrupted writer never leaves a complete-looking output.

`atomic_path(path)` yields `<path>.partial-<pid>`; on success the partial is
renamed to `path`. With `overwrite=False` the rename never replaces a path that
appeared while the writer ran (another run writing the same output): files are
published with `os.link`, which fails atomically when the name exists, and
directories with `os.rename`, which POSIX refuses onto a non-empty directory or
a file. The loser gets a FileExistsError and its partial is removed.
`stale_partials(path)` lists the partials of `path` left by processes that are
gone (SIGKILL, power loss).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil

from sphere_plugin.io import interrupts


def remove(path: str) -> None:
  """Removes a file or directory tree if it exists."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


def _appeared(path: str) -> FileExistsError:
  return FileExistsError(f'output {path!r} appeared while this run was writing it (another '
                         'run?); it was kept and this run\'s result discarded: pass '
                         '--overwrite (overwrite=True) to replace it')


def _publish_no_replace(tmp: str, path: str) -> None:
  """Moves tmp to path unless path exists; atomic for files and directories."""
  if os.path.isdir(tmp):
    try:
      os.rename(tmp, path)  # replaces at most an empty directory: no data lost
    except OSError as e:
      if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
        raise _appeared(path) from e
      raise
    return
  try:
    os.link(tmp, path)
  except FileExistsError as e:
    raise _appeared(path) from e
  except OSError as e:  # no hard links on this file system: reserve the name exclusively
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                       errno.EMLINK):
      raise
    try:
      os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError as e2:
      raise _appeared(path) from e2
    os.replace(tmp, path)
  else:
    os.remove(tmp)


def partial_path(path: str, pid: int | None = None) -> str:
  """The partial path a process writes `path` to: `<path>.partial-<pid>`."""
  return f'{os.fspath(path).rstrip("/")}.partial-{os.getpid() if pid is None else pid}'


@contextlib.contextmanager
def atomic_path(path: str, *, overwrite: bool = True):
  """Yields `<path>.partial-<pid>` to write to; moves it to `path` on success.

  Args:
    path: the final file or directory (zarr store).
    overwrite: True: an existing `path` is replaced, and removed only after
      the new one is in place. False: if `path` exists when the result is
      published (it appeared during the run), nothing is replaced and
      FileExistsError is raised.

  On any exception (KeyboardInterrupt included) the partial path is removed
  and `path` is left as it was.
  """
  path = os.fspath(path).rstrip('/')
  tmp = partial_path(path)
  remove(tmp)
  try:
    yield tmp
    interrupts.raise_if_stopped()  # a SIGTERM whose raise was swallowed: do not publish
    if not overwrite:
      _publish_no_replace(tmp, path)
      return
    old = None
    if os.path.lexists(path):
      old = f'{path}.old-{os.getpid()}'
      os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
      remove(old)
  finally:
    remove(tmp)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  return True


def stale_partials(path: str) -> list[str]:
  """Partial paths of `path` (`<path>.partial-<pid>[.zarr]`) whose process is gone.

  Only this host's processes are checked: a partial of a live process (or of
  a pid now reused) is never listed.
  """
  path = os.fspath(path).rstrip('/')
  pattern = re.compile(re.escape(path) + r'\.partial-(\d+)(\.zarr)?$')
  found = []
  for candidate in sorted(glob.glob(glob.escape(path) + '.partial-*')):
    match = pattern.match(candidate)
    if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
      found.append(candidate)
  return found


def write_text(path: str, text: str) -> None:
  """Writes a small text file by write-then-rename: readers see the old or the new text.

  One `os.replace` publishes it (atomic for a file), so a kill at any moment
  leaves `path` whole; a kill before it leaves only `<path>.partial-<pid>`.
  """
  tmp = partial_path(path)
  try:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(tmp, path)
  finally:
    remove(tmp)


def check_output(output: str, overwrite: bool) -> None:
  """Refuses, in one line, an existing output (without `overwrite`) and a missing or
  read-only output directory (local paths; URLs are checked by their writer)."""
  if '://' in os.fspath(output):
    return
  if os.path.exists(output) and not overwrite:
    raise FileExistsError(f'output {output!r} exists; pass --overwrite to replace it')
  parent = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f'output directory {parent!r} does not exist')
  if not os.access(parent, os.W_OK):
    raise PermissionError(f'output directory {parent!r} is not writable')
