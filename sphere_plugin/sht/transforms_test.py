"""Transforms against independent references: ducc0, s2fft, scipy's Y_lm.

Tolerances: float64 comparisons with ducc0 / s2fft / scipy use 1e-11 relative
(both sides are exact to ~1e-14; the margin covers degree-256 accumulation).
float32 round trips use the issue's 1e-5 (single precision sums over ~lmax
terms give a few 1e-7 to 1e-6).
"""

import ducc0
import jax
from jax import test_util as jax_test_util
import jax.numpy as jnp
import numpy as np
import pytest
import s2fft
from scipy.special import sph_harm_y

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin.testing.oracles import rel
from sphere_plugin.testing.oracles import random_coeffs
from sphere_plugin.testing.oracles import to_ducc

DUCC_GEOMETRY = {'gaussian': 'GL', 'equiangular_with_poles': 'CC',
                 'equiangular': 'F1'}
LATLON = ['gaussian:64x32', 'equiangular_with_poles:64x33', 'equiangular:64x32']


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def ducc_synthesis(alms, lmax, spin, grid):
  """ducc0 synthesis on our grid, returned in our (nlon, nlat) layout."""
  if isinstance(grid, grids.HealpixGrid):
    info = ducc0.healpix.Healpix_Base(grid.nside, 'RING').sht_info()
    return ducc0.sht.synthesis(alm=np.stack(alms), spin=spin, lmax=lmax, **info)
  out = ducc0.sht.synthesis_2d(alm=np.stack(alms), spin=spin, lmax=lmax,
                               geometry=DUCC_GEOMETRY[grid.kind],
                               ntheta=grid.nlat, nphi=grid.nlon)
  return np.transpose(out[:, ::-1, :], (0, 2, 1))  # north-first -> ascending


@pytest.mark.parametrize('grid', LATLON + ['healpix:8'])
def test_spin0_synthesis_matches_ducc0(x64, grid):
  grid = grids.parse(grid)
  lmax = min(grid.lmax, 16) if grid.kind == 'healpix' else grid.lmax
  a = random_coeffs(lmax, real=True)
  ref = ducc_synthesis([to_ducc(a, lmax)], lmax, 0, grid)[0]
  assert rel(sht.inverse(a, grid), ref) < 1e-12


@pytest.mark.parametrize('spin', [1, 2])
@pytest.mark.parametrize('grid', LATLON + ['healpix:8'])
def test_spin_synthesis_matches_ducc0(x64, grid, spin):
  """s2fft-convention spin-s coefficients = -(G + iC) of ducc0's (G, C) pair."""
  grid = grids.parse(grid)
  lmax = 16 if grid.kind == 'healpix' else grid.lmax
  g = random_coeffs(lmax, spin, real=True, seed=1)
  c = random_coeffs(lmax, spin, real=True, seed=2)
  maps = ducc_synthesis([to_ducc(g, lmax), to_ducc(c, lmax)], lmax, spin, grid)
  ours = sht.inverse(-(g + 1j * c), grid, spin=spin)
  assert rel(ours, maps[0] + 1j * maps[1]) < 1e-12


@pytest.mark.parametrize('spin', [0, 1, 2])
@pytest.mark.parametrize('grid', LATLON)
def test_forward_matches_ducc0_analysis(x64, grid, spin):
  grid = grids.parse(grid)
  lmax = grid.lmax
  rng = np.random.default_rng(3)
  # On Gauss-Legendre grids any field (the quadrature is the analysis). On
  # equiangular grids only band-limited fields: there the analysis is exact for
  # them, but ducc0 (interpolation on the torus) and we (weighted least squares
  # per m) treat the part above lmax differently.
  x = rng.normal(size=grid.shape) + (1j * rng.normal(size=grid.shape) if spin else 0)
  if grid.kind != 'gaussian':
    x = np.asarray(sht.inverse(sht.forward(x, grid, spin=spin), grid, spin=spin))
  ducc_map = np.transpose(x, (1, 0))[::-1]
  if spin == 0:
    ref = ducc0.sht.analysis_2d(map=ducc_map[None].real, spin=0, lmax=lmax,
                                geometry=DUCC_GEOMETRY[grid.kind])[0]
    ours = np.asarray(sht.forward(x, grid))
    ours_packed = to_ducc(ours, lmax)
    assert rel(ours_packed, ref) < 1e-11
  else:
    gc = ducc0.sht.analysis_2d(map=np.stack([ducc_map.real, ducc_map.imag]),
                               spin=spin, lmax=lmax, geometry=DUCC_GEOMETRY[grid.kind])
    ours = np.asarray(sht.forward(x, grid, spin=spin))
    # m >= 0 part of -(G + iC).
    assert rel(to_ducc(ours, lmax), -(gc[0] + 1j * gc[1])) < 1e-11


