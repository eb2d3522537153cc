"""HEALPix point location against healpy (exact index equality, edges included)."""

from __future__ import annotations

import healpy
import numpy as np
import pytest

from sphere_plugin import grids
from sphere_plugin import healpix


@pytest.mark.parametrize('nside', [1, 2, 3, 4, 7, 16, 100, 1024])
def test_ang2pix_ring_matches_healpy_on_random_points(nside):
  rng = np.random.default_rng(nside)
  z = rng.uniform(-1, 1, 200_000)
  phi = rng.uniform(-20, 20, z.size)
  expected = healpy.ang2pix(nside, np.arccos(z), np.mod(phi, 2 * np.pi))
  got = healpix.ang2pix_ring(nside, z, phi)
  assert got.dtype == np.int64
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('nside', [1, 2, 3, 8, 64])
def test_ang2pix_ring_matches_healpy_near_boundaries(nside):
  rng = np.random.default_rng(100 + nside)
  # Pixel corners and edge midpoints nudged by tiny amounts in all directions,
  # ring and zone boundaries, meridians at multiples of pi/4, the poles.
  corners = healpy.boundaries(nside, np.arange(12 * nside**2), step=2)  # (npix, 3, 8)
  vec = np.moveaxis(corners, 1, -1).reshape(-1, 3)
  theta, phi = healpy.vec2ang(vec)
  z = np.cos(theta)
  z_rings = np.unique(np.cos(healpy.pix2ang(nside, np.arange(12 * nside**2))[0]))
  z_more = np.concatenate([z_rings, [2 / 3, -2 / 3, 1.0, -1.0, 0.0]])
  phi_more = np.arange(16) * np.pi / 8
  zz, pp = (g.ravel() for g in np.meshgrid(z_more, phi_more))
  z = np.concatenate([z, zz])
  phi = np.concatenate([phi, pp])
  for eps in (0.0, 1e-9, -1e-9, 1e-13, -1e-13):
    zs = np.clip(z + eps * rng.choice([-1, 0, 1], z.size), -1, 1)
    ps = phi + eps * rng.choice([-1, 0, 1], z.size)
    expected = healpy.ang2pix(nside, np.arccos(zs), np.mod(ps, 2 * np.pi))
    got = healpix.ang2pix_ring(nside, np.cos(np.arccos(zs)), ps)
    # Exactly on edges too (eps = 0), points go where healpy puts them.
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('text', ['equiangular_with_poles:1440x721',
                                  'equiangular_with_poles:16x9', 'gaussian:64x32'])
def test_ang2pix_ring_matches_healpy_on_grid_nodes(text):
  """Lat-lon nodes hit HEALPix edges and corners exactly (lat 0, lon 0, ...)."""
  grid = grids.parse(text)
  theta = np.pi / 2 - np.radians(grid.latitudes)
  lon = np.radians(grid.longitudes)
  theta, lon = (g.ravel() for g in np.meshgrid(theta, lon))
  for nside in (1, 2, 3, 4, 8, 256):
    np.testing.assert_array_equal(healpix.ang2pix_ring(nside, np.cos(theta), lon),
                                  healpy.ang2pix(nside, theta, lon))
