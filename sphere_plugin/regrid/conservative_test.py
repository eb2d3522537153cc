"""Tests of sphere_plugin.regrid.conservative against independent references.

References: closed-form cell areas, healpy (ang2pix, pix2ang, boundaries) and
Monte-Carlo sampling of the sphere classified by healpy, dinosaur's
ConservativeRegridder for lat-lon pairs, and the NESTED hierarchy of HEALPix.
"""

import healpy
import numpy as np
import pytest
import scipy.sparse

from sphere_plugin import grids
from sphere_plugin.regrid import conservative

FOUR_PI = 4 * np.pi

GRIDS = ['gaussian:16x8', 'equiangular:12x6', 'equiangular_with_poles:16x9',
         'equiangular:3x4', 'healpix:2', 'healpix:4', 'healpix:3']


def _expected_areas(text):
  """Closed-form cell areas, flattened, computed here from the grid's nodes."""
  grid = grids.parse(text)
  if grid.kind == 'healpix':
    return np.full(grid.npix, FOUR_PI / grid.npix)
  lat = np.radians(grid.latitudes)
  edges = np.concatenate([[-np.pi / 2], (lat[1:] + lat[:-1]) / 2, [np.pi / 2]])
  band = 2 * np.pi / grid.nlon * np.diff(np.sin(edges))
  return np.tile(band, grid.nlon)  # flattened (nlon, nlat): latitude fastest


def _classify(text, z, phi):
  """Flattened cell index of points (z = sin latitude), healpy for HEALPix."""
  grid = grids.parse(text)
  if grid.kind == 'healpix':
    return healpy.ang2pix(grid.nside, np.arccos(z), phi)
  lat = np.radians(grid.latitudes)
  edges = np.sin((lat[1:] + lat[:-1]) / 2)
  j = np.searchsorted(edges, z)
  i = np.floor(phi / (2 * np.pi) * grid.nlon + 0.5).astype(np.int64) % grid.nlon
  return i * grid.nlat + j


# ----------------------------------------------------------------------------
# Cells.

def test_bounds_of_simple_grids():
  np.testing.assert_allclose(
      np.degrees(conservative.latitude_bounds('equiangular:12x6')),
      [-90, -60, -30, 0, 30, 60, 90], atol=1e-12)
  np.testing.assert_allclose(
      np.degrees(conservative.latitude_bounds('equiangular_with_poles:8x5')),
      [-90, -67.5, -22.5, 22.5, 67.5, 90], atol=1e-12)
  np.testing.assert_allclose(
      np.degrees(conservative.longitude_bounds('gaussian:8x4')),
      [-22.5, 22.5, 67.5, 112.5, 157.5, 202.5, 247.5, 292.5, 337.5], atol=1e-12)
  with pytest.raises(ValueError, match='lat-lon'):
    conservative.latitude_bounds('healpix:2')


@pytest.mark.parametrize('text', GRIDS + ['equiangular_with_poles:1440x721'])
def test_cell_areas_are_closed_form_and_sum_to_4pi(text):
  areas = conservative.cell_areas(text)
  assert areas.shape == grids.parse(text).shape and areas.dtype == np.float64
  np.testing.assert_allclose(areas.ravel(), _expected_areas(text), rtol=1e-9)
  np.testing.assert_allclose(areas.sum(), FOUR_PI, rtol=1e-13)


# ----------------------------------------------------------------------------
# HEALPix charts.

@pytest.mark.parametrize('nside', [1, 2, 3, 5])
def test_healpix_pixels_are_lattice_squares_in_the_charts(nside):
  """healpy's pixel corners land on the integer lattice (x, y) * nside."""
  npix = 12 * nside**2
  corners = healpy.boundaries(nside, np.arange(npix), step=1)  # (npix, 3, 4)
  theta, phi = healpy.vec2ang(np.moveaxis(corners, 1, -1).reshape(-1, 3))
  theta, phi = theta.reshape(npix, 4), phi.reshape(npix, 4)
  c_theta, c_phi = healpy.pix2ang(nside, np.arange(npix))
  z = np.cos(theta)
  # Unwrap corner longitudes next to the centre's; use the centre's chart
  # (quadrant) for every corner.
  phi = c_phi[:, None] + (np.mod(phi - c_phi[:, None] + np.pi, 2 * np.pi) - np.pi)
  cz = np.cos(c_theta)[:, None]
  polar = np.abs(cz) > 2 / 3 + 1e-12
  k = np.floor(c_phi * 2 / np.pi)[:, None]
  t = np.clip(phi * 2 / np.pi - k, 0, 1)
  sigma = np.sqrt(3 * np.clip(1 - np.abs(z), 0, None))
  x = np.where(polar, sigma * t, (1 - 1.5 * z) / 2 + phi * 2 / np.pi)
  y = np.where(polar, sigma * (1 - t), (1 - 1.5 * z) / 2 - phi * 2 / np.pi)
  # Corners beyond the zone of the centre (ring N / 3N pixels) are skipped.
  usable = polar | (np.abs(z) <= 2 / 3 + 1e-12)
  usable &= ~polar | (np.abs(z) >= 2 / 3 - 1e-12)
  assert usable.sum() == 4 * npix - 8 * nside  # one corner of each split pixel
  xs, ys = x * nside, y * nside
  np.testing.assert_allclose(xs[usable], np.round(xs[usable]), atol=1e-9)
  np.testing.assert_allclose(ys[usable], np.round(ys[usable]), atol=1e-9)
  # The corners span exactly one unit square around the centre.
  a = np.floor(np.where(usable, xs, np.inf).min(1) + 1e-9)
  b = np.floor(np.where(usable, ys, np.inf).min(1) + 1e-9)
  assert np.all(np.where(usable, np.abs(xs - a[:, None] - 0.5), 0) < 0.5 + 1e-9)
  assert np.all(np.where(usable, np.abs(ys - b[:, None] - 0.5), 0) < 0.5 + 1e-9)


