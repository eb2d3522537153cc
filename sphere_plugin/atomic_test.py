"""atomic_path: the output appears whole or not at all."""

import os

import pytest

from sphere_plugin import atomic


def test_success_replaces_and_failure_keeps_the_old_output(tmp_path):
  out = str(tmp_path / 'store')
  with atomic.atomic_path(out) as tmp:
    os.makedirs(tmp)
    open(os.path.join(tmp, 'a'), 'w').write('first')
  assert os.listdir(tmp_path) == ['store']
  with pytest.raises(KeyboardInterrupt):
    with atomic.atomic_path(out) as tmp:
      os.makedirs(tmp)
      open(os.path.join(tmp, 'a'), 'w').write('half')
      raise KeyboardInterrupt
  assert os.listdir(tmp_path) == ['store']
  assert open(os.path.join(out, 'a')).read() == 'first'
  with atomic.atomic_path(out) as tmp:  # a file replaces a directory too
    open(tmp, 'w').write('second')
  assert open(out).read() == 'second' and os.listdir(tmp_path) == ['store']
