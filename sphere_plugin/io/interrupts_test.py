"""A SIGTERM whose raise Python swallowed still stops the run before it publishes."""

import gc
import os
import signal
import sys

import pytest

from sphere_plugin.io import atomic
from sphere_plugin.io import interrupts


def _sigterm_inside_a_gc_callback():
  """Delivers SIGTERM while a gc callback runs: Python prints 'Exception ignored'."""
  def callback(phase, info):
    del info
    if phase == 'start':
      gc.callbacks.remove(callback)
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(1000):  # the handler runs here; its raise is ignored
        pass
  gc.callbacks.append(callback)
  gc.collect()


def test_a_swallowed_sigterm_does_not_publish_the_output(tmp_path, monkeypatch):
  reported = []  # Python's 'Exception ignored' report: the tools' stop is one line
  monkeypatch.setattr(sys, 'unraisablehook', reported.append)
  out = tmp_path / 'out.txt'
  with pytest.raises(interrupts.Interrupted, match='SIGTERM'):
    with interrupts.raising_on_signals():
      with atomic.atomic_path(str(out)) as tmp:
        with open(tmp, 'w') as f:
          f.write('data')
        _sigterm_inside_a_gc_callback()
        assert interrupts._OPEN[0]['signum'] == signal.SIGTERM  # the handler ran
  assert sorted(os.listdir(tmp_path)) == []  # no output, no partial
  assert not reported and sys.unraisablehook == reported.append  # restored


def test_a_swallowed_sigterm_is_raised_when_the_block_ends(monkeypatch):
  monkeypatch.setattr(sys, 'unraisablehook', lambda u: pytest.fail(f'reported: {u.exc_value}'))
  with pytest.raises(interrupts.Interrupted, match='SIGTERM'):
    with interrupts.raising_on_signals():
      _sigterm_inside_a_gc_callback()
  assert not interrupts._OPEN


def test_without_a_signal_nothing_is_raised(tmp_path):
  with interrupts.raising_on_signals():
    with atomic.atomic_path(str(tmp_path / 'out.txt')) as tmp:
      open(tmp, 'w').close()
    interrupts.raise_if_stopped()
  assert os.listdir(tmp_path) == ['out.txt']