@pytest.mark.parametrize('nside', [1, 2, 3, 4])
def test_lattice_pixel_matches_healpy_at_square_centres(nside):
  pieces = conservative._healpix_pieces(nside)  # pylint: disable=protected-access
  a = np.floor(pieces.x.min(1) * nside + 1e-9).astype(np.int64)
  b = np.floor(pieces.y.min(1) * nside + 1e-9).astype(np.int64)
  z, phi = conservative._from_chart(  # pylint: disable=protected-access
      pieces.chart, (a + 0.5) / nside, (b + 0.5) / nside)
  expected = healpy.ang2pix(nside, np.arccos(z), np.mod(phi, 2 * np.pi))
  got = conservative._lattice_pixel(nside, pieces.chart, a, b)  # pylint: disable=protected-access
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(pieces.cell, expected)
  # Every pixel appears, the split ones (rings N and 3N) twice.
  assert np.bincount(pieces.cell).sum() == 12 * nside**2 + 8 * nside


def test_chart_area_element_is_pi_over_3():
  rng = np.random.default_rng(0)
  z = np.concatenate([rng.uniform(-0.66, 0.66, 100), rng.uniform(0.67, 0.99, 100),
                      rng.uniform(-0.99, -0.67, 100)])
  phi = rng.uniform(0.01, 2 * np.pi - 0.01, z.size)
  phi = np.where(np.abs(np.mod(phi, np.pi / 2)) < 0.01, phi + 0.02, phi)
  h = 1e-6
  to_chart = conservative._to_chart  # pylint: disable=protected-access
  _, x0, y0 = to_chart(z, phi)
  _, xz, yz = to_chart(z + h, phi)
  _, xp, yp = to_chart(z, phi + h)
  jac = ((xz - x0) * (yp - y0) - (xp - x0) * (yz - y0)) / h**2
  np.testing.assert_allclose(np.abs(jac), 3 / np.pi, rtol=1e-4)
  chart, x, y = to_chart(z, phi)
  z_back, phi_back = conservative._from_chart(chart, x, y)  # pylint: disable=protected-access
  np.testing.assert_allclose(z_back, z, atol=1e-12)
  np.testing.assert_allclose(np.mod(phi_back, 2 * np.pi), phi, atol=1e-12)


# ----------------------------------------------------------------------------
# Overlap areas.

@pytest.mark.parametrize('source', GRIDS)
@pytest.mark.parametrize('target', GRIDS)
def test_overlap_marginals_are_the_cell_areas(source, target):
  overlap = conservative.overlap_areas(source, target)
  size = lambda t: int(np.prod(grids.parse(t).shape))
  assert isinstance(overlap, scipy.sparse.csr_matrix)
  assert overlap.shape == (size(target), size(source)) and overlap.dtype == np.float64
  area_t, area_s = _expected_areas(target), _expected_areas(source)
  np.testing.assert_allclose(np.asarray(overlap.sum(1)).ravel(), area_t, rtol=1e-12)
  np.testing.assert_allclose(np.asarray(overlap.sum(0)).ravel(), area_s, rtol=1e-12)
  np.testing.assert_allclose(overlap.sum(), FOUR_PI, rtol=1e-13)
  # No zero, negative or roundoff-sized entries; no duplicates.
  rows = np.repeat(np.arange(overlap.shape[0]), np.diff(overlap.indptr))
  smaller = np.minimum(area_t[rows], area_s[overlap.indices])
  assert np.all(overlap.data > 1e-15 * smaller)
  assert overlap.has_canonical_format
  # Swapping source and target transposes the matrix.
  swapped = conservative.overlap_areas(target, source)
  np.testing.assert_allclose((swapped.T - overlap).toarray(), 0, atol=1e-15)


