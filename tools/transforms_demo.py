"""Transforms and spectral regridding on a smooth test atmosphere (an example).

Run from the repository root: `.venv/bin/python tools/transforms_demo.py`. It builds a smooth, band-limited
test atmosphere (a Rossby-Haurwitz-like height field plus a wind field from
its gradient and a rotational part), then:

1. analyses it on gaussian:128x64 and prints the spectrum's energy by degree;
2. regrids it spectrally to equiangular_with_poles:128x65 and healpix:32 and
   back, printing the round-trip error on each grid (spin 0 and the spin-1 wind);
3. rotates it by Euler angles and checks the rotation against a direct
   evaluation of the rotated field;
4. prints transform timings at this size.

Flags: --lmax (default 31), --batch (fields per timing, default 16).
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np
from scipy.spatial.transform import Rotation

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin.regrid import points

_LMAX = flags.DEFINE_integer('lmax', 31, 'Band limit of the demo fields.')
_BATCH = flags.DEFINE_integer('batch', 16, 'Fields per timing call.')


def _xyz(grid):
  """Unit vectors and (east, north) frames of the pixels, each (*grid.shape, 3)."""
  east, north = points.east_north(grid)
  return tuple(a.reshape(grid.shape + (3,)) for a in (points.xyz(grid), east, north))


def _fields(grid, rot=np.eye(3)):
  """Height-like scalar and a wind-like spin-1 field, exactly band-limited."""
  x, east, north = _xyz(grid)
  xr = x @ rot  # evaluate f(R^-1 x)
  height = 5500 + 300 * xr[..., 2] ** 2 - 200 * (xr[..., 0] ** 3 - 3 * xr[..., 0] * xr[..., 1] ** 2)
  q = np.array([[1.0, 0.3, 0.0], [0.3, -0.5, 0.2], [0.0, 0.2, -0.5]])
  n = np.array([0.0, 0.0, 15.0])
  qx = xr @ q
  v_body = 10 * (qx - np.sum(xr * qx, -1, keepdims=True) * xr) + np.cross(xr, n)
  v = v_body @ rot.T  # rotate the vectors with the field
  wind = sht.vector_to_spin(np.sum(v * east, -1), np.sum(v * north, -1))
  return height, wind


def _rel(a, b):
  return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


def main(argv):
  del argv
  lmax = _LMAX.value
  source = grids.gaussian(4 * (lmax + 1), 2 * (lmax + 1))
  targets = [grids.equiangular_with_poles(4 * (lmax + 1), 2 * (lmax + 1) + 1),
             grids.healpix(max(1, (lmax + 1) // 2 * 2))]
  print(f'sphere_plugin demo: jax {jax.__version__} on {jax.default_backend()}, '
        f'source grid {source}, lmax {lmax}')
  height, wind = _fields(source)
  a_h = sht.forward(height, source, lmax)
  a_w = sht.forward(wind, source, lmax, spin=1)
  power = np.sum(np.abs(np.asarray(a_h)) ** 2, axis=-1)
  print('height spectrum (energy by degree l, l <= 4):',
        ' '.join(f'{p:.3g}' for p in power[:5]))

  print('\nspectral regridding, round trip source -> target -> source:')
  for target in targets:
    h_t = sht.inverse(a_h, target)
    w_t = sht.inverse(a_w, target, spin=1)
    exp_h, exp_w = _fields(target)
    back_h = sht.inverse(sht.forward(h_t, target, lmax), source)
    back_w = sht.inverse(sht.forward(w_t, target, lmax, spin=1), source, spin=1)
    print(f'  {str(target):32s} on-target error: height {_rel(h_t, exp_h):.1e}, '
          f'wind {_rel(w_t, exp_w):.1e}; round trip: height {_rel(back_h, height):.1e}, '
          f'wind {_rel(back_w, wind):.1e}')

  angles = (0.4, 1.1, -0.8)
  rot = Rotation.from_euler('ZYZ', angles).as_matrix()
  exp_h, exp_w = _fields(source, rot)
  rot_h = sht.inverse(sht.rotate(a_h, *angles), source)
  rot_w = sht.inverse(sht.rotate(a_w, *angles), source, spin=1)
  print(f'\nrotation by ZYZ {angles}: height error {_rel(rot_h, exp_h):.1e}, '
        f'wind error {_rel(rot_w, exp_w):.1e} (vs the analytically rotated fields)')

  batch = np.broadcast_to(np.asarray(height, np.float32), (_BATCH.value,) + source.shape)
  fwd = jax.jit(lambda x: sht.forward(x, source, lmax))
  inv = jax.jit(lambda a: sht.inverse(a, source))
  t0 = time.perf_counter()
  coeffs = jax.block_until_ready(fwd(batch))
  jax.block_until_ready(inv(coeffs))
  compile_s = time.perf_counter() - t0
  times = {}
  for name, fn, arg in (('forward', fwd, batch), ('inverse', inv, coeffs)):
    best = np.inf
    for _ in range(5):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(arg))
      best = min(best, time.perf_counter() - t0)
    times[name] = best * 1e3
  print(f'\ntimings on {source}, {_BATCH.value} float32 fields: forward '
        f'{times["forward"]:.2f} ms, inverse {times["inverse"]:.2f} ms '
        f'(first call incl. compile {compile_s:.2f} s)')
  print('see tools/benchmark.py for the comparison with ducc0 and s2fft')


if __name__ == '__main__':
  app.run(main)
