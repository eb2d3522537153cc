"""Bilinear and nearest-neighbour interpolation weights between any two grids.

Both work on the source grid's iso-latitude rings, so one implementation serves
lat-lon grids and HEALPix:

* bilinear: between the two source rings that bracket a target point's
  latitude, and linearly in longitude between the two ring pixels that bracket
  it (periodically: the seam at 0/360 degrees is no different from anywhere
  else). Beyond the outermost ring the pole value is the mean of that ring
  (a virtual ring at the pole). For HEALPix sources this is healpy's scheme
  away from the polar caps' first ring.
* nearest: the source pixel at the smallest great-circle distance (KD-tree on
  unit vectors).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.spatial

from sphere_plugin import grids as grids_lib
from sphere_plugin.regrid import points


def _ascending_rings(grid: grids_lib.Grid):
  """Rings south to north: latitude, nphi, phi0, base, stride (each (nrings,)).

  Pixel k of ring r has flattened index base[r] + stride[r] * k.
  """
  r = grid.rings
  lat = np.pi / 2 - r.theta
  if isinstance(grid, grids_lib.HealpixGrid):
    order = np.argsort(lat, kind='stable')
    return (lat[order], r.nphi[order], r.phi0[order], r.offset[order],
            np.ones_like(order))
  n = lat.size
  return (lat, r.nphi, r.phi0, np.arange(n), np.full(n, grid.nlat))


def _along_ring(ring, lon, rings):
  """Indices (m, 2) and weights (m, 2) of the two ring pixels bracketing lon."""
  _, nphi, phi0, base, stride = rings
  n = nphi[ring]
  t = np.mod(lon - phi0[ring], 2 * np.pi) * n / (2 * np.pi)
  k0 = np.floor(t).astype(np.int64) % n
  frac = t - np.floor(t)
  k1 = (k0 + 1) % n
  idx = np.stack([base[ring] + stride[ring] * k0, base[ring] + stride[ring] * k1], -1)
  return idx, np.stack([1 - frac, frac], -1)


def _whole_ring(ring, rings):
  """Indices and weights of the mean over the given ring (one ring for all rows)."""
  _, nphi, _, base, stride = rings
  k = np.arange(nphi[ring])
  return base[ring] + stride[ring] * k, np.full(k.size, 1.0 / nphi[ring])


def bilinear_weights(source: grids_lib.Grid, target: grids_lib.Grid) -> scipy.sparse.csr_matrix:
  """Bilinear weights, shape (target.size, source.size), rows summing to 1."""
  rings = _ascending_rings(source)
  ring_lat = rings[0]
  nr = ring_lat.size
  lon, lat = points.lonlat(target)
  rows_all, cols_all, vals_all = [], [], []

  def add(rows, idx, w):
    rows_all.append(np.repeat(rows, idx.shape[1]) if idx.ndim == 2 else rows)
    cols_all.append(idx.ravel())
    vals_all.append(w.ravel())

  below = np.searchsorted(ring_lat, lat, side='right') - 1  # ring at or below
  rows = np.arange(lat.size)
  inner = (below >= 0) & (below < nr - 1)
  # Between two rings.
  r0 = below[inner]
  t = (lat[inner] - ring_lat[r0]) / (ring_lat[r0 + 1] - ring_lat[r0])
  for ring, wlat in ((r0, 1 - t), (r0 + 1, t)):
    idx, w = _along_ring(ring, lon[inner], rings)
    add(rows[inner], idx, w * wlat[:, None])
  # Between the outermost ring and the pole (a virtual ring holding its mean).
  for cap, ring, pole in ((below < 0, 0, -np.pi / 2), (below == nr - 1, nr - 1, np.pi / 2)):
    if not cap.any():
      continue
    span = pole - ring_lat[ring]
    t = np.zeros(cap.sum()) if span == 0 else (lat[cap] - ring_lat[ring]) / span
    idx, w = _along_ring(np.full(cap.sum(), ring), lon[cap], rings)
    add(rows[cap], idx, w * (1 - t)[:, None])
    pole_idx, pole_w = _whole_ring(ring, rings)
    n = pole_idx.size
    add(np.repeat(rows[cap], n), np.tile(pole_idx, cap.sum()),
        np.outer(t, pole_w).ravel())
  shape = (lat.size, int(np.prod(source.shape)))
  w = scipy.sparse.coo_matrix(
      (np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
      shape=shape).tocsr()
  w.eliminate_zeros()
  return w


def nearest_weights(source: grids_lib.Grid, target: grids_lib.Grid) -> scipy.sparse.csr_matrix:
  """Nearest-neighbour weights (one 1 per row), shape (target.size, source.size)."""
  tree = scipy.spatial.cKDTree(points.xyz(source))
  _, idx = tree.query(points.xyz(target))
  n = idx.size
  return scipy.sparse.csr_matrix((np.ones(n), (np.arange(n), idx)),
                                 shape=(n, int(np.prod(source.shape))))
