"""atomic_path: the output appears whole or not at all."""

import os

import pytest

from sphere_plugin.io import atomic


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


@pytest.mark.parametrize('ours,theirs', [('file', 'file'), ('dir', 'dir'), ('file', 'dir'),
                                         ('dir', 'file')])
def test_without_overwrite_an_output_that_appeared_meanwhile_is_kept(tmp_path, ours, theirs):
  """Two runs to one output: the one that finishes last used to replace the first."""
  out = str(tmp_path / 'out')

  def make(path, kind, text):
    if kind == 'dir':
      os.makedirs(path)
      path = os.path.join(path, 'a')
    with open(path, 'w') as f:
      f.write(text)

  with pytest.raises(FileExistsError, match='appeared while this run was writing'):
    with atomic.atomic_path(out, overwrite=False) as tmp:
      make(tmp, ours, 'ours')
      make(out, theirs, 'theirs')  # the other run published first
  assert os.listdir(tmp_path) == ['out']  # our partial is gone
  assert open(os.path.join(out, 'a') if theirs == 'dir' else out).read() == 'theirs'
  os.rename(out, str(tmp_path / 'gone'))
  with atomic.atomic_path(out, overwrite=False) as tmp:  # no competitor: published
    make(tmp, ours, 'ours')
  assert open(os.path.join(out, 'a') if ours == 'dir' else out).read() == 'ours'
  assert sorted(os.listdir(tmp_path)) == ['gone', 'out']


def test_stale_partials_are_those_of_dead_processes(tmp_path):
  out = str(tmp_path / 'out.zarr')
  dead = 2**22 + 12345  # above the default pid_max (2**22): no such process
  for name in (f'out.zarr.partial-{dead}', f'out.zarr.partial-{dead}.zarr',
               f'out.zarr.partial-{os.getppid()}', 'out.zarr.partial-x', 'out.zarr'):
    os.makedirs(tmp_path / name)
  assert atomic.stale_partials(out) == [f'{out}.partial-{dead}', f'{out}.partial-{dead}.zarr']