@pytest.mark.parametrize('text', ['healpix:3', 'gaussian:16x8'])
def test_overlap_of_a_grid_with_itself_is_diagonal(text):
  overlap = conservative.overlap_areas(text, text)
  np.testing.assert_array_equal(overlap.indices, np.arange(overlap.shape[0]))
  np.testing.assert_allclose(overlap.diagonal(), _expected_areas(text), rtol=1e-13)


@pytest.mark.parametrize('source,target', [
    ('gaussian:16x8', 'healpix:4'),
    ('healpix:3', 'equiangular_with_poles:16x9'),
    ('equiangular:3x4', 'healpix:2'),
    ('healpix:3', 'healpix:4'),
])
def test_overlap_matches_monte_carlo_with_healpy(source, target):
  """2e6 uniform points classified by healpy and by lat-lon cell."""
  rng = np.random.default_rng(7)
  n = 2_000_000
  z = rng.uniform(-1, 1, n)  # uniform on the sphere
  phi = rng.uniform(0, 2 * np.pi, n)
  exact = conservative.overlap_areas(source, target).toarray()
  counts = scipy.sparse.coo_matrix(
      (np.ones(n), (_classify(target, z, phi), _classify(source, z, phi))),
      shape=exact.shape).toarray()
  # Binomial counts: standard deviation of the area estimate is
  # 4pi sqrt(p (1 - p) / n) with p = area / 4pi.
  p = exact / FOUR_PI
  sd = FOUR_PI * np.sqrt(p * (1 - p) / n)
  estimate = counts * FOUR_PI / n
  nonzero = exact > 0
  assert np.max(np.abs(estimate - exact)[nonzero] / sd[nonzero]) < 5.5
  assert np.all(counts[~nonzero] == 0)  # no points where no overlap is claimed
  # Pairs with more than ~10 expected points were all hit.
  assert np.all(counts[p * n > 10] > 0)


@pytest.mark.parametrize('source,target', [
    ('gaussian:16x8', 'equiangular:12x6'),
    ('equiangular_with_poles:16x9', 'gaussian:16x8'),
    ('equiangular:12x6', 'equiangular_with_poles:64x33'),
    ('equiangular_with_poles:64x33', 'gaussian:48x24'),
    ('gaussian:16x8', 'gaussian:16x8'),
])
def test_latlon_overlap_matches_dinosaur(source, target):
  """dinosaur's ConservativeRegridder weights, in float64 JAX."""
  import jax  # pylint: disable=g-import-not-at-top
  from dinosaur import horizontal_interpolation  # pylint: disable=g-import-not-at-top
  field = np.random.default_rng(0).normal(size=grids.parse(source).shape)
  with jax.enable_x64(True):
    regridder = horizontal_interpolation.ConservativeRegridder(
        grids.to_dinosaur(source), grids.to_dinosaur(target))
    expected = np.kron(np.asarray(regridder.lon_weights), np.asarray(regridder.lat_weights))
    expected_field = np.asarray(regridder(field))
  assert expected.dtype == np.float64
  overlap = conservative.overlap_areas(source, target)
  weights = overlap.multiply(1 / overlap.sum(1)).toarray()
  np.testing.assert_allclose(weights, expected, atol=1e-12)
  # Regridding a field the same way as dinosaur (lon-first flattening).
  ours = (weights @ field.ravel()).reshape(grids.parse(target).shape)
  np.testing.assert_allclose(ours, expected_field, atol=1e-12)


@pytest.mark.parametrize('nside', [1, 2, 4])
def test_healpix_children_are_the_nested_subpixels(nside):
  fine = 2 * nside
  overlap = conservative.overlap_areas(f'healpix:{nside}', f'healpix:{fine}')
  assert overlap.shape == (12 * fine**2, 12 * nside**2)
  # Ring pixel p of nside has NESTED index q; its children are NESTED 4q..4q+3.
  q = grids.ring_to_nested(nside)
  children = grids.nested_to_ring(fine)[4 * q[:, None] + np.arange(4)]  # (npix, 4)
  expected = np.zeros(overlap.shape)
  expected[children, np.arange(12 * nside**2)[:, None]] = FOUR_PI / (12 * fine**2)
  dense = overlap.toarray()
  np.testing.assert_array_equal(dense > 0, expected > 0)
  np.testing.assert_allclose(dense, expected, rtol=1e-13, atol=0)
  back = conservative.overlap_areas(f'healpix:{fine}', f'healpix:{nside}')
  np.testing.assert_allclose(back.toarray(), expected.T, rtol=1e-13, atol=0)


def test_medium_grids_marginals():
  overlap = conservative.overlap_areas('equiangular_with_poles:240x121', 'healpix:64')
  np.testing.assert_allclose(np.asarray(overlap.sum(1)).ravel(),
                             _expected_areas('healpix:64'), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(overlap.sum(0)).ravel(),
                             _expected_areas('equiangular_with_poles:240x121'),
                             rtol=1e-12)
