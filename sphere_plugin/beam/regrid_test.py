"""The Beam regrid pipeline (DirectRunner): equal to the local CLI, atomic, per-variable methods.

The input is `sphere_plugin.testing.mixed.mixed_dataset` with 3 levels, precipitation
and a time-only variable: latitude descending, longitudes -180..180, an SST with
NaN over land, winds, a static land-sea mask.
"""

import os
import signal
import subprocess
import sys
import time

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import xarray as xr

pytest.importorskip('apache_beam')
pytest.importorskip('xarray_beam')

from sphere_plugin.beam import regrid as beam_regrid  # pylint: disable=g-import-not-at-top
from sphere_plugin.cli import regrid as cli
from sphere_plugin.testing import mixed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_input(path, times=6):
  ds = mixed.mixed_dataset(times, levels=(250, 500, 850), precipitation=True, co2=True)
  ds.to_zarr(path, mode='w', zarr_format=2)
  return ds


@pytest.fixture(scope='module')
def input_zarr(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('in') / 'wb2.zarr')
  make_input(path)
  return path


def assert_same(got_path, want_path, rtol=1e-7):
  got, want = xr.open_zarr(got_path).load(), xr.open_zarr(want_path).load()
  assert sorted(got.data_vars) == sorted(want.data_vars)
  assert got.attrs == want.attrs
  for name in want.data_vars:
    assert got[name].dims == want[name].dims and got[name].attrs == want[name].attrs, name
    scale = float(np.nanmax(np.abs(want[name].values))) or 1.0
    err = float(np.nanmax(np.abs(got[name].values - want[name].values), initial=0)) / scale
    assert err <= rtol, (name, err)
    np.testing.assert_array_equal(np.isnan(got[name].values), np.isnan(want[name].values))
  for name in want.coords:
    np.testing.assert_array_equal(got[name].values, want[name].values)


@pytest.mark.parametrize('method, grid', [('auto', 'healpix:8'),
                                          ('spectral', 'gaussian:32x16')])
def test_direct_runner_equals_the_local_cli(input_zarr, tmp_path, method, grid):
  local, beam = str(tmp_path / 'local.zarr'), str(tmp_path / 'beam.zarr')
  variables = None if method == 'auto' else ['temperature', 'u_component_of_wind',
                                             'v_component_of_wind', 'co2']
  cli.regrid_file(input_zarr, local, grid, method, chunk='time=4', variables=variables,
                  progress=False)
  chosen = beam_regrid.regrid_zarr(
      input_zarr, beam, grid, method, chunks={'time': 4}, variables=variables,
      pipeline_args=['--direct_num_workers=2', '--direct_running_mode=multi_threading'],
      progress=False)
  assert_same(beam, local)
  assert sorted(os.listdir(tmp_path)) == ['beam.zarr', 'local.zarr']  # no partial left
  if method == 'auto':
    assert chosen['sea_surface_temperature'] == ('conservative', 'missing values')
    assert chosen['total_precipitation_6hr'][0] == 'conservative'
    assert chosen['u_component_of_wind'][0] == chosen['v_component_of_wind'][0] == 'spectral'


def test_chunks_over_time_and_level_give_the_same_output(input_zarr, tmp_path):
  local, beam = str(tmp_path / 'local.zarr'), str(tmp_path / 'beam.zarr')
  cli.regrid_file(input_zarr, local, 'healpix:4', 'auto', chunk='time=2', progress=False)
  beam_regrid.planned.cache_clear()
  beam_regrid.regrid_zarr(input_zarr, beam, 'healpix:4', 'auto', chunks='time=2,level=1',
                          progress=False)
  assert_same(beam, local)
  # 3 x 3 chunks, one worker process here: the input opened and the regridders
  # built once for all of them.
  info = beam_regrid.planned.cache_info()
  assert info.misses == 1 and info.hits >= 9, info
  import zarr  # pylint: disable=g-import-not-at-top
  assert zarr.open_group(beam, mode='r')['temperature'].chunks == (2, 1, 192)


