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


def test_direct_runner_runs_in_process_without_fetching_prism(monkeypatch):
  """'DirectRunner' must not try Beam's Prism download (no network at run time)."""
  from apache_beam.runners.portability import prism_runner  # pylint: disable=g-import-not-at-top

  tried = []

  def refuse(*args, **kwargs):  # Beam's DirectRunner would catch an error and fall back
    tried.append(args)
    raise RuntimeError('Prism was tried')
  monkeypatch.setattr(prism_runner.PrismRunner, 'run_pipeline', refuse)
  from apache_beam.testing import util  # pylint: disable=g-import-not-at-top
  beam = pipelines.require()[0]
  pipelines.run(lambda p: util.assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: 2 * x),
                                           util.equal_to([2, 4])),
                runner='DirectRunner')
  assert not tried
  assert pipelines.local_runner('DataflowRunner') == 'DataflowRunner'
