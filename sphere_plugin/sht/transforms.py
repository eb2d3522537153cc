"""Spin-weighted spherical harmonic transforms on any grid, in JAX.

forward: field (..., *grid.shape) -> coefficients (..., lmax+1, 2*lmax+1)
inverse: coefficients -> field

Coefficient layout: degree l and order m at [l, lmax + m]; zero where |m| > l or
l < |spin|. Harmonics: sY_lm(theta, phi) = (-1)^s sqrt((2l+1)/4pi)
d^l_{m,-s}(theta) e^{i m phi} (McEwen & Wiaux 2011, as s2fft); for spin 0 the
orthonormal Y_lm with Condon-Shortley phase (healpy, ducc0).

Algorithm: per-ring Fourier step (`rings`), then the latitude step as one
batched matmul per parity with m as the batch axis (`tables`). Real spin-0
fields use only m >= 0 and the north/south symmetry of the grid (half the rings,
degrees split by parity), which halves both the work and the tables. HEALPix
analysis refines iteratively, because HEALPix has no exact quadrature: it
solves the least-squares normal equations (A^H W A) a = A^H W x (A the
synthesis, W the equal pixel weights) by preconditioned conjugate gradients
(the converged map is healpy's `iter` limit); for complex fields in
whitened coefficients, where each step only touches the rows (order, ring)
that alias. Its gradient is that of the
converged linear map, one more solve (`jax.lax.custom_linear_solve`), not
autodiff through the iterations.

Tables are built once per (grid, lmax, spin, layout) in float64, cached, and
passed to the jitted kernels as arguments (never captured as constants, never
parameters).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.sht import rings as rings_lib
from sphere_plugin.sht import tables as tables_lib

_device_cache: dict = {}


def _m_blocks(lmax, spin, real):
  """Contiguous ranges of the m axis, grouped by |m| bands, with each band's l0.

  Degrees l < max(|m|, |s|) are zero in every table, so a band of orders whose
  smallest |m| is m0 only needs degrees l >= max(m0, |s|): cutting the m axis
  into ~8 bands skips ~40% of the zeros in the (l, m) triangle.

  Returns:
    list of (i0, i1, l0): table rows [i0, i1) need degrees l >= l0.
  """
  width = max(8, -(-(lmax + 1) // 8))
  bands = list(range(0, lmax + 1, width)) + [lmax + 1]
  blocks = []
  for lo, hi in zip(bands[:-1], bands[1:]):
    l0 = max(lo, abs(spin))
    if real:
      blocks.append((lo, hi, l0))
    elif lo == 0:
      blocks.append((lmax - hi + 1, lmax + hi, l0))
    else:
      blocks.append((lmax - hi + 1, lmax - lo + 1, l0))
      blocks.append((lmax + lo, lmax + hi, l0))
  return sorted(blocks)


@functools.lru_cache(maxsize=None)
def _block_layout(lmax, spin, real):
  """Per table (parity): tuple of static (i0, i1, k0) for the m blocks."""
  ell = np.arange(lmax + 1)
  degrees = (ell[0::2], ell[1::2]) if real else (ell,)
  return tuple(tuple((i0, i1, int(np.searchsorted(d, l0)))
                     for i0, i1, l0 in _m_blocks(lmax, spin, real)) for d in degrees)


@functools.lru_cache(maxsize=None)
def _precond_layout(lmax, spin):
  """m blocks (i0, i1, k0) of the real path's preconditioner, k0 in degrees (not parity rows).

  Only the real path has a preconditioner product (the complex path whitens).
  """
  return tuple(_m_blocks(lmax, spin, True))


def _device_tables(grid, lmax, spin, real, dtype):
  """Device tables, each split into m blocks (arrays only: jit arguments)."""
  key = (grid, lmax, spin, real, np.dtype(dtype).name)
  hit = _device_cache.get(key)
  if hit is None:
    t = tables_lib.get_tables(grid, lmax, spin, real)
    layout = _block_layout(lmax, spin, real)
    conv = lambda ts: tuple(
        tuple(_concrete(a[i0:i1, :, k0:], dtype) for i0, i1, k0 in lay)
        for a, lay in zip(ts, layout))
    hit = {'synth': conv(t.synth), 'analysis': conv(t.analysis)}
    if isinstance(grid, grids_lib.HealpixGrid) and real:
      pre = tables_lib.healpix_preconditioner(grid, lmax, spin)  # m = -lmax..lmax
      hit['precond'] = tuple(_concrete(pre[lmax + i0:lmax + i1, k0:, k0:], dtype)
                             for i0, i1, k0 in _precond_layout(lmax, spin))
    elif isinstance(grid, grids_lib.HealpixGrid):
      hit.update(_whitened_tables(grid, lmax, spin, t, dtype))
    _device_cache[key] = hit
  return hit


def _whitened_tables(grid, lmax, spin, t, dtype):
  """The complex HEALPix solver's tables, per m block (see `_complex_solver`).

  With G_m^{-1/2} the per-order whitening (`tables.healpix_preconditioner`,
  power -1/2): 'white_analysis' (M_k, R, K_k) = analysis table G^{-1/2}, all
  rings; 'alias_synth' and 'alias_analysis' (M_k, R_k, K_k) = synthesis and
  analysis tables G^{-1/2} on the block's alias rings (`rings.alias_rings`);
  'whiten' (M_k, K_k, K_k) = G^{-1/2}.
  """
  wh = tables_lib.healpix_preconditioner(grid, lmax, spin, power=-0.5,
                                         refine=np.dtype(dtype) == np.float64)
  ms = np.arange(-lmax, lmax + 1)
  out = {'white_analysis': [], 'alias_synth': [], 'alias_analysis': [], 'whiten': []}
  for i0, i1, k0 in _block_layout(lmax, spin, False)[0]:
    w = wh[i0:i1, k0:, k0:]
    synth, analysis = (a[i0:i1, :, k0:] @ w for a in (t.synth[0], t.analysis[0]))
    rk = rings_lib.alias_rings(grid, lmax, ms[i0:i1])
    out['white_analysis'].append(_concrete(analysis, dtype))
    out['alias_synth'].append(_concrete(synth[:, rk], dtype))
    out['alias_analysis'].append(_concrete(analysis[:, rk], dtype))
    out['whiten'].append(_concrete(w, dtype))
  return {k: tuple(v) for k, v in out.items()}


def _concrete(a, dtype):
  with jax.ensure_compile_time_eval():
    return jax.device_put(np.asarray(a, dtype=dtype))


def clear_cache() -> None:
  """Drops cached device tables (the float64 host tables stay cached)."""
  _device_cache.clear()


def _from_mreal(y):
  """real (M, 2B, K) -> complex (B, K, M)."""
  return jnp.transpose(rings_lib.from_mreal(y), (1, 2, 0))


def _mm(spec, x, t):
  return jnp.einsum(spec, x, t, precision=jax.lax.Precision.HIGHEST)


def _split_blocks(x, layout, axis):
  """Splits x along `axis` into the layout's contiguous m blocks.

  A static split, not one slice per block: the transpose of a slice pads the
  block back to full size (for ~15 blocks, 15 full-size buffers summed in
  the backward pass, which made the VJP ~10x the forward); the transpose of a
  split is one concatenate.
  """
  starts = [i0 for i0, _, _ in layout]
  ends = [i1 for _, i1, _ in layout]
  if starts[0] != 0 or starts[1:] != ends[:-1] or ends[-1] != x.shape[axis]:
    raise AssertionError(f'm blocks {layout} do not tile an axis of size {x.shape[axis]}')
  return jnp.split(x, starts[1:], axis=axis)


def _analysis_mm(x, tables, layout):
  """x (M, 2B, R) -> (M, 2B, K) through blocked tables (see _m_blocks)."""
  parts = []
  for xi, (_, _, k0), t in zip(_split_blocks(x, layout, 0), layout, tables):
    y = _mm('mbr,mrk->mbk', xi, t)
    parts.append(jnp.pad(y, ((0, 0), (0, 0), (k0, 0))))
  return jnp.concatenate(parts, axis=0)


def _synthesis_mm(y, tables, layout):
  """y (M, 2B, K) -> (M, 2B, R) through blocked tables."""
  return jnp.concatenate(
      [_mm('mbk,mrk->mbr', yi[:, :, k0:], t)
       for yi, (_, _, k0), t in zip(_split_blocks(y, layout, 0), layout, tables)],
      axis=0)


def _mreal_to_coeffs(y, real):
  """Coefficients y as real (M, 2B, lmax+1) -> complex a (B, lmax+1, 2 lmax+1).

  On the real path y holds m >= 0 only and a_{l,-m} = (-1)^m conj(a_lm).
  """
  a = _from_mreal(y)  # (B, L, M)
  if not real:
    return a
  sign = jnp.asarray((-1.0) ** np.arange(1, y.shape[0]), dtype=y.dtype)
  _, a_pos = jnp.split(a, [1], axis=-1)  # a split: a slice would transpose to a full pad
  neg = jnp.flip(jnp.conj(a_pos) * sign, axis=-1)
  return jnp.concatenate([neg, a], axis=-1)


def _legendre_forward_mreal(f, tabs, real, lmax, nrings, spin):
  """Ring coefficients F as real (M, 2B, R) -> coefficients as real (M, 2B, lmax+1)."""
  analysis = tabs['analysis']
  layout = _block_layout(lmax, spin, real)
  x = f
  if real:
    nh = (nrings + 1) // 2
    north = x[..., :nh]
    south = jnp.flip(x[..., nrings - nh:], axis=-1)
    if nrings % 2:
      south = south.at[..., -1].set(0)  # the equator ring counts once
    ms = np.arange(lmax + 1)
    m_even = jnp.asarray((ms % 2 == 0)[:, None, None])
    s, d = north + south, north - south
    # Degree l has parity (-1)^(l+m) under theta -> pi - theta.
    a_e = _analysis_mm(jnp.where(m_even, s, d), analysis[0], layout[0])
    a_o = _analysis_mm(jnp.where(m_even, d, s), analysis[1], layout[1])
    if a_o.shape[-1] < a_e.shape[-1]:
      a_o = jnp.pad(a_o, ((0, 0), (0, 0), (0, 1)))
    return jnp.stack([a_e, a_o], axis=-1).reshape(a_e.shape[:2] + (-1,))[..., :lmax + 1]
  return _analysis_mm(x, analysis[0], layout[0])


def _legendre_inverse(a, tabs, real, lmax, nrings, spin):
  """a (B, lmax+1, 2 lmax+1) -> ring coefficients G as real (M, 2B, R)."""
  if real:
    ms = np.arange(lmax + 1)
    sign = jnp.asarray((-1.0) ** ms, dtype=a.real.dtype)
    pos = a[..., lmax:]
    neg = jnp.flip(a[..., :lmax + 1], axis=-1)
    a = 0.5 * (pos + sign * jnp.conj(neg))  # Hermitian part: Re of the field
  y = rings_lib.to_mreal(jnp.transpose(a, (0, 2, 1)))  # (M, 2B, L)
  return _legendre_inverse_mreal(y, tabs, real, lmax, nrings, spin)


def _by_parity(y):
  """(..., n) -> even entries (..., ceil(n/2)), odd entries (..., floor(n/2)).

  A reshape and a split, not strided slices: the transpose of each strided
  slice is a full-size padded copy.
  """
  n = y.shape[-1]
  pairs = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n % 2)]).reshape(y.shape[:-1] + (-1, 2))
  even, odd = (jnp.squeeze(p, -1) for p in jnp.split(pairs, 2, axis=-1))
  return even, odd[..., :n // 2]


def _legendre_inverse_mreal(y, tabs, real, lmax, nrings, spin):
  """Coefficients as real (M, 2B, lmax+1) -> ring coefficients G as real (M, 2B, R).

  On the real path y holds m >= 0 and the field is the real part (the
  imaginary part of m = 0 drops out).
  """
  synth = tabs['synth']
  layout = _block_layout(lmax, spin, real)
  if real:
    sign = jnp.asarray((-1.0) ** np.arange(lmax + 1), dtype=y.dtype)
    y_even, y_odd = _by_parity(y)
    e = _synthesis_mm(y_even, synth[0], layout[0])
    o = _synthesis_mm(y_odd, synth[1], layout[1])
    north = e + o
    south = (e - o) * sign[:, None, None]
    nh = north.shape[-1]
    return jnp.concatenate([north, jnp.flip(south[..., :nrings - nh], axis=-1)], axis=-1)
  return _synthesis_mm(y, synth[0], layout[0])


def _complex_dtype(real_dtype):
  return jnp.complex128 if real_dtype == jnp.float64 else jnp.complex64


def _precondition_full(y, tabs, lmax, spin, real):
  """y real (M, 2B, lmax+1) -> P y, P the per-order inverse Gram matrices.

  In the mreal layout the order is the leading (batch) axis of the products,
  so no layout change is needed; P is real and acts on the real and imaginary
  rows alike.
  """
  layout = _precond_layout(lmax, spin)
  parts = []
  for yi, (_, _, k0), t in zip(_split_blocks(y, layout, 0), layout, tabs['precond']):
    z = _mm('mbl,mlk->mbk', yi[:, :, k0:], t)
    parts.append(jnp.pad(z, ((0, 0), (0, 0), (k0, 0))))
  return jnp.concatenate(parts, axis=0)


@functools.lru_cache(maxsize=None)
def _solver_weights(lmax, spin, real):
  """Per piece of the HEALPix solver's state: (weights, mask), float64 numpy.

  The real path's state is one array (M, 2B, lmax+1) (m >= 0, the mreal
  layout); the complex path's is one piece per m block (M_k, K_k, 2B), K_k
  the block's degrees l >= k0 (`_block_layout`). The weights make the plain
  dot product of two states Re <u, v> over the whole (l, m) array: on the
  real path the layout holds m > 0 once for both +-m (weight 2). The mask is
  1 on the coefficients the analysis can return: l >= max(|m|, |spin|), and
  not the imaginary part of m = 0 on the real path (a real field's a_l0 are
  real); its [real, imag] axis sits where the field axis splits in two.
  """
  ms = np.arange(lmax + 1) if real else np.arange(-lmax, lmax + 1)
  ell = np.arange(lmax + 1)
  valid = (ell[None, :] >= np.abs(ms)[:, None]) & (ell[None, :] >= abs(spin))
  if real:
    mask = np.repeat(valid[:, None, None, :], 2, axis=1).astype(np.float64)
    mask[0, 1] = 0
    return ((np.where(ms > 0, 2.0, 1.0)[:, None, None], mask),)
  return tuple((np.ones((i1 - i0, 1, 1)),
                np.repeat(valid[i0:i1, k0:, None, None], 2, axis=2).astype(np.float64))
               for i0, i1, k0 in _block_layout(lmax, spin, False)[0])


def _field_dot(weights, field_axis):
  """Re <u, v> per field of two solver states (tuples of pieces), broadcastable.

  The pieces' field axis `field_axis` holds [real; imag] x field; the result
  has size 2B there (the field's value twice) and size 1 elsewhere.
  """

  def dot(us, vs):
    s = sum(jnp.sum(w * u * v, axis=tuple(i for i in range(u.ndim) if i != field_axis))
            for w, u, v in zip(weights, us, vs))  # (2B,)
    re, im = jnp.split(s, 2)
    d = re + im
    shape = [1] * us[0].ndim
    shape[field_axis] = -1
    return jnp.concatenate([d, d]).reshape(shape)
  return dot


def _pcg(normal, precond, dot, b, n_iter):
  """n_iter steps of preconditioned conjugate gradients for normal(a) = b from a = 0.

  States are tuples of arrays (pieces). Per field (the step sizes are per
  field; `dot` returns them broadcastable). `normal` must be self-adjoint and
  positive definite under `dot` on the subspace b lies in, and `precond`
  self-adjoint positive definite and mapping that subspace to itself. A
  `fori_loop`, not unrolled: XLA then reuses the loop's buffers, so memory
  does not grow with n_iter.
  """
  tiny = jnp.finfo(b[0].dtype).tiny
  axpy = lambda c, x, y: tuple(xi * c + yi for xi, yi in zip(x, y))

  def step(state):
    a, r, p, rz = state
    q = normal(p)
    alpha = rz / jnp.maximum(dot(p, q), tiny)
    return axpy(alpha, p, a), axpy(-alpha, q, r)

  def body(_, state):
    a, r, p, rz = state
    a, r = step(state)
    z = precond(r)
    rz_new = dot(r, z)
    return a, r, axpy(rz_new / jnp.maximum(rz, tiny), p, z), rz_new

  z = precond(b)
  state = (tuple(jnp.zeros_like(x) for x in b), b, z, dot(b, z))
  state = jax.lax.fori_loop(0, n_iter - 1, body, state)
  return step(state)[0]  # the last step needs no new direction


# Bytes of fields per lax.map step of a large forward transform (`_fields_per_step`).
_CHUNK_BYTES = 8 << 20


def _fields_per_step(num_fields, field_bytes):
  """How many fields the forward transform's kernel handles per step.

  The kernels are memory-bound on CPU: layout copies, FFTs and the HEALPix
  solver's repeated passes run several times faster on arrays that fit the
  processor's cache than on ones that spill. So a batch of more than
  2 x _CHUNK_BYTES of fields is analysed in steps of at most ~_CHUNK_BYTES
  by a `lax.map` (on this project's 2-core VM, L = 256, 64 fields: spin-0
  forward 110-114 -> 76-79 ms, spin 1 225-245 -> 187-188 ms; the healpix:32
  residual block's fwd+bwd ~10-15 %, within noisy runs). Smaller batches go
  in one step: splitting them only adds the loop's copies (the
  gaussian:128x64 block, 16 MiB per call, got slower in steps of 8 MiB).
  The inverse transform is not stepped: at L = 256 its spin-1 case got
  slower (214-221 -> 222-261 ms) and spin 0 gained ~7 %.
  """
  total = num_fields * field_bytes
  if total <= 2 * _CHUNK_BYTES:
    return num_fields
  step = -(-num_fields // -(-total // _CHUNK_BYTES))
  # A divisor of the batch down to half that size avoids a remainder (which
  # the kernel would trace and compile a second time).
  return next((d for d in range(step, step // 2, -1) if num_fields % d == 0), step)


def _in_steps(fn, x, step):
  """fn over the leading axis of x, `step` entries at a time (lax.map), the rest last."""
  b = x.shape[0]
  if step >= b:
    return fn(x)
  n = b // step
  head, tail = jnp.split(x, [n * step]) if b % step else (x, None)
  y = jax.lax.map(fn, head.reshape((n, step) + x.shape[1:]))
  y = y.reshape((n * step,) + y.shape[2:])
  return y if tail is None else jnp.concatenate([y, fn(tail)])


@functools.partial(jax.jit, static_argnames=('grid', 'lmax', 'spin', 'real', 'method',
                                             'n_iter', 'step'))
def _forward_kernel(x, tabs, *, grid, lmax, spin, real, method, n_iter, step):
  return _in_steps(functools.partial(_forward_body, tabs=tabs, grid=grid, lmax=lmax,
                                     spin=spin, real=real, method=method, n_iter=n_iter),
                   x, step)


def _forward_body(x, tabs, *, grid, lmax, spin, real, method, n_iter):
  """x (B, *grid.shape) -> complex (B, lmax+1, 2 lmax+1)."""
  ms = np.arange(lmax + 1) if real else np.arange(-lmax, lmax + 1)
  nrings = len(grid.rings.theta)
  f = rings_lib.analysis(x, grid, ms, real, method)
  if n_iter == 0:
    return _mreal_to_coeffs(_legendre_forward_mreal(f, tabs, real, lmax, nrings, spin), real)
  # HEALPix: the least-squares analysis a = N^{-1} b with N = Q A the normal
  # operator (A the synthesis, Q the quadrature analysis, b = Q x), by CG
  # from zero preconditioned by the per-order inverse Gram matrices G^{-1}
  # (n_iter steps): on the real path as such, on the complex path as plain
  # CG in the whitened coefficients u = G^{1/2} a (`_complex_solver`), which
  # makes the same iterates at a fraction of the cost. N is self-adjoint
  # under the weighted dot product of `_solver_weights` (Re <u, v> over the
  # whole (l, m) array): Q = (4 pi / npix) A^*.
  #
  # The converged analysis is linear in x, and its gradient is one adjoint
  # solve: custom_linear_solve differentiates a = N^{-1} b implicitly instead
  # of through the iterations, so the backward pass stores no iterates. For
  # real arrays JAX's transpose is the adjoint under the plain dot product;
  # with W the weights, W N is symmetric, so (N^{-1})^T = W N^{-1} W^{-1}, and
  # the cotangent is first projected onto the subspace where N is invertible.
  solver = _real_solver if real else _complex_solver
  b, normal, precond, finish, field_axis = solver(f, tabs, grid, lmax, spin, ms)
  weights, masks = zip(*((jnp.asarray(w, f.dtype), jnp.asarray(m, f.dtype))
                         for w, m in _solver_weights(lmax, spin, real)))
  dot = _field_dot(weights, field_axis)

  def project(ys):
    out = []
    for y, mask in zip(ys, masks):
      n = y.shape[field_axis]
      split = y.shape[:field_axis] + (2, n // 2) + y.shape[field_axis + 1:]
      out.append((y.reshape(split) * mask).reshape(y.shape))
    return tuple(out)

  def solve(matvec, rhs):
    return _pcg(matvec, precond, dot, rhs, n_iter)

  def transpose_solve(unused_vecmat, ct):
    scaled = project(tuple(c / w for c, w in zip(ct, weights)))
    return tuple(w * y for w, y in zip(weights, _pcg(normal, precond, dot, scaled, n_iter)))

  return finish(jax.lax.custom_linear_solve(normal, b, solve, transpose_solve=transpose_solve))


def _real_solver(f, tabs, grid, lmax, spin, ms):
  """The real path's solver: state one piece, real (M, 2B, lmax+1), m >= 0.

  Returns (b, normal, precond, finish, field_axis): `_pcg`'s right-hand
  side and operators, and the map of its solution to coefficients.
  """
  nrings = len(grid.rings.theta)

  def normal(p):
    # synthesis then analysis, with the rings' FFT pairs cancelled (see
    # rings.healpix_fold).
    g = _legendre_inverse_mreal(p[0], tabs, True, lmax, nrings, spin)
    return (_legendre_forward_mreal(rings_lib.healpix_round_trip(g, grid, ms, True), tabs,
                                    True, lmax, nrings, spin),)

  def precond(r):
    return (_precondition_full(r[0], tabs, lmax, spin, True),)

  def finish(a):
    return _mreal_to_coeffs(a[0], True)

  b = (_legendre_forward_mreal(f, tabs, True, lmax, nrings, spin),)
  return b, normal, precond, finish, 1


def _complex_solver(f, tabs, grid, lmax, spin, ms):
  """The complex path's solver, in whitened coefficients: state real (M_k, K_k, 2B) pieces.

  With G the per-order Gram matrices of the synthesis without aliasing
  (`tables.healpix_preconditioner`), the normal operator is N = G + X, X
  the aliasing of orders on shared FFT bins (`rings.healpix_alias`). In
  u = G^{1/2} a it becomes G^{-1/2} N G^{-1/2} = I + G^{-1/2} X G^{-1/2}:
  plain CG on it makes the same iterates as CG on N preconditioned by
  G^{-1}, but each step only synthesises and analyses the rows (m, ring)
  that alias (for lmax = 2 nside the polar caps, ~40-50 % of the rings per
  m block, and the belt for |m| = 2 nside), with the whitening folded into
  the tables (`_whitened_tables`), and needs no preconditioner product. The
  state keeps one piece per m block, the block's own degrees (l >= k0) and
  the fields last, so every product is a plain batched matmul and the
  synthesis writes the rows the fold scatters.

  Returns (b, normal, precond, finish, field_axis) as `_real_solver`.
  """
  layout = _block_layout(lmax, spin, False)[0]
  b = tuple(_mm('mbr,mrk->mkb', xi, t)
            for xi, t in zip(_split_blocks(f, layout, 0), tabs['white_analysis']))

  def normal(u):
    g = [_mm('mrk,mkb->mrb', t, y) for y, t in zip(u, tabs['alias_synth'])]
    return tuple(y + _mm('mrb,mrk->mkb', h, t)
                 for y, h, t in zip(u, rings_lib.healpix_alias(g, grid, ms),
                                    tabs['alias_analysis']))

  def finish(u):
    # a = G^{-1/2} u; pieces (M_k, K_k, 2B) -> (M, lmax+1, 2B) -> complex (B, lmax+1, M).
    a = [_mm('mkl,mlb->mkb', t, y) for y, t in zip(u, tabs['whiten'])]
    full = jnp.concatenate([jnp.pad(y, ((0, 0), (lmax + 1 - y.shape[1], 0), (0, 0)))
                            for y in a], axis=0)
    re, im = jnp.split(full, 2, axis=2)
    return jnp.transpose(jax.lax.complex(re, im), (2, 1, 0))

  return b, normal, lambda r: r, finish, 2


def _inverse_body(a, tabs, grid, lmax, spin, real, method):
  ms = np.arange(lmax + 1) if real else np.arange(-lmax, lmax + 1)
  nrings = len(grid.rings.theta)
  g = _legendre_inverse(a, tabs, real, lmax, nrings, spin)
  return rings_lib.synthesis(g, grid, ms, real, method)


@functools.partial(jax.jit, static_argnames=('grid', 'lmax', 'spin', 'real', 'method'))
def _inverse_kernel(a, tabs, *, grid, lmax, spin, real, method):
  return _inverse_body(a, tabs, grid, lmax, spin, real, method)


def _check_lmax(grid, lmax, what):
  if lmax < 0:
    raise ValueError(f'lmax must be >= 0, got {lmax}')
  if lmax > grid.lmax:
    raise ValueError(
        f'{what} at lmax {lmax} is not resolved by {grid} (its lmax is {grid.lmax}); '
        'use a finer grid or a smaller lmax')


def default_n_iter(grid, dtype) -> int:
  """Refinement iterations of the HEALPix forward transform for a dtype.

  The fewest preconditioned CG steps that recover band-limited maps with
  lmax <= 2 nside as well as the 5 (float32) / 10 (float64) plain CG steps
  used before: round-trip relative error at the precision's floor, ~1-4e-7
  (float32) and ~3-9e-16 (float64), measured for nside 8..64, spins 0 and 1
  (`tools/healpix_convergence.py`).
  Small grids converge more slowly, so nside < 16 keeps one more step:
  float32 5 (nside < 16) or 4; float64 10 or 9. 0 for lat-lon grids, which
  are exact without iterating. Above lmax = 2 nside (up to grid.lmax =
  3 nside - 1) no default converges: the error is ~1e-2 to 1e-1.
  """
  if not isinstance(grid, grids_lib.HealpixGrid):
    return 0
  small = grid.nside < 16
  if jnp.dtype(dtype) in (jnp.float64, jnp.complex128):
    return 10 if small else 9
  return 5 if small else 4


def forward(x, grid, lmax: int | None = None, spin: int = 0, *,
            n_iter: int | None = None, lon_method: str | None = None):
  """Spin-weighted spherical harmonic analysis.

  Args:
    x: field, real or complex, shape (..., *grid.shape); lat-lon grids are
      (..., nlon, nlat) with latitude ascending, HEALPix (..., npix) in RING
      order. float32 unless float64 is given with JAX x64 enabled. Real input
      with spin 0 takes the fast real path; a spin-s field is complex.
    grid: a Grid or its text form ('gaussian:64x32').
    lmax: degree limit, default grid.lmax; at most grid.lmax.
    spin: integer spin weight s.
    n_iter: HEALPix refinement iterations (default: `default_n_iter`); an
      error for lat-lon grids, which need none.
    lon_method: 'fft', 'matmul' or 'auto' for lat-lon grids (default: the
      global setting, see `set_longitude_method`).

  Returns:
    complex coefficients, shape (..., lmax+1, 2*lmax+1), [l, lmax+m].
  """
  grid = grids_lib.parse(grid)
  lmax = grid.lmax if lmax is None else int(lmax)
  _check_lmax(grid, lmax, 'forward transform')
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
    x = x.astype(jnp.float32)
  gshape = grid.shape
  if x.shape[x.ndim - len(gshape):] != gshape:
    raise ValueError(f'field shape {x.shape} does not end with {grid} shape {gshape}')
  real = spin == 0 and not jnp.iscomplexobj(x)
  if spin != 0 and not jnp.iscomplexobj(x):
    x = x.astype(_complex_dtype(x.dtype))
  rdtype = jnp.finfo(x.dtype).dtype
  if n_iter is None:
    n_iter = default_n_iter(grid, rdtype)
  elif n_iter and not isinstance(grid, grids_lib.HealpixGrid):
    raise ValueError(f'n_iter applies to HEALPix grids only; {grid} is exact')
  batch = x.shape[:x.ndim - len(gshape)]
  tabs = _device_tables(grid, lmax, int(spin), real, rdtype)
  xb = x.reshape((-1,) + gshape)
  method = rings_lib.resolve_longitude_method(lon_method)
  step = _fields_per_step(xb.shape[0], int(np.prod(gshape)) * xb.dtype.itemsize)
  a = _forward_kernel(xb, tabs, grid=grid, lmax=lmax, spin=int(spin), real=real,
                      method=method, n_iter=int(n_iter), step=step)
  return a.reshape(batch + a.shape[1:])


def inverse(coeffs, grid, spin: int = 0, *, real: bool | None = None,
            lon_method: str | None = None):
  """Spin-weighted spherical harmonic synthesis.

  Args:
    coeffs: complex, shape (..., lmax+1, 2*lmax+1), [l, lmax+m]; lmax is read
      from the shape.
    grid: a Grid or its text form.
    spin: integer spin weight s.
    real: return the real part only (fast path; spin 0 only). Default: True
      for spin 0, False otherwise. For a real field's coefficients
      (a_{l,-m} = (-1)^m conj(a_lm)) the real part is the whole field; pass
      real=False for complex spin-0 fields.
    lon_method: 'fft', 'matmul' or 'auto' for lat-lon grids.

  Returns:
    field (..., *grid.shape), real or complex.
  """
  grid = grids_lib.parse(grid)
  coeffs = jnp.asarray(coeffs)
  if coeffs.ndim < 2 or coeffs.shape[-1] != 2 * coeffs.shape[-2] - 1:
    raise ValueError(f'coefficients must have shape (..., lmax+1, 2*lmax+1), got '
                     f'{coeffs.shape}')
  lmax = coeffs.shape[-2] - 1
  if isinstance(grid, grids_lib.LatLonGrid) and 2 * lmax + 1 > grid.nlon:
    raise ValueError(f'synthesis at lmax {lmax} needs at least {2 * lmax + 1} '
                     f'longitudes; {grid} has {grid.nlon}')
  real = (spin == 0) if real is None else bool(real)
  if real and spin != 0:
    raise ValueError(f'real=True needs spin 0, got spin {spin}')
  if not jnp.iscomplexobj(coeffs):
    coeffs = coeffs.astype(_complex_dtype(jnp.finfo(coeffs.dtype).dtype)
                           if jnp.issubdtype(coeffs.dtype, jnp.floating) else jnp.complex64)
  rdtype = jnp.finfo(coeffs.dtype).dtype
  tabs = _device_tables(grid, lmax, int(spin), real, rdtype)
  batch = coeffs.shape[:-2]
  cb = coeffs.reshape((-1,) + coeffs.shape[-2:])
  method = rings_lib.resolve_longitude_method(lon_method)
  x = _inverse_kernel(cb, tabs, grid=grid, lmax=lmax, spin=int(spin), real=real,
                      method=method)
  return x.reshape(batch + x.shape[1:])