def test_a_failed_pipeline_leaves_no_output_and_a_rerun_works(input_zarr, tmp_path,
                                                               monkeypatch):
  out = str(tmp_path / 'out.zarr')
  real = beam_regrid.regrid_chunk

  def failing(job, offsets):
    if offsets.get('time') == 4:
      raise RuntimeError('worker lost (test)')
    return real(job, offsets)

  monkeypatch.setattr(beam_regrid, 'regrid_chunk', failing)
  with pytest.raises(Exception, match='worker lost'):
    beam_regrid.regrid_zarr(input_zarr, out, 'healpix:4', 'auto', chunks={'time': 2},
                            progress=False)
  assert os.listdir(tmp_path) == []  # neither the output nor its partial
  monkeypatch.setattr(beam_regrid, 'regrid_chunk', real)
  beam_regrid.regrid_zarr(input_zarr, out, 'healpix:4', 'auto', chunks={'time': 2},
                          progress=False)
  assert os.listdir(tmp_path) == ['out.zarr']
  assert xr.open_zarr(out).sizes['time'] == 6
  with pytest.raises(FileExistsError, match='--overwrite'):
    beam_regrid.regrid_zarr(input_zarr, out, 'healpix:4', chunks={'time': 2}, progress=False)


def test_the_cli_runs_the_beam_path_with_runner_options(input_zarr, tmp_path, capsys):
  out = str(tmp_path / 'out.zarr')
  env = {**os.environ, 'PYTHONPATH': ROOT}
  tool = os.path.join(ROOT, 'tools', 'regrid.py')
  proc = subprocess.run(
      [sys.executable, tool, f'--input={input_zarr}', f'--output={out}', '--grid=healpix:4',
       '--method=spectral', '--method_for=sea_surface_temperature=conservative,'
       'total_precipitation_6hr=conservative', '--chunk=time=3', '--runner=DirectRunner',
       '--direct_num_workers=2', '--direct_running_mode=multi_threading'],
      capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr
  assert 'on DirectRunner' in proc.stderr and 'sea_surface_temperature' in proc.stderr
  got = xr.open_zarr(out)
  assert got.sea_surface_temperature.attrs['regrid_method'] == 'conservative'
  assert got.temperature.attrs['regrid_method'] == 'spectral'
  # Runner options without --runner: one line, exit 1, nothing written.
  with flagsaver.flagsaver():
    rest = flags.FLAGS(['regrid', f'--input={input_zarr}', f'--output={tmp_path / "x.zarr"}',
                        '--grid=healpix:4', '--project=p'], known_only=True)
    assert cli.main(rest) == 1
  lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert lines == [
      "regrid: error: unknown arguments ['--project=p']: runner options are taken only with "
      '--runner (e.g. --runner=DataflowRunner --project=...)']
  assert not os.path.exists(tmp_path / 'x.zarr')


def test_sigterm_stops_a_beam_run_in_one_line_and_removes_the_partial(tmp_path):
  path = str(tmp_path / 'in.zarr')
  mixed.mixed_dataset(300).to_zarr(path, mode='w', zarr_format=2)
  out = str(tmp_path / 'out.zarr')
  proc = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tools', 'regrid.py'), f'--input={path}',
       f'--output={out}', '--grid=healpix:4', '--method=nearest', '--chunk=time=1',
       '--runner=DirectRunner'],
      stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT})
  deadline = time.time() + 120
  # The partial appears at set-up (the template), before the workers start.
  while not os.path.exists(f'{out}.partial-{proc.pid}') and proc.poll() is None:
    assert time.time() < deadline, 'no partial output appeared'
    time.sleep(0.02)
  time.sleep(1.0)  # into the chunks
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith('regrid: 300 ')]
  assert lines == ['regrid: stopped by SIGTERM; the partial output was removed'], stderr
  assert sorted(os.listdir(tmp_path)) == ['in.zarr']


def test_nan_first_seen_in_a_later_chunk_is_noted_as_by_the_cli(tmp_path):
  ds = mixed.mixed_dataset(6)
  late = ds.temperature.isel(level=0).copy()
  late[5, :3] = np.nan  # only in the last chunk
  ds['late'] = late
  path = str(tmp_path / 'in.zarr')
  ds.to_zarr(path, mode='w', zarr_format=2)
  local, beam = str(tmp_path / 'local.zarr'), str(tmp_path / 'beam.zarr')
  method = {'late': 'conservative', 'sea_surface_temperature': 'conservative',
            'land_sea_mask': 'conservative'}
  cli.regrid_file(path, local, 'healpix:4', method, chunk='time=2', progress=False)
  beam_regrid.regrid_zarr(path, beam, 'healpix:4', method, chunks={'time': 2}, progress=False)
  assert 'regrid_missing_values' in xr.open_zarr(beam).late.attrs
  assert_same(beam, local)
  assert not any(n.startswith('.sphere') for n in os.listdir(beam))  # markers removed
