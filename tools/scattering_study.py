"""Scattering transform study: rotation error and energy captured per depth, tiling.

    python tools/scattering_study.py              # about 2 minutes on 2 CPU cores

Prints markdown tables:
1. tiling: max |phi_l^2 + sum_j sum_n |psi^j_ln|^2 (weighted) - 1| over l for
   several (lmax, J, N, lambda);
2. per configuration and depth: rotation error ||S(R f) - R S(f)|| / ||S(f)||
   (R S(f): the output analysed on the coarse grid, rotated with sht.rotate),
   median and max over Haar-random rotations x white band-limited random
   fields, and the same for a smooth field (random, spectrum C_l ~ (1+l)^-3,
   mean removed); energy captured up to each depth, sum_{d' <= d} ||S_d'||^2 /
   ||f||^2 (mean over fields).
Float64 throughout, so the errors are the method's (modulus aliasing), not
rounding.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import sht
from sphere_plugin.testing import equivariance as eq
from sphere_plugin.nn import scattering
from sphere_plugin.nn import scattering_wavelets as wavelets

_ROTATIONS = flags.DEFINE_integer('rotations', 3, 'Random rotations per configuration.')
_FIELDS = flags.DEFINE_integer('fields', 2, 'White random fields per configuration.')
_QUICK = flags.DEFINE_bool('quick', False, 'Only the default configuration.')


def _real(a, lmax):
  m = np.arange(-lmax, lmax + 1)
  return (a + (-1.0) ** m * np.conj(a[..., ::-1])) / 2


def _inputs(lmax, n_white, seed=0):
  """(n_white + 1, lmax+1, 2lmax+1) coefficients of real fields; the last is the smooth one."""
  rng = np.random.default_rng(seed)
  l = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None]
  valid = np.abs(m) <= l
  z = rng.normal(size=(n_white + 1, lmax + 1, 2 * lmax + 1)) + 1j * rng.normal(
      size=(n_white + 1, lmax + 1, 2 * lmax + 1))
  z = _real(z * valid, lmax)
  z[-1] *= (1.0 + l) ** -1.5  # C_l ~ (1 + l)^-3
  z[-1, 0] = 0  # mean removed
  return jnp.asarray(z)


def _study(grid, lmax, rotations, n_white, **kw):
  t = scattering.ScatteringTransform(grid, lmax=lmax, **kw)
  a = _inputs(t.lmax, n_white)
  f = sht.inverse(a, t.input_grid)
  c = t.coefficients(f)
  lc = t.phi_lmax
  s = sht.forward(t(f), t.coarse_grid, lc)  # the output, analysed on the coarse grid
  depths = np.array([len(p) for p in t.paths])
  errs = np.zeros((rotations, len(a), t.depth + 1))
  for r in range(rotations):
    angles = eq.random_rotation(jax.random.key(100 + r))
    cr = t.coefficients(sht.inverse(sht.rotate(a, *angles), t.input_grid))
    ref = sht.rotate(s, *angles)
    for d in range(t.depth + 1):
      sel = depths == d
      num = jnp.linalg.norm((cr - ref)[:, sel].reshape(len(a), -1), axis=-1)
      errs[r, :, d] = num / jnp.linalg.norm(c[:, sel].reshape(len(a), -1), axis=-1)
  e = np.asarray(jnp.sum(jnp.abs(c) ** 2, axis=(-2, -1)))  # (fields, P)
  total = np.asarray(jnp.sum(jnp.abs(t.input_coefficients(f)) ** 2, axis=(-2, -1)))
  per_depth = np.stack([e[:, depths == d].sum(-1) for d in range(t.depth + 1)], -1)
  captured = np.cumsum(per_depth, -1) / total[:, None]
  return t, errs, captured


def main(argv):
  del argv
  started = time.time()
  rows = []
  for lmax, J, N, lam in [(31, 3, 1, 2.0), (31, 5, 2, 2.0), (63, 4, 3, 2.0), (127, 6, 4, 2.0),
                          (40, 6, 2, 1.5)]:
    rows.append((lmax, J, N, lam, float(np.abs(wavelets.tiling(lmax, J, N, lam) - 1).max())))
  print('### Tiling (admissibility) error\n')
  print('| lmax | J | N | lambda | max_l \\|sum - 1\\| |\n|---|---|---|---|---|')
  for r in rows:
    print('| %d | %d | %d | %g | %.1e |' % r)
  print()

  configs = [('gaussian:64x32', dict(J=3, N=2, oversampling=6.0), 'default')]
  if not _QUICK.value:
    configs += [
        ('gaussian:64x32', dict(J=3, N=2, oversampling=2.0), ''),
        ('gaussian:64x32', dict(J=3, N=2, oversampling=4.0), ''),
        ('gaussian:64x32', dict(J=3, N=2, oversampling=8.0), ''),
        ('gaussian:64x32', dict(J=3, N=1, oversampling=6.0), ''),
        ('gaussian:64x32', dict(J=3, N=1, oversampling=8.0), ''),
        ('gaussian:64x32', dict(J=3, N=3, oversampling=6.0), ''),
        ('gaussian:64x32', dict(J=3, N=2, oversampling=6.0, pooling='mean', n_directions=8), ''),
        ('healpix:16', dict(J=3, N=2, oversampling=6.0), ''),
        ('gaussian:128x64', dict(J=4, N=2, oversampling=6.0), ''),
    ]
  print('### Rotation error and energy captured per depth (float64)\n')
  print(f'Rotation error: median / max over {_ROTATIONS.value} random rotations x '
        f'{_FIELDS.value} white fields; smooth: the C_l ~ (1+l)^-3 field (max over rotations). '
        'Energy: fraction of ||f||^2 in S0..S_d (white / smooth).\n')
  print('| input -> output | J | N | oversampling | pooling | depth | rotation error (white) '
        '| rotation error (smooth) | energy captured (white / smooth) |')
  print('|---|---|---|---|---|---|---|---|---|')
  for grid, kw, note in configs:
    t0 = time.time()
    t, errs, captured = _study(grid, None, _ROTATIONS.value, _FIELDS.value, **kw)
    pooling = t.pooling + (f' ({t.n_directions})' if t.pooling == 'mean' else '')
    for d in range(t.depth + 1):
      white = errs[:, :-1, d].ravel()
      print(f'| {t.input_grid} -> {t.coarse_grid} | {t.J} | {t.N} | {t.oversampling:g} '
            f'| {pooling} | {d} | {np.median(white):.1e} / {white.max():.1e} '
            f'| {errs[:, -1, d].max():.1e} | {captured[:-1, d].mean():.3f} / '
            f'{captured[-1, d]:.3f} |' + (f' {note}' if note and d == 0 else ''))
    print(f'<!-- {grid} {kw}: {time.time() - t0:.1f} s -->')
  print(f'\n(total {time.time() - started:.0f} s)')


if __name__ == '__main__':
  jax.config.update('jax_enable_x64', True)
  app.run(main)
