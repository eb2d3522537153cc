"""Generate (or reuse) the embedded Held-Suarez weather dataset as a WB2-format zarr.

    python tools/make_dataset.py                      # default: T21 gaussian:64x32
    python tools/make_dataset.py --trajectories=8 --days=60 --output=/tmp/hs.zarr

Simulates a Held-Suarez atmosphere with dinosaur (see
sphere_plugin/data/held_suarez.py), showing a progress bar with an ETA over
simulated days, and writes it as zarr (format 2) through a temporary
`<output>.partial-<pid>` renamed on success. The store is cached: running again
with the same configuration returns at once; a different configuration at an
existing output is an error unless --overwrite. Errors are one line on stderr
with exit status 1.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags

from sphere_plugin.io import errors
from sphere_plugin.weather import held_suarez

_D = held_suarez.Config()
_OUTPUT = flags.DEFINE_string('output', str(held_suarez.DEFAULT_PATH),
                              'Output zarr store (default under .cache/data/ in the repo).')
_GRID = flags.DEFINE_string('grid', _D.grid, "Gaussian nodal grid, e.g. 'gaussian:128x64'.")
_TRUNCATION = flags.DEFINE_integer(
    'truncation', None, 'Spectral truncation T (default: (nlon - 1) // 3, T21 on 64x32).')
_LAYERS = flags.DEFINE_integer('layers', _D.layers, 'Number of sigma layers.')
_DT = flags.DEFINE_float('dt_minutes', None, 'Time step in minutes (default 30 * 21 / T).')
_TRAJECTORIES = flags.DEFINE_integer('trajectories', _D.trajectories,
                                     'Independent trajectories (branches).')
_DAYS = flags.DEFINE_integer('days', _D.days, 'Sampled days per trajectory.')
_SPINUP = flags.DEFINE_integer('spinup_days', _D.spinup_days, 'Spin-up days (one trajectory).')
_BRANCH = flags.DEFINE_integer('branch_days', _D.branch_days,
                               'Days each perturbed branch runs before sampling.')
_LEVELS = flags.DEFINE_list('levels', [str(lv) for lv in _D.levels], 'Pressure levels (hPa).')
_SEED = flags.DEFINE_integer('seed', _D.seed, 'Random seed of the perturbations.')
_INITIAL = flags.DEFINE_enum('initial_state', _D.initial_state, ['equilibrium', 'isothermal'],
                             'Spin-up start: radiative equilibrium or isothermal, at rest.')
_SAMPLE_HOURS = flags.DEFINE_integer('sample_hours', _D.sample_hours, 'Sampling interval (h).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing output.')


def main(argv):
  del argv
  try:
    levels = tuple(int(lv) for lv in _LEVELS.value)
  except ValueError:
    sys.exit(errors.fail('make_dataset', f'--levels must be integers (hPa), got {_LEVELS.value}'))
  config = dict(grid=_GRID.value, truncation=_TRUNCATION.value, layers=_LAYERS.value,
                dt_minutes=_DT.value, trajectories=_TRAJECTORIES.value, days=_DAYS.value,
                spinup_days=_SPINUP.value, branch_days=_BRANCH.value,
                levels=levels, seed=_SEED.value,
                initial_state=_INITIAL.value, sample_hours=_SAMPLE_HOURS.value)
  output = _OUTPUT.value
  t0 = time.perf_counter()
  try:
    cfg = held_suarez.Config(**config).resolved()
    existed = os.path.exists(output)
    path = held_suarez.make_dataset(output, overwrite=_OVERWRITE.value, **config)
  except (ValueError, FileExistsError, FloatingPointError, OSError) as e:
    sys.exit(errors.fail('make_dataset', errors.message(e)))
  elapsed = time.perf_counter() - t0
  attrs = held_suarez._read_attrs(path) or {}  # pylint: disable=protected-access
  samples = cfg.trajectories * cfg.days * 24 // cfg.sample_hours
  if existed and not _OVERWRITE.value:
    print(f'{path}: reused (same configuration, hash {cfg.hash()}) in {elapsed:.2f} s; '
          f'{samples} samples')
    return
  sim_days = cfg.spinup_days + cfg.trajectories * (cfg.branch_days + cfg.days)
  sim = float(attrs.get('simulation_seconds', float('nan')))
  print(f'{path}: {samples} samples ({cfg.trajectories} trajectories x {cfg.days} days, '
        f'every {cfg.sample_hours} h) on {cfg.grid} T{cfg.truncation}; '
        f'{sim_days} simulated days in {sim:.1f} s ({sim / sim_days:.3f} s/day, '
        f'compilation included); total {elapsed:.1f} s')


def run():
  app.run(main)


if __name__ == '__main__':
  run()