@pytest.mark.parametrize('grid', LATLON + ['healpix:4'])
def test_analytic_ylm(x64, grid):
  """Y_lm from scipy (Condon-Shortley, orthonormal) for l <= 4."""
  grid = grids.parse(grid)
  lmax = 6
  if grid.kind == 'healpix':
    lat, lon = grid.latitudes, grid.longitudes
  else:
    lon, lat = np.meshgrid(grid.longitudes, grid.latitudes, indexing='ij')
  theta, phi = np.radians(90 - lat), np.radians(lon)
  for ell in range(5):
    for m in range(-ell, ell + 1):
      y = sph_harm_y(ell, m, theta, phi)
      expected = np.zeros((lmax + 1, 2 * lmax + 1), complex)
      expected[ell, lmax + m] = 1
      got = sht.forward(y, grid, lmax=lmax)
      assert np.abs(np.asarray(got) - expected).max() < 1e-10, (ell, m)
      np.testing.assert_allclose(sht.inverse(expected, grid, real=False), y, atol=1e-12)


@pytest.mark.parametrize('spin', [0, 1, 2])
def test_spin_convention_matches_s2fft(x64, spin):
  """s2fft's Gauss-Legendre sampling with band-limit L is gaussian:(2L-1)xL."""
  big_l = 12
  grid = grids.gaussian(2 * big_l - 1, big_l)
  a = random_coeffs(big_l - 1, spin, seed=4)
  ref = s2fft.inverse(a, big_l, spin=spin, sampling='gl', method='numpy')
  ours = sht.inverse(a, grid, spin=spin, real=False)
  assert rel(np.transpose(ours)[::-1], ref) < 1e-11
  back = s2fft.forward(np.asarray(np.transpose(ours)[::-1]), big_l, spin=spin,
                       sampling='gl', method='numpy')
  assert rel(sht.forward(ours, grid, spin=spin), back) < 1e-11


def test_wind_is_spin1_and_gradient_convention(x64):
  """u + i v of the gradient of Y_lm has coefficients i sqrt(l(l+1)) delta."""
  grid = grids.gaussian(64, 32)
  lmax = grid.lmax
  lon, lat = np.meshgrid(np.radians(grid.longitudes), np.radians(grid.latitudes),
                         indexing='ij')
  h = 1e-6
  for ell, m in [(1, 0), (1, 1), (2, -1), (3, 2)]:
    psi = lambda la, lo: sph_harm_y(ell, m, np.pi / 2 - la, lo)
    u = (psi(lat, lon + h) - psi(lat, lon - h)) / (2 * h) / np.cos(lat)
    v = (psi(lat + h, lon) - psi(lat - h, lon)) / (2 * h)
    # u, v are complex here (Y_lm is complex); the map u + i v is still linear.
    coeffs = np.asarray(sht.forward(sht.vector_to_spin(u, v), grid, spin=1))
    expected = np.zeros_like(coeffs)
    expected[ell, lmax + m] = 1j * np.sqrt(ell * (ell + 1))
    assert np.abs(coeffs - expected).max() < 1e-8, (ell, m)


