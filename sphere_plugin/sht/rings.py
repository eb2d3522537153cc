"""The longitude step of the transforms: per-ring Fourier analysis and synthesis.

Ring Fourier coefficients are F_m(r) = (1/nphi_r) sum_k x_{r,k} e^{-i m phi_{r,k}}
for the orders m requested, laid out (batch, M, nrings); synthesis is the
adjoint-up-to-scale x_{r,k} = sum_m G_m(r) e^{i m phi_{r,k}}.

Lat-lon grids use one FFT (or a DFT done as a matmul, which is faster on TPU)
along the longitude axis. HEALPix rings are grouped by length: the equatorial
belt is one FFT; each pair of polar-cap rings of equal length is another, with
the ring's phase offset and the aliasing of orders |m| >= nphi/2 applied
exactly (Gorski et al. 2005, sec. 5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib

LON_METHODS = ('auto', 'fft', 'matmul')
_lon_method = 'auto'


def set_longitude_method(method: str) -> None:
  """Chooses how lat-lon grids do the longitude step: 'fft', 'matmul' or 'auto'.

  'auto' (default) uses a DFT matmul on TPU and the FFT elsewhere.
  """
  global _lon_method
  if method not in LON_METHODS:
    raise ValueError(f'longitude method {method!r}; expected one of {LON_METHODS}')
  _lon_method = method


def resolve_longitude_method(method: str | None) -> str:
  """'fft' or 'matmul' for an explicit, default or 'auto' choice."""
  method = _lon_method if method is None else method
  if method not in LON_METHODS:
    raise ValueError(f'longitude method {method!r}; expected one of {LON_METHODS}')
  if method == 'auto':
    return 'matmul' if jax.default_backend() == 'tpu' else 'fft'
  return method


@functools.lru_cache(maxsize=64)
def _dft_matrices(nlon: int, ms: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  """cos(m phi_k), sin(m phi_k): each (nlon, M) float64."""
  phi = 2 * np.pi * np.arange(nlon) / nlon
  arg = np.outer(phi, np.asarray(ms))
  return np.cos(arg), np.sin(arg)


def to_mreal(f):
  """complex (B, M, R) -> real (M, 2B, R): m leading, [real; imag] stacked on B."""
  fm = jnp.transpose(f, (1, 0, 2))
  return jnp.concatenate([fm.real, fm.imag], axis=1)


def from_mreal(y):
  """real (M, 2B, R) -> complex (M, B, R)."""
  re, im = jnp.split(y, 2, axis=1)  # two slices would transpose to two full-size pads
  return jax.lax.complex(re, im)


def _latlon_analysis(x, grid, ms, real, method):
  """x (B, nlon, nlat) -> F as real (M, 2B, nlat) (see to_mreal)."""
  nlon = grid.nlon
  if method == 'matmul':
    cos, sin = (jnp.asarray(t, dtype=_real_dtype(x)) for t in _dft_matrices(nlon, tuple(ms)))
    if real:
      fr = jnp.einsum('bkr,km->mbr', x, cos)
      fi = -jnp.einsum('bkr,km->mbr', x, sin)
    else:
      xr, xi = x.real, x.imag
      fr = jnp.einsum('bkr,km->mbr', xr, cos) + jnp.einsum('bkr,km->mbr', xi, sin)
      fi = jnp.einsum('bkr,km->mbr', xi, cos) - jnp.einsum('bkr,km->mbr', xr, sin)
    return jnp.concatenate([fr, fi], axis=1) / nlon
  # FFT along a contiguous last axis: (nlat, B, nlon) is ~2x faster on CPU than
  # transforming the middle axis in place.
  xt = jnp.transpose(x, (2, 0, 1))
  if real:
    f = jnp.fft.rfft(xt, axis=-1)[..., :len(ms)]
  else:
    # ms = -lmax..lmax: negative orders sit at the end of the FFT output.
    lmax = (len(ms) - 1) // 2
    # A split, not two slices: the transpose of a slice is a full-size pad, so
    # two slices cost two padded copies and a sum in the backward pass.
    pos, _, neg = jnp.split(jnp.fft.fft(xt, axis=-1), [lmax + 1, nlon - lmax], axis=-1)
    f = jnp.concatenate([neg, pos], axis=-1)
  fm = jnp.transpose(f, (2, 1, 0)) / nlon  # (M, B, nlat)
  return jnp.concatenate([fm.real, fm.imag], axis=1)


def _latlon_synthesis(y, grid, ms, real, method):
  """G as real (M, 2B, nlat) -> x (B, nlon, nlat)."""
  nlon = grid.nlon
  ms = np.asarray(ms)
  b = y.shape[1] // 2
  if method == 'matmul':
    cos, sin = (jnp.asarray(t, dtype=y.dtype) for t in _dft_matrices(nlon, tuple(ms)))
    gr, gi = y[:, :b], y[:, b:]
    if real:
      c = jnp.asarray(np.where(ms == 0, 1.0, 2.0), dtype=y.dtype)[:, None, None]
      return (jnp.einsum('mbr,km->bkr', gr * c, cos)
              - jnp.einsum('mbr,km->bkr', gi * c, sin))
    xr = jnp.einsum('mbr,km->bkr', gr, cos) - jnp.einsum('mbr,km->bkr', gi, sin)
    xi = jnp.einsum('mbr,km->bkr', gr, sin) + jnp.einsum('mbr,km->bkr', gi, cos)
    return jax.lax.complex(xr, xi)
  if real:
    g = jnp.transpose(from_mreal(y), (1, 0, 2)) * nlon  # (B, M, nlat)
    g = jnp.pad(g, ((0, 0), (0, nlon // 2 + 1 - len(ms)), (0, 0)))
    return jnp.fft.irfft(g, n=nlon, axis=-2)
  # Complex: inverse FFT along a contiguous last axis (B, nlat, nlon), then swap.
  g = jnp.transpose(from_mreal(y), (1, 2, 0)) * nlon  # (B, nlat, M)
  lmax = (len(ms) - 1) // 2  # ms = -lmax..lmax; bins 0..lmax, then negatives
  zeros = jnp.zeros(g.shape[:2] + (nlon - 2 * lmax - 1,), g.dtype)
  neg, pos = jnp.split(g, [lmax], axis=-1)  # a split transposes to one concatenate
  bins = jnp.concatenate([pos, zeros, neg], axis=-1)
  return jnp.swapaxes(jnp.fft.ifft(bins, axis=-1), -1, -2)


def _real_dtype(x):
  return jnp.finfo(x.dtype).dtype


@functools.lru_cache(maxsize=32)
def _healpix_groups(nside: int):
  """Rings of equal length, belt first: [(ring indices int32, nphi)], and Rings."""
  rings = grids_lib.HealpixGrid(nside).rings
  nr = len(rings.theta)
  groups = [(np.arange(nside - 1, 3 * nside, dtype=np.int32), 4 * nside)]
  for i in range(1, nside):
    groups.append((np.array([i - 1, nr - i], dtype=np.int32), 4 * i))
  return groups, rings


def _split_rings(y, nside, axis, sizes):
  """Splits an axis into [north cap rings..., belt, south cap rings...].

  `sizes` gives each ring's extent along the axis (nphi for pixels, 1 for
  the ring axis). Static splits, not gathers: their transpose is one
  concatenation, where a gather's is a scatter into a zero buffer of the
  whole input per ring group (~30 full-size buffers in the backward pass).
  """
  sizes = np.asarray(sizes)
  ns = nside
  parts = list(sizes[:ns - 1]) + [int(sizes[ns - 1:3 * ns].sum())] + list(sizes[3 * ns:])
  pieces = jnp.split(y, np.cumsum(parts)[:-1].tolist(), axis=axis)
  return pieces[:ns - 1], pieces[ns - 1], pieces[ns:]


def _healpix_analysis(x, grid, ms, real):
  """x (B, npix) -> F (B, M, nrings)."""
  groups, rings = _healpix_groups(grid.nside)
  ns = grid.nside
  ms = np.asarray(ms)
  north, belt, south = _split_rings(x, ns, 1, rings.nphi)
  out = []
  for ring_ids, n in groups:
    if n == 4 * ns:
      xs = belt.reshape(x.shape[0], len(ring_ids), n)
    else:
      i = n // 4  # cap rings i - 1 (north) and nrings - i (south)
      xs = jnp.stack([north[i - 1], south[-i]], axis=1)  # (B, 2, n)
    k = np.mod(ms, n).astype(np.int32)
    if real:
      spec = jnp.fft.rfft(xs, axis=-1)
      if 2 * ms[-1] <= n:  # no aliasing: orders 0..lmax are the first bins
        f = jnp.split(spec, [len(ms)], axis=-1)[0]
      else:
        flip = k > n // 2
        f = spec[..., np.where(flip, n - k, k).astype(np.int32)]
        f = jnp.where(flip, jnp.conj(f), f)
    else:
      spec = jnp.fft.fft(xs, axis=-1)
      f = _bins_to_orders(spec, ms[-1]) if 2 * ms[-1] <= n else spec[..., k]
    phase = np.exp(-1j * np.outer(rings.phi0[ring_ids], ms)) / n  # (ng, M)
    out.append(f * jnp.asarray(phase, dtype=f.dtype))
  # Ring order: north caps (groups 1.., first ring), belt, south caps reversed.
  caps = out[1:]
  f = jnp.concatenate([c[:, :1] for c in caps] + [out[0]] + [c[:, 1:] for c in caps[::-1]],
                      axis=1)  # (B, nrings, M)
  return jnp.transpose(f, (0, 2, 1))


def _healpix_synthesis(g, grid, ms, real):
  """G (B, M, nrings) -> x (B, npix)."""
  groups, rings = _healpix_groups(grid.nside)
  ns = grid.nside
  ms = np.asarray(ms)
  c = np.where(ms == 0, 1.0, 2.0) if real else np.ones(len(ms))
  north, belt, south = _split_rings(g, ns, 2, np.ones(len(rings.theta), int))
  b = g.shape[0]
  xs_north, xs_south = [None] * (ns - 1), [None] * (ns - 1)
  for ring_ids, n in groups:
    phase = np.exp(1j * np.outer(ms, rings.phi0[ring_ids])) * c[:, None]  # (M, ng)
    if n == 4 * ns:
      gr = belt
    else:
      i = n // 4
      gr = jnp.concatenate([north[i - 1], south[-i]], axis=2)  # (B, M, 2)
    vals = jnp.transpose(gr * jnp.asarray(phase, dtype=g.dtype), (0, 2, 1))  # (B, ng, M)
    if 2 * ms[-1] <= n:  # no aliasing but m = -+n/2: splits and concatenations
      bins = _orders_to_bins(vals, ms, n)
    else:
      bins = jnp.zeros((b, len(ring_ids), n), g.dtype)
      bins = bins.at[:, :, np.mod(ms, n).astype(np.int32)].add(vals)
    xs = jnp.fft.ifft(bins, axis=-1) * n  # (B, ng, n)
    if real:
      xs = xs.real
    if n == 4 * ns:  # the belt: consecutive rings, one block
      xs_belt = xs.reshape(b, -1)
    else:
      xs_north[i - 1], xs_south[-i] = xs[:, 0], xs[:, 1]
  return jnp.concatenate(xs_north + [xs_belt] + xs_south, axis=1)


def _bins_to_orders(spec, lmax):
  """FFT bins (..., n) -> orders -lmax..lmax (..., 2 lmax + 1), for 2 lmax <= n.

  Static splits and a concatenation (a gather's transpose would be a
  scatter-add into a zeroed buffer); at lmax = n / 2 the Nyquist bin serves
  both m = -n/2 and m = n/2.
  """
  n = spec.shape[-1]
  if 2 * lmax < n:
    pos, _, neg = jnp.split(spec, [lmax + 1, n - lmax], axis=-1)
    return jnp.concatenate([neg, pos], axis=-1)
  low, nyquist, high = jnp.split(spec, [lmax, lmax + 1], axis=-1)
  return jnp.concatenate([nyquist, high, low, nyquist], axis=-1)


def _orders_to_bins(vals, ms, n):
  """Orders (..., M) -> FFT bins (..., n) summed per bin, for 2 max(ms) <= n.

  ms is 0..lmax (real) or -lmax..lmax; the transpose of `_bins_to_orders`
  for the latter.
  """
  lmax = int(ms[-1])
  if ms[0] == 0:
    return jnp.pad(vals, [(0, 0)] * (vals.ndim - 1) + [(0, n - lmax - 1)])
  if 2 * lmax < n:
    neg, pos = jnp.split(vals, [lmax], axis=-1)
    zeros = jnp.zeros(vals.shape[:-1] + (n - 2 * lmax - 1,), vals.dtype)
    return jnp.concatenate([pos, zeros, neg], axis=-1)
  lo, neg, pos, hi = jnp.split(vals, [1, lmax, 2 * lmax], axis=-1)
  return jnp.concatenate([pos, lo + hi, neg], axis=-1)


def _ring_half_turns(rings):
  """h_r = nphi_r phi0_r / pi, which is 0 or 1 on every HEALPix ring (int array)."""
  half_turns = rings.nphi * rings.phi0 / np.pi
  h = np.rint(half_turns).astype(np.int64)
  if not (np.allclose(half_turns, h) and set(h.tolist()) <= {0, 1}):
    raise AssertionError('HEALPix rings must have nphi * phi0 in {0, pi}')
  return h


def _alias_count(ms, nphi):
  """k in m = k nphi + j with j in [-nphi/2, nphi/2): 0 unless m aliases."""
  return np.floor_divide(ms + nphi // 2, nphi)


@functools.lru_cache(maxsize=None)
def _alias_tables(nside: int, ms: tuple[int, ...], real: bool):
  """Index and sign tables of `healpix_fold`, flattened over (m, ring).

  Orders m and m' share the FFT bin j of a ring with nphi pixels when
  m = k nphi + j and m' = k' nphi + j (j in [-nphi/2, nphi/2)). The
  synthesis's phase e^{i m' phi0} and the analysis's e^{-i m phi0} then
  combine to e^{i (k' - k) nphi phi0}, and every HEALPix ring has
  nphi phi0 = h pi with h = 0 or 1 (belt rings phi0 = 0 or pi / (4 nside)
  with 4 nside pixels, cap ring i pi / (4 i) with 4 i): the fold needs the
  real signs (-1)^(k' h) and (-1)^(k h), not complex phases.

  Returns (bins, neg_bins, sign_in, sign_out, sign_neg), each (M * nrings,):
  bins[m, r] = offset_r + (m mod nphi_r), the FFT bin of order m on ring r
  (pixel offsets make the bins of all rings one axis of npix entries);
  neg_bins the bin of -m (real path only); sign_in = c_m (-1)^(k_m h_r) with
  c_m = 2 for m > 0 on the real path, else 1; sign_out = (-1)^(k_m h_r);
  sign_neg = (-1)^(k_-m h_r), under which the conjugate of -m's bin adds to
  m's on the real path.
  """
  rings = grids_lib.HealpixGrid(nside).rings
  ms = np.asarray(ms)[:, None]
  nphi = rings.nphi[None, :]
  offset = (np.cumsum(rings.nphi) - rings.nphi)[None, :]
  bins = (offset + np.mod(ms, nphi)).astype(np.int32).ravel()
  neg = (offset + np.mod(-ms, nphi)).astype(np.int32).ravel()
  h = _ring_half_turns(rings)[None, :]
  sign = lambda m: ((-1.0) ** (_alias_count(m, nphi) * h)).ravel()
  c = np.broadcast_to(np.where(ms == 0, 1.0, 2.0) if real else np.ones(ms.shape),
                      (ms.shape[0], nphi.shape[1])).ravel()
  return bins, neg, c * sign(ms), sign(ms), sign(-ms)


def healpix_fold(g, grid, ms, real):
  """analysis(synthesis(g)) on a HEALPix grid, without going through pixels.

  A ring's FFT undoes its inverse FFT, so the round trip only folds the
  orders that share an FFT bin on a ring (m = m' mod nphi_r: the aliasing of
  the short polar-cap rings, and m = +-2 nside on the belt): F_m(r) =
  e^{-i m phi0_r} bins_r[m mod nphi_r] with bins_r[j] = sum over m' = j mod
  nphi_r of c_m' e^{i m' phi0_r} G_m'(r), where the phases combine to real
  signs (see `_alias_tables`); on the real path the synthesis keeps the real
  part, so F_m = (bins[m] + conj(bins[-m])) e^{-i m phi0} / 2. One
  scatter-add and one gather of rows over (m, ring), in real arithmetic: a
  fraction of the two transforms' cost. This is the normal operator's
  longitude part in the real path of the HEALPix analysis (the complex path
  uses `healpix_alias`, its aliasing part on the alias rows only).

  Args:
    g: real (M, nrings, 2B), rows (order, ring), fields [real; imag] last.
    grid: a HealpixGrid.
    ms: orders, shape (M,) (0..lmax when real, else -lmax..lmax).
    real: as in `synthesis` (a real field's c_m weights and real part).

  Returns:
    real (M, nrings, 2B): analysis(synthesis(g)) to rounding.
  """
  bins, neg, sign_in, sign_out, sign_neg = _alias_tables(
      grid.nside, tuple(int(m) for m in ms), bool(real))
  b = g.shape[-1] // 2
  dt = g.dtype
  pix = jnp.zeros((grid.npix, 2, b), dt).at[bins].add(
      g.reshape(-1, 2, b) * _column(sign_in, dt))
  f = pix[bins] * _column(sign_out, dt)
  if real:  # + the conjugate of -m's bin
    f = 0.5 * (f + pix[neg] * _column(sign_neg, dt) * jnp.asarray([[1.0], [-1.0]], dt))
  return f.reshape(g.shape)


def _column(a, dt):
  """A per-row table (any shape) as a (rows, 1, 1) device column of dtype dt."""
  return jnp.asarray(np.reshape(a, (-1, 1, 1)), dt)


def alias_rings(grid, lmax, orders):
  """The rings on which some of `orders` shares an FFT bin with another order.

  Order m shares a ring's bin with m - sign(m) nphi (the nearest other order
  of the same bin), which is within [-lmax, lmax] iff nphi <= lmax + |m|. On
  the other rings the round trip of `healpix_fold` passes every order of
  `orders` through unchanged.

  Args:
    grid: a HealpixGrid.
    lmax: the largest |m| of the data.
    orders: array of orders.

  Returns:
    int array (R_k,): ring indices (north to south) where some order in
    `orders` aliases.
  """
  top = int(lmax) + int(np.max(np.abs(orders)))
  return np.flatnonzero(grid.rings.nphi <= top)


@functools.lru_cache(maxsize=None)
def _alias_plan(nside: int, ms: tuple[int, ...], sizes: tuple[int, ...]):
  """Per piece of the order axis: (bins, sign_in, sign_out) over its alias rows.

  A piece's rows are (its orders) x (its `alias_rings`); bins index a buffer
  that holds only the FFT bins these rows reach. Returns (plan, nbins).
  """
  grid = grids_lib.HealpixGrid(nside)
  nr = len(grid.rings.nphi)
  lmax = max(abs(m) for m in ms)
  bins, _, sign_in, sign_out, _ = (a.reshape(len(ms), nr)
                                   for a in _alias_tables(nside, ms, False))
  rows, start = [], 0
  for n in sizes:
    m = slice(start, start + n)
    r = alias_rings(grid, lmax, np.asarray(ms[m]))
    rows.append((bins[m][:, r].ravel(), sign_in[m][:, r].ravel(), sign_out[m][:, r].ravel()))
    start += n
  used = np.unique(np.concatenate([r[0] for r in rows]))
  plan = tuple((np.searchsorted(used, b).astype(np.int32), s_in, s_out)
               for b, s_in, s_out in rows)
  return plan, len(used)


def healpix_alias(gs, grid, ms):
  """The aliasing part of `healpix_fold` for complex data: fold(g) - g on alias rows.

  analysis(synthesis(g)) - g, which is zero except on the rows (m, ring)
  where m shares its ring's FFT bin with another order (`alias_rings`):
  the short polar-cap rings, and for |m| near 2 nside the belt. The data
  come as pieces of the order axis, each on its own alias rings only (for
  lmax = 2 nside, 28-49 % of the rings per m block of the transforms), so
  no work is spent on rows that pass through. One scatter-add into a buffer
  of the bins the rows reach and one gather, with the signs of
  `_alias_tables`.

  Args:
    gs: sequence of real (M_k, R_k, 2B): consecutive pieces of the order
      axis (together the orders `ms`), on the rings `alias_rings(grid, lmax,
      orders of the piece)`, fields [real; imag] last.
    grid: a HealpixGrid.
    ms: orders -lmax..lmax, shape (M,).

  Returns:
    list of real (M_k, R_k, 2B): the pieces of analysis(synthesis(g)) - g.
  """
  ms = tuple(int(m) for m in ms)
  plan, nbins = _alias_plan(grid.nside, ms, tuple(g.shape[0] for g in gs))
  b = gs[0].shape[-1] // 2
  dt = gs[0].dtype
  buf = jnp.zeros((nbins, 2, b), dt)
  for g, (bins, sign_in, _) in zip(gs, plan):
    if bins.size:
      buf = buf.at[bins].add(g.reshape(-1, 2, b) * _column(sign_in, dt))
  return [(buf[bins] * _column(sign_out, dt)).reshape(g.shape) - g if bins.size else g
          for g, (bins, _, sign_out) in zip(gs, plan)]


def healpix_round_trip(g, grid, ms, real):
  """`healpix_fold` in the layout of `analysis`: real (M, 2B, nrings) in and out."""
  return jnp.transpose(healpix_fold(jnp.transpose(g, (0, 2, 1)), grid, ms, real), (0, 2, 1))


def analysis(x, grid, ms, real, method=None):
  """Ring Fourier analysis.

  Args:
    x: (B, *grid.shape) real (if `real`) or complex.
    grid: the grid.
    ms: orders to return, shape (M,) (0..lmax when real).
    real: x is real and only m >= 0 is wanted.
    method: longitude method for lat-lon grids (see set_longitude_method).

  Returns:
    real (M, 2B, nrings): F_m(ring) with real parts in [:, :B], imaginary
    parts in [:, B:] (the layout of the latitude-step matmuls).
  """
  if isinstance(grid, grids_lib.HealpixGrid):
    return to_mreal(_healpix_analysis(x, grid, ms, real))
  return _latlon_analysis(x, grid, ms, real, resolve_longitude_method(method))


def synthesis(g, grid, ms, real, method=None):
  """Ring Fourier synthesis, the inverse of `analysis` for band-limited rings.

  Args:
    g: real (M, 2B, nrings), coefficients G_m(ring) for the orders `ms` in
      the layout `analysis` returns.
    grid: the grid.
    ms: orders, shape (M,); when `real`, ms = 0..lmax and the field is
      Re(sum_m c_m G_m e^{i m phi}) with c_0 = 1, c_m = 2 (a real field).
    real: whether to return the real field described above.
    method: longitude method for lat-lon grids.

  Returns:
    (B, *grid.shape), real or complex.
  """
  if isinstance(grid, grids_lib.HealpixGrid):
    return _healpix_synthesis(jnp.transpose(from_mreal(g), (1, 0, 2)), grid, ms, real)
  return _latlon_synthesis(g, grid, ms, real, resolve_longitude_method(method))
