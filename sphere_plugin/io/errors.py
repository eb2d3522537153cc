"""One-line errors for the command-line tools: `<tool>: error: <message>`, exit status 1.

`run_main(tool, fn)` runs a tool's work and turns any exception into one line
on stderr (the first line of its message, with the exception type where the
type says something the message does not, e.g. `MemoryError: ...`), and exit
status 1. `--verbose` prints the full traceback before that line. A tool
stopped by SIGTERM/SIGINT (`interrupts.Interrupted`) says so in one line and
exits with 128 + the signal number, as shells report a killed process.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

from absl import flags

from sphere_plugin.io import interrupts

# absl defines --verbosity (-v) but no --verbose; checked when this was added.
VERBOSE = flags.DEFINE_bool('verbose', False,
                            'On an error, print the full traceback before the one-line message.')

# Errors whose message already says what went wrong; others get their type name.
_SELF_EXPLAINING = (ValueError, OSError)


def message(error: BaseException, *, where: bool = False) -> str:
  """The one-line description of `error` (its message's first line, maybe its type).

  Args:
    error: the exception.
    where: append ` [file.py:line in function]` of the innermost frame (for
      errors whose message alone does not say which part of a run failed).
  """
  text = str(error).strip()
  first = text.splitlines()[0] if text else ''
  if isinstance(error, _SELF_EXPLAINING) and first and not where:
    line = first
  else:
    kind = 'MemoryError' if isinstance(error, MemoryError) else type(error).__name__
    line = f'{kind}: {first}' if first else kind
  frames = traceback.extract_tb(error.__traceback__) if where else []
  if frames:
    frame = frames[-1]
    line += f' [{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}]'
  return line


def fail(tool: str, text: str) -> int:
  """Prints `<tool>: error: <text>` on stderr; returns the exit status 1."""
  print(f'{tool}: error: {text}', file=sys.stderr)
  return 1


def run_main(tool: str, fn, *, verbose: bool | None = None, stopped_note: str = '') -> int:
  """Runs fn(); returns its exit status (0 for None), or reports a failure in one line.

  Args:
    tool: the name the line starts with ('regrid').
    fn: the tool's work, no arguments.
    verbose: print the traceback too (default: the --verbose flag).
    stopped_note: appended to the 'stopped by SIGTERM' line (what was cleaned up).

  Returns:
    fn's status, 1 after an exception, 128 + signum after SIGTERM/SIGINT.
  """
  verbose = (VERBOSE.value if flags.FLAGS.is_parsed() else False) if verbose is None else verbose
  try:
    status = fn()
  except KeyboardInterrupt as e:
    if not isinstance(e, interrupts.Interrupted):  # Ctrl-C outside raising_on_signals
      e = interrupts.Interrupted(signal.SIGINT)
    if verbose:
      traceback.print_exc()
    print(f'{tool}: {e}{stopped_note}', file=sys.stderr)
    return e.exit_status
  except Exception as e:  # pylint: disable=broad-except
    if verbose:
      traceback.print_exc()
    return fail(tool, message(e))
  return 0 if status is None else int(status)
