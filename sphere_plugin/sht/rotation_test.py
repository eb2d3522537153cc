"""Rotations against ducc0, analytic rotated fields, and scipy's rotation algebra."""

import ducc0
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin.testing import oracles as tt
from sphere_plugin.sht import wigner


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


ANGLES = [(0.3, 1.1, -0.7), (2.5, 0.2, 4.0), (-1.0, 2.9, 0.5)]


def matrix(alpha, beta, gamma):
  """R = R_z(alpha) R_y(beta) R_z(gamma) (intrinsic ZYZ)."""
  return Rotation.from_euler('ZYZ', [alpha, beta, gamma]).as_matrix()


def test_wigner_d_against_scipy_ylm_addition():
  """d^l_{m0}(beta) = sqrt(4pi/(2l+1)) Y_lm(beta, 0) and rows are orthonormal."""
  from scipy.special import sph_harm_y  # pylint: disable=g-import-not-at-top
  lmax, beta = 12, 0.77
  d = wigner.wigner_d(lmax, np.arange(-lmax, lmax + 1), np.arange(-lmax, lmax + 1),
                      [beta])[..., 0]
  for ell in range(lmax + 1):
    for m in range(-ell, ell + 1):
      y = sph_harm_y(ell, m, beta, 0.0).real
      assert d[lmax + m, ell, lmax] == pytest.approx(np.sqrt(4 * np.pi / (2 * ell + 1)) * y,
                                                     abs=1e-13)
    block = d[lmax - ell:lmax + ell + 1, ell, lmax - ell:lmax + ell + 1]
    np.testing.assert_allclose(block @ block.T, np.eye(2 * ell + 1), atol=1e-13)


def test_wigner_d_deep_underflow_is_finite_and_orthonormal():
  """High orders near the poles: the scaled recursion must stay exact."""
  lmax = 600
  ms = np.arange(-lmax, lmax + 1)
  d = wigner.wigner_d(lmax, ms, [0, 2], [1e-3, 0.05, np.pi - 1e-3])
  assert np.all(np.isfinite(d))
  # sum_m d^l_{m0}(theta)^2 = 1 for every l and theta.
  np.testing.assert_allclose(np.sum(d[:, :, 0, :] ** 2, axis=0), 1.0, atol=1e-11)


@pytest.mark.parametrize('angles', ANGLES)
def test_matches_ducc0_rotate_alm(x64, angles):
  lmax = 10
  a = tt.random_coeffs(lmax, real=True, seed=11)
  ours = np.asarray(sht.rotate(a, *angles))
  alpha, beta, gamma = angles
  ref = ducc0.sht.rotate_alm(tt.to_ducc(a, lmax), lmax, gamma, beta, alpha)
  np.testing.assert_allclose(tt.to_ducc(ours, lmax), ref, atol=1e-12)


def _latlon_xyz(grid):
  lon, lat = np.meshgrid(np.radians(grid.longitudes), np.radians(grid.latitudes),
                         indexing='ij')
  x = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
  east = np.stack([-np.sin(lon), np.cos(lon), 0 * lon], -1)
  north = np.stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)], -1)
  return x, east, north


@pytest.mark.parametrize('angles', ANGLES)
def test_scalar_field_rotates_as_f_of_rinv_x(x64, angles):
  """A quadratic form x^T Q x rotated is x^T (R Q R^T) x."""
  grid = grids.gaussian(32, 16)
  x, _, _ = _latlon_xyz(grid)
  q = np.random.default_rng(0).normal(size=(3, 3))
  q = q + q.T
  r = matrix(*angles)
  f = np.einsum('...i,ij,...j->...', x, q, x)
  expected = np.einsum('...i,ij,...j->...', x, r @ q @ r.T, x)
  got = sht.inverse(sht.rotate(sht.forward(f, grid), *angles), grid)
  np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize('angles', ANGLES)
def test_wind_field_rotates_as_vector(x64, angles):
  """Spin 1: V(x) = Qx - (x.Qx)x + x cross n rotates to R V(R^-1 x)."""
  grid = grids.equiangular_with_poles(32, 17)
  x, east, north = _latlon_xyz(grid)
  rng = np.random.default_rng(1)
  q = rng.normal(size=(3, 3))
  q = q + q.T
  n = rng.normal(size=3)

  def field(qq, nn):
    qx = x @ qq
    v = qx - np.sum(x * qx, -1, keepdims=True) * x + np.cross(x, nn)
    return sht.vector_to_spin(np.sum(v * east, -1), np.sum(v * north, -1))

  r = matrix(*angles)
  coeffs = sht.forward(field(q, n), grid, spin=1)
  got = sht.inverse(sht.rotate(coeffs, *angles), grid, spin=1)
  np.testing.assert_allclose(got, field(r @ q @ r.T, r @ n), atol=1e-12)


@pytest.mark.parametrize('spin', [0, 1, 2])
def test_composition(x64, spin):
  lmax = 12
  a = tt.random_coeffs(lmax, spin, seed=12)
  r1, r2 = matrix(*ANGLES[0]), matrix(*ANGLES[1])
  e12 = Rotation.from_matrix(r1 @ r2).as_euler('ZYZ')
  two_steps = sht.rotate(sht.rotate(a, *ANGLES[1]), *ANGLES[0])
  np.testing.assert_allclose(sht.rotate(a, *e12), two_steps, atol=1e-12)
  # Inverse rotation: R^-1 = R_z(-gamma) R_y(-beta) R_z(-alpha).
  alpha, beta, gamma = ANGLES[2]
  back = sht.rotate(sht.rotate(a, alpha, beta, gamma), -gamma, -beta, -alpha)
  np.testing.assert_allclose(back, a, atol=1e-12)


def test_traced_angles_jit_and_grad():
  a = tt.random_coeffs(6, 1, seed=13).astype(np.complex64)
  f = jax.jit(sht.rotate)
  np.testing.assert_allclose(f(a, 0.1, 0.2, 0.3), sht.rotate(a, 0.1, 0.2, 0.3), atol=1e-5)
  # The norm is rotation invariant: its gradient in the angles vanishes.
  g = jax.grad(lambda b: jax.numpy.sum(jax.numpy.abs(sht.rotate(a, 0.1, b, 0.3)) ** 2))(0.2)
  assert abs(float(g)) < 1e-3


def test_healpix_rotation_round_trip_through_grid():
  grid = grids.healpix(16)
  lmax = 16
  a = tt.random_coeffs(lmax, real=True, seed=14).astype(np.complex64)
  b = sht.rotate(a, 0.4, 1.3, -2.0)
  back = sht.forward(sht.inverse(b, grid), grid, lmax=lmax)
  assert tt.rel(back, b) < 1e-5
