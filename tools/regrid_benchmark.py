"""Benchmark of sphere_plugin.regrid against ducc0 (spectral) and dinosaur (conservative).

Run from the repository root:

  .venv/bin/python tools/regrid_benchmark.py                  # the README case
  .venv/bin/python tools/regrid_benchmark.py --fields=16 --target=healpix:32

The case: --fields (64) ERA5-like float32 fields on --source
(equiangular_with_poles:240x121, 1.5 degrees) regridded to --target
(healpix:64). Timed (minimum of --repeats runs, after one warm-up call):

* sphere_plugin spectral: `regrid.regridder(source, target)` on the whole
  (fields, 240, 121) float32 numpy array: JAX analysis (exact on the
  Clenshaw-Curtis rings) + synthesis on HEALPix at lmax = min(source.lmax,
  target.lmax), jitted.
* ducc0 spectral: the same pipeline with `ducc0.sht.analysis_2d` (geometry CC)
  + `ducc0.sht.synthesis` (HEALPix rings), float32, nthreads=--ducc0_threads,
  a Python loop over the fields (ducc0 takes one map per call).
* sphere_plugin conservative / bilinear / nearest: the sparse weights applied
  (scipy, float64 inside) to the same array; weight build times reported apart.
* dinosaur conservative on a lat-lon pair where it applies (source ->
  --latlon_target, gaussian:128x64), beside ours on the same pair.

Prints fields per second and ratios (> 1: sphere_plugin faster), plus the
relative difference between our spectral output and ducc0's.
"""

from __future__ import annotations

import os
import platform
import time

from absl import app
from absl import flags
import numpy as np

_SOURCE = flags.DEFINE_string('source', 'equiangular_with_poles:240x121', 'Source grid.')
_TARGET = flags.DEFINE_string('target', 'healpix:64', 'Target grid.')
_LATLON_TARGET = flags.DEFINE_string('latlon_target', 'gaussian:128x64',
                                     'Lat-lon target of the dinosaur comparison.')
_FIELDS = flags.DEFINE_integer('fields', 64, 'Fields per call.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs; the minimum is reported.')
_DUCC0_THREADS = flags.DEFINE_integer('ducc0_threads', 2, 'nthreads for ducc0.')

DUCC_GEOMETRY = {'gaussian': 'GL', 'equiangular': 'F1', 'equiangular_with_poles': 'CC'}


def _timed(fn, repeats):
  """(first call s, best of `repeats` later calls s)."""
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return first, best


