"""The Beam helpers that need no Beam: the extra's error, chunk offsets, publishing."""

import os
import sys

import pytest

from sphere_plugin.beam import pipelines


def test_without_the_extra_one_import_error_line_names_it(monkeypatch):
  monkeypatch.setitem(sys.modules, 'apache_beam', None)
  with pytest.raises(ImportError, match=r"beam extra: pip install 'sphere_plugin\[beam\]'"):
    pipelines.require()


def test_chunk_offsets_cover_every_chunk_once():
  got = pipelines.chunk_offsets({'time': 5, 'level': 3, 'pixel': 48}, {'time': 2, 'level': 2})
  assert got == [{'time': t, 'level': l} for t in (0, 2, 4) for l in (0, 2)]
  assert pipelines.chunk_offsets({'time': 5}, {}) == [{}]


@pytest.mark.parametrize('url', [False, True])
def test_published_output_appears_only_on_success(tmp_path, url):
  final = str(tmp_path / 'out.zarr')
  name = 'file://' + final if url else final
  with pytest.raises(RuntimeError, match='pipeline failed'):
    with pipelines.published_output(name) as tmp:
      os.makedirs(tmp.replace('file://', ''))
      open(os.path.join(tmp.replace('file://', ''), 'chunk'), 'w').close()
      raise RuntimeError('pipeline failed')
  assert os.listdir(tmp_path) == []  # no output, no partial
  with pipelines.published_output(name) as tmp:
    os.makedirs(tmp.replace('file://', ''))
    open(os.path.join(tmp.replace('file://', ''), 'chunk'), 'w').close()
  assert os.listdir(tmp_path) == ['out.zarr'] and os.listdir(final) == ['chunk']
  with pytest.raises(FileExistsError, match='--overwrite'):
    with pipelines.published_output(name):
      pass