@pytest.mark.parametrize('grid', LATLON)
@pytest.mark.parametrize('lmax', [32, 128, 256])
def test_round_trip_accuracy(grid, lmax):
  kind = grids.parse(grid).kind
  nlat = lmax + 2 if kind == 'equiangular_with_poles' else lmax + 1
  grid = grids.LatLonGrid(kind, 2 * lmax + 2, nlat)
  for spin in ([0, 1] if lmax <= 128 else [0]):
    for dtype, tol in [(np.float32, 1e-5), (np.float64, 1e-11)]:
      with jax.enable_x64(dtype == np.float64):
        a = random_coeffs(lmax, spin, real=spin == 0, seed=lmax)
        a = a.astype(np.complex64 if dtype == np.float32 else np.complex128)
        x = sht.inverse(a, grid, spin=spin)
        assert x.dtype == (dtype if spin == 0 else np.result_type(dtype, np.complex64))
        b = sht.forward(x, grid, spin=spin)
        assert rel(b, a) < tol, (spin, dtype, rel(b, a))
        assert rel(sht.inverse(b, grid, spin=spin), x) < tol


@pytest.mark.parametrize('nside', [8, 32])
def test_healpix_refinement_accuracy(nside):
  grid = grids.healpix(nside)
  lmax = 2 * nside
  for spin in [0, 1]:
    for dtype, tol in [(np.float32, 1e-5), (np.float64, 1e-10)]:
      with jax.enable_x64(dtype == np.float64):
        a = random_coeffs(lmax, spin, real=spin == 0, seed=nside)
        a = a.astype(np.complex64 if dtype == np.float32 else np.complex128)
        x = sht.inverse(a, grid, spin=spin)
        assert rel(sht.forward(x, grid, lmax=lmax, spin=spin), a) < tol
  # Without refinement the plain quadrature is visibly worse: the iterations matter.
  assert rel(sht.forward(x, grid, lmax=lmax, spin=1, n_iter=0), a) > 1e-4


def test_parseval(x64):
  grid = grids.gaussian(128, 64)
  a = random_coeffs(grid.lmax, real=True, seed=5)
  x = np.asarray(sht.inverse(a, grid))
  assert np.sum(grid.quadrature_weights * x**2) == pytest.approx(np.sum(np.abs(a)**2), rel=1e-12)


def test_batching_jit_vmap_and_real_complex_agree():
  grid = grids.equiangular(32, 16)
  rng = np.random.default_rng(6)
  x = rng.normal(size=(3, 2) + grid.shape).astype(np.float32)
  a = sht.forward(x, grid)
  assert a.shape == (3, 2, 16, 31) and a.dtype == np.complex64
  single = jax.jit(lambda y: sht.forward(y, grid))(x[1, 0])
  np.testing.assert_allclose(a[1, 0], single, atol=1e-5)
  vm = jax.vmap(jax.vmap(lambda y: sht.forward(y, grid)))(x)
  np.testing.assert_allclose(a, vm, atol=1e-5)
  # The complex path on a real field gives the same coefficients as the real path.
  np.testing.assert_allclose(sht.forward(x.astype(np.complex64), grid), a, atol=1e-5)
  back = sht.inverse(a, grid)
  assert back.shape == x.shape and back.dtype == np.float32


