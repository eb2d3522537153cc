"""HEALPix indexing: NESTED <-> RING permutations and point location (RING).

The one home of HEALPix pixel arithmetic (numpy only); `sphere_plugin.grids`
re-exports `nested_to_ring` / `ring_to_nested`. Tested against healpy.
"""

from __future__ import annotations

import functools

import numpy as np


def _compact_bits(v: np.ndarray) -> np.ndarray:
  """Takes every other bit of v (bits 0, 2, 4, ...) and packs them."""
  v = v & 0x5555555555555555
  v = (v | (v >> 1)) & 0x3333333333333333
  v = (v | (v >> 2)) & 0x0F0F0F0F0F0F0F0F
  v = (v | (v >> 4)) & 0x00FF00FF00FF00FF
  v = (v | (v >> 8)) & 0x0000FFFF0000FFFF
  v = (v | (v >> 16)) & 0x00000000FFFFFFFF
  return v


_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7])


def _check_nested_nside(nside: int) -> None:
  if nside < 1 or nside & (nside - 1):
    raise ValueError(f'NESTED order needs nside a power of two, got {nside}')


@functools.lru_cache(maxsize=16)
def _nested_to_ring_table(nside: int) -> np.ndarray:
  _check_nested_nside(nside)
  ns = np.int64(nside)
  npface = ns * ns
  nest = np.arange(12 * npface, dtype=np.int64)
  face = nest // npface
  ipf = nest % npface
  ix = _compact_bits(ipf)
  iy = _compact_bits(ipf >> 1)
  jr = _JRLL[face] * ns - ix - iy - 1  # ring number 1..4ns-1
  nr = np.where(jr < ns, jr, np.where(jr > 3 * ns, 4 * ns - jr, ns))
  kshift = np.where((jr < ns) | (jr > 3 * ns), 0, (jr - ns) & 1)
  n_before = np.where(jr < ns, 2 * jr * (jr - 1),
                      np.where(jr > 3 * ns, 12 * npface - 2 * (4 * ns - jr + 1) * (4 * ns - jr),
                               2 * ns * (ns - 1) + (jr - ns) * 4 * ns))
  jp = (_JPLL[face] * nr + ix - iy + 1 + kshift) // 2
  jp = np.where(jp > 4 * nr, jp - 4 * nr, jp)
  jp = np.where(jp < 1, jp + 4 * nr, jp)
  return (n_before + jp - 1).astype(np.int64)


def nested_to_ring(nside: int) -> np.ndarray:
  """Permutation p with ring_index = p[nested_index], shape (12 nside^2,).

  `map_ring[p] = map_nested` reorders a NESTED map to RING; equivalently
  `map_nested = map_ring[p]`.
  """
  return _nested_to_ring_table(nside).copy()


def ring_to_nested(nside: int) -> np.ndarray:
  """Permutation q with nested_index = q[ring_index], shape (12 nside^2,).

  `map_ring = map_nested[q]` reorders a NESTED map to RING order.
  """
  p = _nested_to_ring_table(nside)
  q = np.empty_like(p)
  q[p] = np.arange(p.size)
  return q


def ang2pix_ring(nside: int, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
  """HEALPix RING index of the pixel containing each point.

  The formulas of Gorski et al. (2005), in the equal-area chart coordinates that
  `sphere_plugin.regrid.conservative` also uses;
  points on pixel edges go where healpy.ang2pix puts them (tested on pixel
  corners and lat-lon grid nodes). As with any z-based formula,
  sqrt(1 - |z|) limits the precision very near the poles.

  Args:
    nside: HEALPix resolution.
    z: cos(colatitude) = sin(latitude), any shape broadcastable with phi.
    phi: longitude in radians, any real value (reduced modulo 2 pi).

  Returns:
    int64 array of the broadcast shape.
  """
  n = int(nside)
  z, phi = np.broadcast_arrays(np.asarray(z, np.float64), np.asarray(phi, np.float64))
  tt = np.mod(phi * (2 / np.pi), 4.0)  # quarter turns in [0, 4)
  tt = np.where(tt >= 4.0, tt - 4.0, tt)
  # Equatorial zone, chart 0: a = floor(N x); c = N - 1 - floor(N y).
  u, w = n * (0.5 + tt), n * z * 0.75
  a = np.floor(u - w).astype(np.int64)
  c = np.floor(u + w).astype(np.int64)
  s = a - c + n  # ring number minus N, 0..2N
  shift = 1 - s % 2  # rings N, N+2, ... start half a pixel east of phi = 0
  jj = ((a + c - n + 1 - shift) // 2) % (4 * n)
  pix_eq = 2 * n * (n - 1) + 4 * n * s + jj
  # Polar caps: square (a, b) = floor(N (x, y)) of the quadrant's chart, ring
  # i = a + b + 1. Its index in the ring, k i + a, equals floor(tt i).
  tp = tt - np.floor(tt)
  sigma = n * np.sqrt(3 * (1 - np.abs(z)))
  a = np.floor(tp * sigma).astype(np.int64)
  b = np.floor((1 - tp) * sigma).astype(np.int64)
  i = np.maximum(np.minimum(a + b + 1, n), 1)
  jj = np.minimum(np.floor(tt * i).astype(np.int64), 4 * i - 1)
  pix_cap = np.where(z > 0, 2 * i * (i - 1) + jj, 12 * n * n - 2 * i * (i + 1) + jj)
  return np.where(np.abs(z) <= 2 / 3, pix_eq, pix_cap)
