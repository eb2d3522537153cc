"""Peak memory of a Beam (DirectRunner) regrid does not grow with the dataset's length.

    .venv/bin/python tools/beam_memory.py                  # 100 vs 800 time steps
    .venv/bin/python tools/beam_memory.py --times=100,800 --grid=healpix:64 --local

Writes an ERA5-like zarr (equiangular_with_poles:240x121, 1.5 degrees;
temperature, u and v wind on 3 levels, float32) of each length, regrids it
with `tools/regrid.py --runner=DirectRunner --chunk=time=8` in a fresh child
process and prints the child's own peak RSS (`os.wait4`'s ru_maxrss), the
input size and the wall time; `--local` also runs the local streaming path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import pandas as pd
import xarray as xr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sphere_plugin import grids  # pylint: disable=g-import-not-at-top,wrong-import-position

_TIMES = flags.DEFINE_list('times', ['100', '800'], 'Dataset lengths (time steps).')
_GRID = flags.DEFINE_string('grid', 'healpix:64', 'Target grid.')
_CHUNK = flags.DEFINE_string('chunk', 'time=8', 'Chunk of each work item.')
_LOCAL = flags.DEFINE_bool('local', False, 'Also measure the local streaming path.')
_RUNNER_ARGS = flags.DEFINE_list('runner_args', [], 'Extra DirectRunner options.')


def make_input(path: str, times: int) -> int:
  """An ERA5-like zarr written time chunk by time chunk; returns its data bytes."""
  grid = grids.equiangular_with_poles(240, 121)
  lat, lon = grid.latitudes[::-1], grid.longitudes
  la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing='ij')
  rng = np.random.default_rng(0)
  levels = np.array([250, 500, 850])
  nbytes = 0
  for start in range(0, times, 48):  # whole zarr chunks of 8
    n = min(48, times - start)
    shape = (n, levels.size) + la.shape
    base = 250 + 30 * np.cos(la) ** 2
    ds = xr.Dataset(
        {'temperature': (('time', 'level', 'latitude', 'longitude'),
                         (base + rng.normal(size=shape)).astype(np.float32)),
         'u_component_of_wind': (('time', 'level', 'latitude', 'longitude'),
                                 (10 * np.cos(la) * np.cos(lo) + rng.normal(size=shape)
                                  ).astype(np.float32)),
         'v_component_of_wind': (('time', 'level', 'latitude', 'longitude'),
                                 rng.normal(size=shape).astype(np.float32))},
        coords={'time': pd.date_range('2020-01-01', periods=times, freq='6h')[start:start + n],
                'level': levels, 'latitude': lat, 'longitude': lon})
    nbytes += ds.nbytes
    if start == 0:
      ds.chunk({'time': 8}).to_zarr(path, mode='w', zarr_format=2)
    else:
      ds.chunk({'time': 8}).to_zarr(path, append_dim='time')
  return nbytes


def measure(args: list[str], log: str) -> tuple[float, float]:
  """Runs tools/regrid.py in a child; returns (its own peak RSS in MiB, seconds)."""
  started = time.time()
  with open(log, 'w') as err:
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tools', 'regrid.py'), *args],
                            stdout=err, stderr=err, env={**os.environ, 'PYTHONPATH': ROOT})
    _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage alone
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    with open(log) as f:
      raise SystemExit(f.read())
  return usage.ru_maxrss / 1024, time.time() - started


def main(argv):
  del argv
  tmp = tempfile.mkdtemp(prefix='beam_memory_')
  rows = []
  try:
    for times in sorted(int(t) for t in _TIMES.value):
      src = os.path.join(tmp, f'in_{times}.zarr')
      nbytes = make_input(src, times)
      paths = [('beam DirectRunner', ['--runner=DirectRunner', *(
          f'--{a}' if not a.startswith('--') else a for a in _RUNNER_ARGS.value)])]
      if _LOCAL.value:
        paths.append(('local streaming', []))
      for label, extra in paths:
        out = os.path.join(tmp, f'out_{times}_{len(rows)}.zarr')
        rss, seconds = measure([f'--input={src}', f'--output={out}', f'--grid={_GRID.value}',
                                f'--chunk={_CHUNK.value}', *extra], out + '.log')
        rows.append((label, times, nbytes / 2**20, rss, seconds))
        print(f'{label}: {times} time steps ({nbytes / 2**20:.0f} MiB of input) -> peak RSS '
              f'{rss:.0f} MiB in {seconds:.1f} s', flush=True)
        shutil.rmtree(out, ignore_errors=True)
      shutil.rmtree(src, ignore_errors=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  print('\n| path | time steps | input MiB | peak RSS MiB | wall s |\n|---|---|---|---|---|')
  for label, times, mib, rss, seconds in rows:
    print(f'| {label} | {times} | {mib:.0f} | {rss:.0f} | {seconds:.1f} |')


if __name__ == '__main__':
  app.run(main)
