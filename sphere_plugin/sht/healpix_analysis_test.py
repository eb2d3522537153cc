"""HEALPix analysis: implicit gradient of the least-squares solve, preconditioner.

The reference is the converged analysis computed densely: the HEALPix forward
transform converges to the unweighted least-squares fit a = pinv(A) x, with A
the synthesis (equal pixel weights), here built column by column from
`sht.inverse` (checked against ducc0 in transforms_test) and inverted with
numpy in float64.

Tolerances: the library's float64 default (10 PCG steps at nside < 16)
reaches ~1e-15 relative on these grids (table in default_n_iter's
docstring); 1e-10 leaves room for the conditioning of the dense pinv and for
sums over a few hundred terms, and is still 1e5 below the error of stopping
CG one or two steps early (~1e-5 at 3 steps), so a wrong adjoint (missing
conjugation, missing projection, a factor 2 on m > 0) fails it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin.sht import tables


def _coeff_projector(lmax, spin, real):
  """Orthogonal projection onto the coefficient arrays the analysis can return.

  Those are zero where |m| > l or l < |spin| and, for the real path, satisfy
  a_{l,-m} = (-1)^m conj(a_lm). For (B, lmax+1, 2 lmax+1) complex arrays.
  """
  ell = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None, :]
  valid = (np.abs(m) <= ell) & (ell >= abs(spin))
  sign = (-1.0) ** np.arange(-lmax, lmax + 1)

  def project(g):
    g = jnp.where(valid, g, 0)
    if real:
      g = 0.5 * (g + jnp.asarray(sign, g.real.dtype) * jnp.conj(jnp.flip(g, axis=-1)))
    return g
  return project


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def rel(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel())


def dense_least_squares(grid, lmax, spin):
  """pinv of the synthesis: (npix,) field -> (lmax+1, 2 lmax+1) coefficients."""
  ell = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None, :]
  valid = np.argwhere((np.abs(m) <= ell) & (ell >= abs(spin)))
  basis = np.zeros((len(valid), lmax + 1, 2 * lmax + 1), complex)
  basis[np.arange(len(valid)), valid[:, 0], valid[:, 1]] = 1
  cols = np.asarray(sht.inverse(basis, grid, spin=spin, real=False))  # (ncoef, npix)
  pinv = np.linalg.pinv(cols.T)  # (ncoef, npix)
  full = np.zeros(((lmax + 1) * (2 * lmax + 1), grid.npix), complex)
  full[valid[:, 0] * (2 * lmax + 1) + valid[:, 1]] = pinv
  full = jnp.asarray(full)
  return lambda x: (full @ x.astype(complex)).reshape(lmax + 1, 2 * lmax + 1)


CASES = [  # (nside, spin, complex input): real path, complex spin 0, spin 1
    (2, 0, False), (4, 0, False), (4, 0, True), (2, 1, True), (4, 1, True)]


@pytest.mark.parametrize('nside,spin,is_complex', CASES)
def test_vjp_and_jvp_match_dense_least_squares(x64, nside, spin, is_complex):
  grid = grids.healpix(nside)
  lmax = 2 * nside
  ref = dense_least_squares(grid, lmax, spin)
  rng = np.random.default_rng(nside + 10 * spin)
  x = rng.normal(size=grid.shape)  # not band-limited: a genuine least-squares fit
  if is_complex:
    x = x + 1j * rng.normal(size=grid.shape)
  f = lambda y: sht.forward(y, grid, lmax=lmax, spin=spin)
  a, vjp = jax.vjp(f, x)
  a_ref, vjp_ref = jax.vjp(ref, x)
  assert rel(a, a_ref) < 1e-10
  # A cotangent that is neither Hermitian nor zero outside the valid (l, m)
  # triangle: the transpose solve must project it first.
  ct = rng.normal(size=a.shape) + 1j * rng.normal(size=a.shape)
  (g,), (g_ref,) = vjp(ct), vjp_ref(ct)
  assert g.dtype == x.dtype
  assert rel(g, g_ref) < 1e-10
  (g_lin,) = jax.linear_transpose(f, x)(ct)
  assert rel(g_lin, g_ref) < 1e-10
  dx = rng.normal(size=x.shape) + (1j * rng.normal(size=x.shape) if is_complex else 0)
  _, t = jax.jvp(f, (x,), (dx,))
  assert rel(t, ref(dx)) < 1e-10


def test_gradient_matches_finite_differences_of_converged_forward(x64):
  """Central differences of a nonlinear loss on healpix:4, real spin-0 path."""
  grid = grids.healpix(4)
  rng = np.random.default_rng(1)
  x = rng.normal(size=grid.shape)
  w = rng.normal(size=(9, 17))

  def loss(y):
    a = sht.forward(y, grid, lmax=8)
    return jnp.sum(w * jnp.abs(a) ** 2) + jnp.sum(jnp.sin(sht.inverse(a, grid)))

  g = jax.grad(loss)(x)
  h = 1e-5
  for _ in range(3):
    d = rng.normal(size=x.shape)
    fd = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    # Central differences err by O(h^2 |loss'''|) ~ 1e-10 here.
    assert float(jnp.vdot(g, d)) == pytest.approx(float(fd), rel=1e-7, abs=1e-9)


def _grad_temp_bytes(grid, n_iter):
  x = jnp.zeros((4,) + grid.shape, jnp.complex64)
  loss = lambda y: jnp.sum(jnp.abs(sht.forward(y, grid, spin=1, n_iter=n_iter)) ** 2)
  return jax.jit(jax.grad(loss)).lower(x).compile().memory_analysis().temp_size_in_bytes


def test_backward_memory_does_not_grow_with_iterations():
  """Autodiff through unrolled CG kept every iterate: temp memory grew ~linearly.

  With the implicit adjoint (and the CG as a fori_loop) the backward holds a
  few coefficient arrays whatever n_iter is: the same bytes from 3 to 16
  steps (206 KB; 2 steps, a one-pass loop, 162 KB); through the unrolled
  CG it was 3.2x from 2 to 8 steps (1.1 MB -> 3.5 MB).
  """
  grid = grids.healpix(8)
  few, many = _grad_temp_bytes(grid, 3), _grad_temp_bytes(grid, 12)
  assert many < 1.1 * few, (few, many)


def test_preconditioner_is_symmetric_and_keeps_real_field_symmetry():
  lmax = 12
  p = tables.healpix_preconditioner(grids.healpix(8), lmax, 0)
  np.testing.assert_allclose(p, np.transpose(p, (0, 2, 1)), atol=1e-14)
  # Spin 0: P_{-m} = P_m, so P maps a_{l,-m} = (-1)^m conj(a_lm) to itself.
  np.testing.assert_allclose(p, p[::-1], atol=1e-12)
  # Positive definite on the valid degrees of every m.
  for i, m in enumerate(range(-lmax, lmax + 1)):
    assert np.linalg.eigvalsh(p[i, abs(m):, abs(m):]).min() > 0.5


@pytest.mark.parametrize('spin', [0, 1])
def test_whitening_is_the_inverse_square_root_of_the_gram_matrices(spin):
  """G^{-1/2} of the complex solver against the inverse Gram matrices.

  Reference: the Gram matrices S_m^T W S_m built here from the synthesis
  matrix (itself checked against ducc0). y G y = I, checked in long
  double: eigh alone gives ~2.5e-15 at nside 8, the refined y (a Newton
  step with a long-double residual) ~2e-16; bound 5e-16 and 4x better.
  And y^2 = G^{-1} (the default preconditioner).
  """
  grid, lmax = grids.healpix(8), 16
  ms = np.arange(-lmax, lmax + 1)
  synth = tables.synthesis_matrix(grid, lmax, spin, ms)
  inv = tables.healpix_preconditioner(grid, lmax, spin)
  plain = tables.healpix_preconditioner(grid, lmax, spin, power=-0.5)
  refined = tables.healpix_preconditioner(grid, lmax, spin, power=-0.5, refine=True)
  worst = {'plain': 0.0, 'refined': 0.0}
  for i, m in enumerate(ms):
    l0 = max(abs(m), abs(spin))
    s = synth[i, :, l0:]
    gram = (s.T * grid.rings.weight) @ s
    for name, y in (('plain', plain), ('refined', refined)):
      y = y[i, l0:, l0:]
      np.testing.assert_allclose(y, y.T, atol=1e-15)
      np.testing.assert_allclose(y @ y, inv[i, l0:, l0:], atol=1e-13)
      yl = y.astype(np.longdouble)  # float64 products would round at ~1e-15 themselves
      worst[name] = max(worst[name], float(np.abs(yl @ gram @ yl - np.eye(len(y))).max()))
    assert not np.any(plain[i, :l0]) and not np.any(plain[i, :, :l0])
  assert worst['refined'] < 5e-16 and worst['refined'] < worst['plain'] / 4, worst
  with pytest.raises(ValueError, match='power -0.5 only'):
    tables.healpix_preconditioner(grid, lmax, spin, refine=True)


@pytest.mark.parametrize('spin', [0, 1])
def test_preconditioning_speeds_up_convergence(x64, spin):
  """3 PCG steps on healpix:16, lmax 32: 2.3e-6 (spin 0) / 2.5e-6 (spin 1).

  Plain CG (the previous algorithm) gave 1.7e-5 / 2.0e-5 after 3 steps, so
  the 6e-6 bound fails without the preconditioner.
  """
  grid = grids.healpix(16)
  lmax = 32
  rng = np.random.default_rng(2)
  a = rng.normal(size=(lmax + 1, 2 * lmax + 1)) + 1j * rng.normal(size=(lmax + 1, 2 * lmax + 1))
  a[_coeff_projector(lmax, spin, False)(jnp.ones_like(a)) == 0] = 0
  if spin == 0:
    a = np.asarray(_coeff_projector(lmax, 0, True)(a))
  x = sht.inverse(a, grid, spin=spin)
  assert rel(sht.forward(x, grid, lmax=lmax, spin=spin, n_iter=3), a) < 6e-6


@pytest.mark.parametrize('nside', [1, 2, 4, 8])
@pytest.mark.parametrize('real', [True, False])
def test_ring_round_trip_without_pixels_equals_synthesis_then_analysis(x64, nside, real):
  """The CG normal operator's longitude part folds aliased orders exactly.

  Reference: the pixel-space round trip (per-ring inverse FFT, then FFT),
  itself checked against ducc0 through the transforms. Up to 4 nside, past
  grid.lmax, so the short polar rings and the belt's m = +-2 nside alias.
  """
  from sphere_plugin.sht import rings  # pylint: disable=g-import-not-at-top
  grid = grids.healpix(nside)
  rng = np.random.default_rng(nside)
  for lmax in (2 * nside, 4 * nside):
    ms = np.arange(lmax + 1) if real else np.arange(-lmax, lmax + 1)
    g = jnp.asarray(rng.normal(size=(len(ms), 6, len(grid.rings.theta))))
    want = rings.analysis(rings.synthesis(g, grid, ms, real), grid, ms, real)
    got = rings.healpix_round_trip(g, grid, ms, real)
    np.testing.assert_allclose(got, want, atol=1e-13)
    if real:
      continue
    # The complex solver's form: uneven pieces of the order axis (1-row
    # first and last pieces hold m = -+lmax), each on its alias rings only,
    # return the round trip minus the identity there; every other row
    # passes through the round trip unchanged.
    g_rows, want_rows = (jnp.transpose(a, (0, 2, 1)) for a in (g, want))
    bounds = sorted({0, 1, len(ms) // 3, len(ms) // 2 + 1, len(ms) - 1, len(ms)})
    ring_sets = [rings.alias_rings(grid, lmax, ms[i0:i1])
                 for i0, i1 in zip(bounds[:-1], bounds[1:])]
    pieces = [g_rows[i0:i1, r] for i0, i1, r in zip(bounds[:-1], bounds[1:], ring_sets)]
    got = rings.healpix_alias(pieces, grid, ms)
    for i0, i1, r, p, y in zip(bounds[:-1], bounds[1:], ring_sets, pieces, got):
      np.testing.assert_allclose(y + p, want_rows[i0:i1, r], atol=1e-13)
      others = np.setdiff1d(np.arange(len(grid.rings.theta)), r)
      np.testing.assert_allclose(want_rows[i0:i1, others], g_rows[i0:i1, others], atol=1e-13)
