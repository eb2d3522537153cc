"""HEALPix analysis: refinement steps (n_iter) against round-trip error.

Run from the repository root:

  .venv/bin/python tools/healpix_convergence.py                  # float32, nside 8..64
  .venv/bin/python tools/healpix_convergence.py --x64 --iters=8,9,10

For each nside and spin (0 and 1) it synthesises a random band-limited
complex field at lmax = 2 nside (the layers' default; 4 fields, seed 0),
analyses it with `sht.forward(..., n_iter=k)` for each k, and prints the
relative error |a' - a| / |a| as a markdown table (the README's table of
refinement steps; the defaults of `sht.default_n_iter` are chosen from it).
About a minute on 2 CPU cores.
"""

from __future__ import annotations

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin.testing import oracles

_NSIDES = flags.DEFINE_list('nsides', ['8', '16', '32', '64'], 'HEALPix nsides.')
_ITERS = flags.DEFINE_list('iters', ['3', '4', '5'], 'Refinement steps to compare.')
_X64 = flags.DEFINE_bool('x64', False, 'Run in float64 (default float32).')


def round_trip_error(nside: int, spin: int, n_iter: int, seed: int = 0) -> float:
  """Relative error of forward(inverse(a)) for random band-limited a at lmax = 2 nside."""
  grid, lmax = grids.healpix(nside), 2 * nside
  a = oracles.random_coeffs(lmax, spin, seed=seed, batch=(4,))
  a = jnp.asarray(a.astype(np.complex128 if jax.config.jax_enable_x64 else np.complex64))
  x = sht.inverse(a, grid, spin=spin, real=False)
  b = sht.forward(x, grid, lmax, spin=spin, n_iter=n_iter)
  return float(jnp.linalg.norm(b - a) / jnp.linalg.norm(a))


def main(argv):
  del argv
  jax.config.update('jax_enable_x64', _X64.value)
  iters = [int(k) for k in _ITERS.value]
  steps = ' / '.join(map(str, iters))
  dtype = 'float64' if _X64.value else 'float32'
  print(f'| nside | spin 0, {dtype}: {steps} steps | spin 1, {dtype}: {steps} |')
  print('|---|---|---|')
  for nside in map(int, _NSIDES.value):
    cells = [' / '.join('%.1e' % round_trip_error(nside, spin, k) for k in iters)
             for spin in (0, 1)]
    print(f'| {nside} | {cells[0]} | {cells[1]} |', flush=True)


if __name__ == '__main__':
  app.run(main)