def _field_and_loss(grid, batch, lmax, spin, seed):
  """A random float64 field (*batch, *grid.shape), complex for spin != 0, and
  loss(field) -> (scalar, (coefficients, weighted synthesis)) through a
  forward, a weighting of the coefficients and an inverse."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=batch + grid.shape)
  if spin:
    x = x + 1j * rng.normal(size=x.shape)
  w = (rng.normal(size=(lmax + 1, 2 * lmax + 1))
       + 1j * rng.normal(size=(lmax + 1, 2 * lmax + 1)))

  def loss(field):
    a = sht.forward(field, grid, lmax=lmax, spin=spin)
    y = sht.inverse(a * w, grid, spin=spin)
    return jnp.sum(jnp.abs(y) ** 2) + jnp.sum(jnp.abs(a) ** 2 * w.real), (a, y)
  return x, loss


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'equiangular:16x8', 'healpix:2'])
@pytest.mark.parametrize('spin', [0, 1])
def test_gradients_match_finite_differences(x64, grid, spin):
  # HEALPix: the gradient is that of the converged least-squares analysis (an
  # implicit adjoint solve, not autodiff through the iterations), so finite
  # differences agree only once the forward has converged: the float64
  # default (10 steps at nside 2) reaches ~1e-15, far below the 1e-6 tolerance.
  x, loss = _field_and_loss(grids.parse(grid), (), 3, spin, seed=7)
  jax_test_util.check_grads(lambda f: loss(f)[0], (x,), order=1, modes=['rev', 'fwd'],
                            atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('grid,lmax', [('gaussian:48x24', 23), ('healpix:4', 8)])
@pytest.mark.parametrize('spin', [0, 1])
def test_gradients_match_finite_differences_across_m_blocks(x64, grid, lmax, spin):
  """The tables are cut into m blocks (3 here, 1 at lmax 3): the backward pass
  must put each block's cotangent back in its place (it uses static splits)."""
  x, loss = _field_and_loss(grids.parse(grid), (), lmax, spin, seed=3)
  jax_test_util.check_grads(lambda f: loss(f)[0], (x,), order=1, modes=['rev', 'fwd'],
                            atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('grid,spin', [('gaussian:16x8', 0), ('gaussian:16x8', 1),
                                       ('healpix:2', 0), ('healpix:2', 1)])
def test_large_batches_in_steps_equal_one_step_with_gradients(x64, monkeypatch, grid, spin):
  """A batch over 2 x _CHUNK_BYTES is analysed by lax.map in steps (here 2
  fields a step for 7 fields: three steps and a remainder of 1); values and
  gradients must be those of one step, for the HEALPix solver's implicit
  gradient inside the loop too."""
  from sphere_plugin.sht import transforms as transforms_lib
  x, loss = _field_and_loss(grids.parse(grid), (7,), 3, spin, seed=9)
  (one, (a1, y1)), g1 = jax.value_and_grad(loss, has_aux=True)(x)
  field_bytes = x[0].size * x.dtype.itemsize
  monkeypatch.setattr(transforms_lib, '_CHUNK_BYTES', 2 * field_bytes)
  assert transforms_lib._fields_per_step(7, field_bytes) == 2
  (stepped, (a2, y2)), g2 = jax.value_and_grad(loss, has_aux=True)(x)
  assert rel(a2, a1) < 1e-13 and rel(y2, y1) < 1e-13
  assert stepped == pytest.approx(float(one), rel=1e-13)
  assert rel(g2, g1) < 1e-12


def test_bad_input_errors():
  grid = grids.gaussian(16, 8)
  with pytest.raises(ValueError, match='not resolved'):
    sht.forward(np.zeros(grid.shape), grid, lmax=8)
  with pytest.raises(ValueError, match='does not end with'):
    sht.forward(np.zeros((8, 16)), grid)
  with pytest.raises(ValueError, match='needs at least 21 longitudes'):
    sht.inverse(np.zeros((11, 21), complex), grid)
  with pytest.raises(ValueError, match='shape'):
    sht.inverse(np.zeros((4, 4), complex), grid)
  with pytest.raises(ValueError, match='HEALPix grids only'):
    sht.forward(np.zeros(grid.shape), grid, n_iter=2)
  with pytest.raises(ValueError, match='unknown grid kind'):
    sht.forward(np.zeros(grid.shape), 'gauss:16x8')


def test_table_budget_error_says_what_is_needed():
  grid = grids.gaussian(512, 256)
  need = sht.table_nbytes(grid, 255, spin=1)
  try:
    sht.set_table_budget(need // 4)
    with pytest.raises(MemoryError, match=r'need .* GiB \(budget .*lmax <= \d+'):
      sht.forward(np.zeros(grid.shape, np.complex64), grid, spin=1)
  finally:
    sht.set_table_budget(None)


@pytest.mark.parametrize('spin', [0, 1])
def test_dft_matmul_longitude_step_matches_fft(x64, spin):
  grid = grids.equiangular_with_poles(40, 21)
  a = random_coeffs(grid.lmax, spin, real=spin == 0, seed=8)
  x_fft = sht.inverse(a, grid, spin=spin, lon_method='fft')
  x_mm = sht.inverse(a, grid, spin=spin, lon_method='matmul')
  assert rel(x_mm, x_fft) < 1e-13
  np.testing.assert_allclose(sht.forward(x_mm, grid, spin=spin, lon_method='matmul'), a,
                             atol=1e-12)
  with pytest.raises(ValueError, match='longitude method'):
    sht.forward(x_mm, grid, spin=spin, lon_method='fast')