def _ducc_spectral(source, target, lmax, nthreads):
  import ducc0  # pylint: disable=g-import-not-at-top
  info = ducc0.healpix.Healpix_Base(target.nside, 'RING').sht_info()
  geometry = DUCC_GEOMETRY[source.kind]

  def run(x):
    out = np.empty((x.shape[0], target.npix), np.float32)
    for i, field in enumerate(x):
      alm = ducc0.sht.analysis_2d(map=field.T[::-1][None], spin=0, lmax=lmax,
                                  geometry=geometry, nthreads=nthreads)
      ducc0.sht.synthesis(alm=alm, spin=0, lmax=lmax, map=out[i:i + 1], nthreads=nthreads,
                          **info)
    return out
  return run


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax  # pylint: disable=g-import-not-at-top
  from sphere_plugin import grids  # pylint: disable=g-import-not-at-top
  from sphere_plugin import regrid  # pylint: disable=g-import-not-at-top
  from sphere_plugin.regrid import spectral  # pylint: disable=g-import-not-at-top

  source, target = grids.parse(_SOURCE.value), grids.parse(_TARGET.value)
  if not isinstance(target, grids.HealpixGrid) or isinstance(source, grids.HealpixGrid):
    raise app.UsageError('--source must be a lat-lon grid and --target HEALPix')
  n, repeats = _FIELDS.value, _REPEATS.value
  rng = np.random.default_rng(0)
  # Smooth-ish fields: random spectrum falling like l^-2, synthesised by us.
  lmax = spectral.default_lmax(source, target)
  l = np.arange(lmax + 1)[:, None]
  a = (rng.normal(size=(n, lmax + 1, 2 * lmax + 1)) + 1j * rng.normal(
      size=(n, lmax + 1, 2 * lmax + 1))) / (1.0 + l) ** 2
  from sphere_plugin import sht  # pylint: disable=g-import-not-at-top
  x = np.asarray(sht.inverse(a.astype(np.complex64), source, real=False).real, np.float32)

  env = (f'{platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, '
         f'jax {jax.__version__} ({jax.default_backend()})')
  print(f'# Regrid benchmark: {n} fields {source} -> {target} (lmax {lmax}), float32')
  print(f'\nEnvironment: {env}. Minimum of {repeats} runs after a warm-up call.\n')
  rows = []

  t0 = time.perf_counter()
  ours = regrid.regridder(source, target)
  build = time.perf_counter() - t0
  first, best = _timed(lambda: ours(x), repeats)
  ours_spectral = best
  rows.append(('sphere_plugin spectral', build + first - best, best))
  try:
    ducc = _ducc_spectral(source, target, lmax, _DUCC0_THREADS.value)
    _, ducc_best = _timed(lambda: ducc(x), repeats)
    rows.append((f'ducc0 spectral (nthreads={_DUCC0_THREADS.value})', 0.0, ducc_best))
    diff = float(np.linalg.norm(ours(x) - ducc(x)) / np.linalg.norm(ducc(x)))
  except ImportError:
    ducc_best, diff = None, None
  for method in ('conservative', 'bilinear', 'nearest'):
    t0 = time.perf_counter()
    r = regrid.regridder(source, target, method)
    build = time.perf_counter() - t0
    _, best = _timed(lambda: r(x), repeats)
    rows.append((f'sphere_plugin {method}', build, best))

  print('| method | build s | apply s | fields/s | ducc0 spectral / this |')
  print('|---|---|---|---|---|')
  for name, build, best in rows:
    ratio = f'{ducc_best / best:.2f}' if ducc_best else '-'
    print(f'| {name} | {build:.2f} | {best:.4f} | {n / best:.0f} | {ratio} |')
  if diff is not None:
    print(f'\nsphere_plugin spectral vs ducc0: relative difference {diff:.1e}; '
          f'ducc0 time / ours = {ducc_best / ours_spectral:.2f} (> 1: ours faster). '
          '"build s" of our spectral row is table building + jit compile.')

  # Conservative on a lat-lon pair, beside dinosaur's ConservativeRegridder.
  latlon = grids.parse(_LATLON_TARGET.value)
  t0 = time.perf_counter()
  ours_c = regrid.regridder(source, latlon, 'conservative')
  build = time.perf_counter() - t0
  _, ours_best = _timed(lambda: ours_c(x), repeats)
  line = (f'\nConservative {source} -> {latlon}: sphere_plugin {n / ours_best:.0f} fields/s '
          f'(build {build:.2f} s)')
  try:
    from dinosaur import horizontal_interpolation  # pylint: disable=g-import-not-at-top
    dino = horizontal_interpolation.ConservativeRegridder(
        grids.to_dinosaur(source), grids.to_dinosaur(latlon))
    dino_fn = jax.jit(dino)
    xj = jax.numpy.asarray(x)
    _, dino_best = _timed(lambda: jax.block_until_ready(dino_fn(xj)), repeats)
    err = float(np.abs(np.asarray(dino_fn(xj)) - ours_c(x)).max() / np.abs(x).max())
    line += (f'; dinosaur {n / dino_best:.0f} fields/s (jit, float32); dinosaur time / ours = '
             f'{dino_best / ours_best:.2f}; max difference {err:.1e} of the field maximum')
  except ImportError:
    line += '; dinosaur not installed'
  print(line)


if __name__ == '__main__':
  app.run(main)
