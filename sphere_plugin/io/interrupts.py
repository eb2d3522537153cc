"""SIGTERM and SIGINT as an exception, so `finally` clean-ups run when a tool is stopped.

Python's default SIGTERM action kills the process at once: no `finally` runs
and partial outputs stay behind. Inside `raising_on_signals()` the first
SIGTERM or SIGINT raises `Interrupted` in the main thread (where Python runs
signal handlers); later ones are ignored, so they cannot cut the clean-up
short. The same pattern as the train loop's SIGTERM flag
(`sphere_plugin.train.loop`), raising instead of polling.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class Interrupted(KeyboardInterrupt):
  """Raised when SIGTERM or SIGINT arrives; `signum` says which.

  A KeyboardInterrupt, so `except Exception` blocks do not swallow it.
  """

  def __init__(self, signum: int):
    self.signum = int(signum)
    super().__init__(f'stopped by {signal.Signals(self.signum).name}')

  @property
  def exit_status(self) -> int:
    """128 + the signal number, the shell's convention for a process a signal stopped."""
    return 128 + self.signum


@contextlib.contextmanager
def raising_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
  """Within the block the first of `signums` raises Interrupted (main thread only).

  Elsewhere than in the main thread it does nothing (Python allows signal
  handlers there only). The previous handlers are restored on exit.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  state = {'signum': None}

  def handler(signum, frame):
    del frame
    if state['signum'] is not None:
      return  # already stopping: let the clean-up finish
    state['signum'] = signum
    raise Interrupted(signum)

  previous = {s: signal.signal(s, handler) for s in signums}
  previous_hook = sys.unraisablehook

  def hook(unraisable):
    if isinstance(unraisable.exc_value, Interrupted):
      return  # remembered in state: raise_if_stopped says it, in one line
    previous_hook(unraisable)

  sys.unraisablehook = hook
  _OPEN.append(state)
  try:
    yield
    raise_if_stopped()  # the raise was swallowed (see raise_if_stopped): say it now
  finally:
    _OPEN.remove(state)
    sys.unraisablehook = previous_hook
    for s, h in previous.items():
      signal.signal(s, h)


# The states of the raising_on_signals blocks now open (main thread only).
_OPEN: list[dict] = []


def raise_if_stopped() -> None:
  """Raises Interrupted if a signal arrived in an open `raising_on_signals` block.

  The handler's raise can be lost: when the signal is handled inside a
  callback whose exceptions Python ignores (a garbage-collection callback,
  `__del__`, a weakref callback) it is printed as 'Exception ignored' and the
  work goes on (the block keeps Python from printing that report). Call this
  between units of work (each chunk) and before an irreversible step
  (publishing an output), so a stopped run stops soon and never completes;
  the block also calls it on exit. It is cheap, and a no-op outside the block
  (e.g. on a remote Beam worker).
  """
  for state in _OPEN:
    if state['signum'] is not None:
      raise Interrupted(state['signum'])
