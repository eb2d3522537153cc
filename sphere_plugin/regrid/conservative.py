"""Exact cell overlap areas for first-order conservative regridding.

Cells:

* Lat-lon grids: boxes [longitude bounds] x [latitude bounds] with edges
  halfway between adjacent nodes, the outermost latitude edges at the poles,
  and cell 0 centred on longitude 0 (straddling the seam). These are the cells
  of dinosaur's `ConservativeRegridder`.
* HEALPix: the true pixels (Gorski et al. 2005), RING order.

`overlap_areas(source, target)[t, s]` is the spherical area in steradians of
target cell t intersected with source cell s. Dividing each row by the target
cell area (its sum) gives the first-order conservative regridding matrix.

Lat-lon pairs are separable: the overlap of two boxes is (longitude overlap) x
(sin(latitude) overlap), so the matrix is a Kronecker product.

Pairs with HEALPix use that the HEALPix projection is equal-area with straight
pixel edges. In the charts below the area element is (pi/3) dx dy, HEALPix
pixels of nside N are (parts of) the squares [a, a+1]/N x [b, b+1]/N with
integer a, b, and lat-lon box edges are straight lines too (parallels are
lines x + y = const; meridians are lines x - y = const in chart 0 and rays from
the pole x = y = 0 in the polar charts), so every cell is a union of convex
polygons, one per chart it meets:

* chart 0, the equatorial zone |z| <= 2/3 (z = sin(latitude), tt = 2 phi/pi
  the longitude in quarter turns, not reduced): x = (1 - 1.5 z)/2 + tt,
  y = (1 - 1.5 z)/2 - tt. The zone is the strip 0 <= x + y <= 2, periodic
  under (x, y) -> (x + 4, y - 4).
* charts 1-4 (5-8), the quadrants k = 0..3 of the north (south) polar cap
  |z| > 2/3 with t = tt - k in [0, 1]: sigma = sqrt(3 (1 - |z|)),
  x = sigma t, y = sigma (1 - t). The quadrant is the triangle x, y >= 0,
  x + y <= 1.

Pixels of rings N and 3N straddle a zone boundary and are split between a
polar chart and chart 0. One grid is cut into convex pieces (one per cell and
chart); each piece is clipped against every square of the HEALPix lattice of the
other grid that can meet it, with a vectorised Sutherland-Hodgman clipper, in
bounded chunks.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse

from sphere_plugin import grids

# Overlaps below this fraction of the smaller of the two cells are roundoff
# (cells that only touch) and are dropped.
_REL_DROP = 1e-14
# Candidate (piece, lattice square) pairs processed at once; bounds memory.
_CHUNK = 1 << 16


# ----------------------------------------------------------------------------
# Cells.

def _latlon(grid: grids.Grid, what: str) -> grids.LatLonGrid:
  grid = grids.parse(grid)
  if not isinstance(grid, grids.LatLonGrid):
    raise ValueError(f'{what} is defined for lat-lon grids only, got {grid}')
  return grid


def latitude_bounds(grid: grids.Grid | str) -> np.ndarray:
  """Latitude cell edges of a lat-lon grid in radians, ascending.

  Args:
    grid: a lat-lon grid.

  Returns:
    Array of shape (nlat + 1,): -pi/2, the midpoints between adjacent
    latitudes, pi/2 (dinosaur's `ConservativeRegridder` cells).
  """
  lat = np.radians(_latlon(grid, 'latitude_bounds').latitudes)
  return np.concatenate([[-np.pi / 2], (lat[:-1] + lat[1:]) / 2, [np.pi / 2]])


def longitude_bounds(grid: grids.Grid | str) -> np.ndarray:
  """Longitude cell edges of a lat-lon grid in radians, ascending.

  Args:
    grid: a lat-lon grid.

  Returns:
    Array of shape (nlon + 1,): (2k - 1) pi / nlon for k = 0..nlon, so cell 0
    is centred on longitude 0 and spans [-pi/nlon, pi/nlon].
  """
  nlon = _latlon(grid, 'longitude_bounds').nlon
  return (2 * np.arange(nlon + 1) - 1) * np.pi / nlon


def _sin_difference(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """sin(hi) - sin(lo), accurate for close arguments."""
  return 2 * np.cos((hi + lo) / 2) * np.sin((hi - lo) / 2)


def cell_areas(grid: grids.Grid | str) -> np.ndarray:
  """Area of every cell in steradians.

  Args:
    grid: any grid.

  Returns:
    float64 array of shape `grid.shape`, summing to 4 pi:
    (2 pi / nlon) (sin(b[j+1]) - sin(b[j])) for lat-lon grids (b the latitude
    bounds), 4 pi / npix for HEALPix.
  """
  grid = grids.parse(grid)
  if isinstance(grid, grids.HealpixGrid):
    return np.full(grid.shape, 4 * np.pi / grid.npix)
  b = latitude_bounds(grid)
  dz = _sin_difference(b[:-1], b[1:])
  return np.broadcast_to(2 * np.pi / grid.nlon * dz, grid.shape).copy()


# ----------------------------------------------------------------------------
# HEALPix indexing.

def _lattice_pixel(nside: int, chart: np.ndarray, a: np.ndarray,
                   b: np.ndarray) -> np.ndarray:
  """RING index of the pixel of square [a, a+1] x [b, b+1] / nside of a chart.

  The square must meet the chart's domain: 0 <= a + b + 1 <= 2 nside in chart
  0; a, b >= 0 and a + b + 1 <= nside in the polar charts.
  """
  n = int(nside)
  s = a + b + 1  # chart 0: ring - N; polar charts: ring counted from the pole
  shift = 1 - s % 2
  pix_eq = 2 * n * (n - 1) + 4 * n * s + ((a - b - shift) // 2) % (4 * n)
  jj = (chart - 1) % 4 * s + a
  pix_cap = np.where(chart <= 4, 2 * s * (s - 1) + jj, 12 * n * n - 2 * s * (s + 1) + jj)
  return np.where(chart == 0, pix_eq, pix_cap)


def _to_chart(z: np.ndarray, phi: np.ndarray):
  """(chart, x, y) of points; chart 0 where |z| <= 2/3 (phi not reduced there)."""
  z, phi = np.broadcast_arrays(np.asarray(z, np.float64), np.asarray(phi, np.float64))
  tt = phi * (2 / np.pi)
  k = np.mod(np.floor(tt), 4)
  t = tt - np.floor(tt)
  sigma = np.sqrt(3 * (1 - np.abs(z)))
  polar = np.abs(z) > 2 / 3
  chart = np.where(polar, 1 + k + 4 * (z < 0), 0).astype(np.int64)
  half = (1 - 1.5 * z) / 2
  x = np.where(polar, sigma * t, half + tt)
  y = np.where(polar, sigma * (1 - t), half - tt)
  return chart, x, y


def _from_chart(chart: np.ndarray, x: np.ndarray, y: np.ndarray):
  """(z, phi) of chart points; inverse of `_to_chart` (phi in chart 0 unreduced)."""
  chart, x, y = np.broadcast_arrays(chart, np.asarray(x, np.float64),
                                    np.asarray(y, np.float64))
  sigma = x + y
  z_cap = np.where(chart <= 4, 1.0, -1.0) * (1 - sigma**2 / 3)
  t = x / np.where(sigma > 0, sigma, 1.0)
  phi_cap = np.pi / 2 * ((chart - 1) % 4 + t)
  eq = chart == 0
  return (np.where(eq, (2 / 3) * (1 - sigma), z_cap),
          np.where(eq, np.pi / 4 * (x - y), phi_cap))


# ----------------------------------------------------------------------------
# Convex pieces of cells in the charts.

@dataclasses.dataclass
class _Pieces:
  """Convex polygons, one per (cell, chart) meeting; k pieces, m vertex slots.

  Attributes:
    cell: flattened cell index, (k,).
    chart: 0 (equatorial), 1-4 (north quadrants), 5-8 (south quadrants), (k,).
    x, y: vertices in chart coordinates, (k, m); slots from `n` on repeat
      vertex 0.
    n: number of vertices, (k,).
  """
  cell: np.ndarray
  chart: np.ndarray
  x: np.ndarray
  y: np.ndarray
  n: np.ndarray


def _concat(parts: list[_Pieces]) -> _Pieces:
  m = max(p.x.shape[1] for p in parts)
  pad = lambda v: np.concatenate([v, np.repeat(v[:, :1], m - v.shape[1], 1)], 1)
  return _Pieces(*(np.concatenate(f) for f in (
      [p.cell for p in parts], [p.chart for p in parts], [pad(p.x) for p in parts],
      [pad(p.y) for p in parts], [p.n for p in parts])))


def _boxes(cell, chart, u0, u1, v0, v1, fx, fy) -> _Pieces:
  """Pieces with corners (fx(u, v), fy(u, v)) for u in (u0, u1), v in (v0, v1)."""
  u = np.stack([u0, u0, u1, u1], 1)
  v = np.stack([v0, v1, v1, v0], 1)
  return _Pieces(cell, chart, fx(u, v), fy(u, v), np.full(cell.shape, 4))


def _latlon_pieces(grid: grids.LatLonGrid) -> _Pieces:
  """Each lat-lon box cut into one piece per chart it meets."""
  nlon, nlat = grid.shape
  lat = latitude_bounds(grid)
  zb = np.sin(lat)
  lon = np.arange(nlon)
  t0, t1 = (4 * lon - 2) / nlon, (4 * lon + 2) / nlon  # quarter turns
  parts = []
  # Chart 0: (S, D) = (x + y, x - y) = (1 - 1.5 z, 2 tt); a rectangle.
  z0, z1 = np.maximum(zb[:-1], -2 / 3), np.minimum(zb[1:], 2 / 3)
  band = np.nonzero(z1 > z0)[0]
  i, j = (g.ravel() for g in np.meshgrid(lon, band, indexing='ij'))
  parts.append(_boxes(i * nlat + j, np.zeros_like(i), 1 - 1.5 * z0[j], 1 - 1.5 * z1[j],
                      2 * t0[i], 2 * t1[i], lambda s, d: (s + d) / 2,
                      lambda s, d: (s - d) / 2))
  # Polar charts: split longitudes at quarter turns; (sigma, t) boxes.
  first = np.floor(t0).astype(np.int64)
  count = np.ceil(t1).astype(np.int64) - first
  sub_lon = np.repeat(lon, count)
  quarter = np.repeat(first, count) + np.arange(count.sum()) - np.repeat(
      np.cumsum(count) - count, count)
  lo = np.maximum(t0[sub_lon], quarter) - quarter
  hi = np.minimum(t1[sub_lon], quarter + 1) - quarter
  # sigma = sqrt(3 (1 - |z|)) = sqrt(6) sin(colatitude / 2), capped at the zone.
  sig = lambda colat: np.minimum(np.sqrt(6) * np.sin(np.clip(colat, 0, np.pi) / 2), 1.0)
  for south in (False, True):
    if south:
      sig_near, sig_far = sig(np.pi / 2 + lat[:-1]), sig(np.pi / 2 + lat[1:])
    else:
      sig_near, sig_far = sig(np.pi / 2 - lat[1:]), sig(np.pi / 2 - lat[:-1])
    band = np.nonzero(sig_far > sig_near)[0]
    q, j = (g.ravel() for g in np.meshgrid(np.arange(sub_lon.size), band, indexing='ij'))
    parts.append(_boxes(sub_lon[q] * nlat + j, 1 + quarter[q] % 4 + 4 * south,
                        sig_near[j], sig_far[j], lo[q], hi[q],
                        lambda s, t: s * t, lambda s, t: s * (1 - t)))
  return _concat(parts)


def _healpix_pieces(nside: int) -> _Pieces:
  """Each HEALPix pixel cut into one piece per chart it meets (squares)."""
  n = int(nside)
  parts = []
  # Chart 0: squares with 0 <= a + b + 1 <= 2N, one period in a - b.
  s, jj = (g.ravel() for g in np.meshgrid(np.arange(2 * n + 1), np.arange(4 * n),
                                          indexing='ij'))
  d = 2 * jj + 1 - s % 2
  a, b = (s - 1 + d) // 2, (s - 1 - d) // 2
  parts.append((np.zeros_like(a), a, b))
  # Polar charts: a, b >= 0, a + b + 1 <= N.
  a, b = np.nonzero(np.add.outer(np.arange(n), np.arange(n)) < n)
  for chart in range(1, 9):
    parts.append((np.full_like(a, chart), a, b))
  chart, a, b = (np.concatenate(f) for f in zip(*parts))
  sq = _boxes(_lattice_pixel(n, chart, a, b), chart, a, a + 1, b, b + 1,
              lambda u, v: u.astype(np.float64), lambda u, v: v.astype(np.float64))
  # Cut squares at the zone boundaries (x + y = 0 or 2N in chart 0, N in caps).
  x, y, cnt = sq.x, sq.y, sq.n
  eq = (chart == 0)[:, None]
  x, y, cnt = _clip(x, y, cnt, np.where(eq, -(x + y), x + y - n))
  x, y, cnt = _clip(x, y, cnt, np.where(eq, x + y - 2 * n, -1.0))
  return _Pieces(sq.cell, chart, x / n, y / n, cnt)


# ----------------------------------------------------------------------------
# Clipping.

def _clip(x: np.ndarray, y: np.ndarray, n: np.ndarray, f: np.ndarray):
  """Clips convex polygons to the half-planes f <= 0 (Sutherland-Hodgman).

  Args:
    x, y: vertices, (k, m); slots from n on repeat vertex 0.
    n: vertex counts, (k,).
    f: a linear function of (x, y) at the vertices, (k, m).

  Returns:
    (x, y, n) of the clipped polygons in the same layout, (k, m'), m' <= m + 1
    for convex input.
  """
  k, m = x.shape
  slot = np.arange(m)
  valid = slot < n[:, None]
  inside = f <= 0
  xn, yn, fn = (np.roll(v, -1, axis=1) for v in (x, y, f))
  cross = valid & (inside != (fn <= 0))
  t = f / np.where(cross, f - fn, 1.0)
  # Each edge emits its first vertex if inside, then the crossing if any.
  emit = np.stack([valid & inside, cross], 2).reshape(k, 2 * m)
  ex = np.stack([x, x + t * (xn - x)], 2).reshape(k, 2 * m)[emit]
  ey = np.stack([y, y + t * (yn - y)], 2).reshape(k, 2 * m)[emit]
  pos = np.cumsum(emit, axis=1)
  count = pos[:, -1]
  width = max(int(count.max(initial=0)), 1)
  dest = (np.arange(k)[:, None] * width + pos - 1)[emit]
  out_x, out_y = np.zeros(k * width), np.zeros(k * width)
  out_x[dest], out_y[dest] = ex, ey
  out_x, out_y = out_x.reshape(k, width), out_y.reshape(k, width)
  pad = np.arange(width) >= count[:, None]
  return (np.where(pad, out_x[:, :1], out_x), np.where(pad, out_y[:, :1], out_y),
          count)


def _shoelace(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Areas of polygons (k, m) padded with vertex 0."""
  x, y = x - x[:, :1], y - y[:, :1]  # about vertex 0: no cancellation
  return 0.5 * np.abs(np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1))


def _lattice_overlaps(pieces: _Pieces, piece_area: np.ndarray, nside: int):
  """Overlaps of pieces with the pixels of a HEALPix lattice.

  Args:
    pieces: convex pieces of the cells of one grid.
    piece_area: area of each piece's whole cell, (k,).
    nside: the HEALPix grid whose pixels the pieces are intersected with.

  Returns:
    (pixel, cell, area) arrays, possibly with repeated (pixel, cell) pairs.
  """
  n = int(nside)
  x, y = pieces.x * n, pieces.y * n  # lattice squares are now unit squares
  ax = np.floor(x.min(1)).astype(np.int64)
  ay = np.floor(y.min(1)).astype(np.int64)
  nx = np.ceil(x.max(1)).astype(np.int64) - ax
  ny = np.ceil(y.max(1)).astype(np.int64) - ay
  s_lo, s_hi = (x + y).min(1), (x + y).max(1)
  d_lo, d_hi = (x - y).min(1), (x - y).max(1)
  count = nx * ny
  ends = np.cumsum(count)
  pixel_area = 4 * np.pi / (12 * n * n)
  out = []
  start = 0
  while start < count.size:
    stop = max(int(np.searchsorted(ends, ends[start] - count[start] + _CHUNK, 'right')),
               start + 1)
    c = count[start:stop]
    rep = np.repeat(np.arange(start, stop), c)
    w = np.arange(rep.size) - np.repeat(np.cumsum(c) - c, c)
    a = ax[rep] + w // ny[rep]
    b = ay[rep] + w % ny[rep]
    chart = pieces.chart[rep]
    # The square [a, a+1] x [b, b+1] spans a + b .. a + b + 2 in x + y and
    # a - b - 1 .. a - b + 1 in x - y; it must lie in the chart's domain.
    keep = ((a + b < s_hi[rep]) & (a + b + 2 > s_lo[rep]) &
            (a - b - 1 < d_hi[rep]) & (a - b + 1 > d_lo[rep]) &
            np.where(chart == 0, (a + b >= -1) & (a + b < 2 * n),
                     (a >= 0) & (b >= 0) & (a + b < n)))
    rep, a, b, chart = rep[keep], a[keep], b[keep], chart[keep]
    px, py, cnt = x[rep] - a[:, None], y[rep] - b[:, None], pieces.n[rep]
    px, py, cnt = _clip(px, py, cnt, -px)
    px, py, cnt = _clip(px, py, cnt, px - 1)
    px, py, cnt = _clip(px, py, cnt, -py)
    px, py, cnt = _clip(px, py, cnt, py - 1)
    area = _shoelace(px, py) * pixel_area
    keep = area > _REL_DROP * np.minimum(piece_area[rep], pixel_area)
    out.append((_lattice_pixel(n, chart[keep], a[keep], b[keep]),
                pieces.cell[rep[keep]], area[keep]))
    start = stop
  return tuple(np.concatenate(v) for v in zip(*out))


# ----------------------------------------------------------------------------
# Lat-lon pairs.

def _longitude_overlaps(n_target: int, n_source: int) -> scipy.sparse.coo_matrix:
  """Longitude overlap lengths in radians, (n_target, n_source)."""
  period = math.lcm(2 * n_target, 2 * n_source)  # edges are integers in 2pi/period
  edges = lambda n: (2 * np.arange(n) - 1) * (period // (2 * n)) % period
  cut = np.unique(np.concatenate([edges(n_target), edges(n_source)]))
  length = np.diff(np.append(cut, cut[0] + period))
  cell = lambda n: (cut + period // (2 * n)) // (period // n) % n
  return scipy.sparse.coo_matrix(
      (length * (2 * np.pi / period), (cell(n_target), cell(n_source))),
      shape=(n_target, n_source))


def _latitude_overlaps(target: grids.LatLonGrid,
                       source: grids.LatLonGrid) -> scipy.sparse.coo_matrix:
  """Overlaps in sin(latitude), (nlat_target, nlat_source)."""
  bt, bs = latitude_bounds(target), latitude_bounds(source)
  cut = np.unique(np.concatenate([bt, bs]))
  lo, hi = cut[:-1], cut[1:]
  mid = (lo + hi) / 2
  jt = np.searchsorted(bt, mid) - 1
  js = np.searchsorted(bs, mid) - 1
  dz = _sin_difference(lo, hi)
  keep = dz > _REL_DROP * np.minimum(_sin_difference(bt[jt], bt[jt + 1]),
                                     _sin_difference(bs[js], bs[js + 1]))
  return scipy.sparse.coo_matrix((dz[keep], (jt[keep], js[keep])),
                                 shape=(target.nlat, source.nlat))


# ----------------------------------------------------------------------------
# Public entry point.

def overlap_areas(source: grids.Grid | str,
                  target: grids.Grid | str) -> scipy.sparse.csr_matrix:
  """Exact spherical areas of the intersections of target and source cells.

  Args:
    source: any grid (or its text form).
    target: any grid (or its text form).

  Returns:
    float64 CSR matrix of shape (target_size, source_size), sizes the products
    of the grids' shapes (flattened C-order cell indices), with entry [t, s] the
    area in steradians of target cell t intersected with source cell s. Row
    sums are the target cell areas, column sums the source cell areas; overlaps
    below 1e-14 of the smaller cell (roundoff where cells touch) are left out.
  """
  source, target = grids.parse(source), grids.parse(target)
  size = lambda g: int(np.prod(g.shape))
  shape = (size(target), size(source))
  if isinstance(source, grids.LatLonGrid) and isinstance(target, grids.LatLonGrid):
    lon = _longitude_overlaps(target.nlon, source.nlon)
    return scipy.sparse.kron(lon, _latitude_overlaps(target, source), format='csr')
  # Cut one grid into pieces, intersect them with the other's HEALPix lattice:
  # the lat-lon grid, or the coarser HEALPix grid, gives the pieces.
  swap = isinstance(source, grids.HealpixGrid) and (
      isinstance(target, grids.LatLonGrid) or target.nside < source.nside)
  pieced, lattice = (target, source) if swap else (source, target)
  pieces = (_latlon_pieces(pieced) if isinstance(pieced, grids.LatLonGrid)
            else _healpix_pieces(pieced.nside))
  pixel, cell, area = _lattice_overlaps(
      pieces, cell_areas(pieced).ravel()[pieces.cell], lattice.nside)
  rows, cols = (cell, pixel) if swap else (pixel, cell)
  return scipy.sparse.coo_matrix((area, (rows, cols)), shape=shape).tocsr()
