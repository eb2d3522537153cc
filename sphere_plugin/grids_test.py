"""Tests of sphere_plugin.grids against independent references.

References: analytic integrals of x^k on [-1, 1], numpy's Gauss-Legendre
nodes, the closed-form equiangular latitudes, dinosaur's
`spherical_harmonic.Grid`, and healpy (pix2ang, ringinfo, nest2ring, ring2nest).
"""

import healpy
import numpy as np
import pytest
import xarray as xr

from sphere_plugin import grids

FOUR_PI = 4 * np.pi


# ----------------------------------------------------------------------------
# Text forms.

@pytest.mark.parametrize('text', [
    'gaussian:64x32', 'equiangular:64x32', 'equiangular_with_poles:64x33',
    'healpix:16', 'gaussian:1x1', 'equiangular_with_poles:1440x721', 'healpix:3',
])
def test_parse_str_round_trip(text):
  grid = grids.parse(text)
  assert str(grid) == text
  assert grids.parse(str(grid)) == grid
  assert hash(grids.parse(text)) == hash(grid)
  assert grids.parse(grid) is grid  # a Grid passes through


def test_parse_gives_the_right_kind_and_sizes():
  assert grids.parse('gaussian:64x32') == grids.gaussian(64, 32)
  assert grids.parse('equiangular:64x32') == grids.equiangular(64, 32)
  assert grids.parse('equiangular_with_poles:64x33') == grids.equiangular_with_poles(64, 33)
  assert grids.parse('healpix:16') == grids.healpix(16)
  assert grids.parse(' gaussian : 64 x 32 ') == grids.gaussian(64, 32)
  g = grids.parse('gaussian:64x32')
  assert (g.kind, g.nlon, g.nlat, g.shape) == ('gaussian', 64, 32, (64, 32))
  h = grids.parse('healpix:16')
  assert (h.kind, h.nside, h.npix, h.shape) == ('healpix', 16, 3072, (3072,))


@pytest.mark.parametrize('text', [
    'foo:3x4', 'gaussian:64', 'healpix:4x4', '', 'Gaussian:64x32',
    'gaussian:64x32x2', 'equiangular:-4x2', 'healpix',
])
def test_parse_bad_strings_name_the_accepted_forms(text):
  with pytest.raises(ValueError) as info:
    grids.parse(text)
  message = str(info.value)
  for form in ('gaussian:64x32', 'equiangular:64x32',
               'equiangular_with_poles:64x33', 'healpix:16'):
    assert form in message, message


@pytest.mark.parametrize('text', ['gaussian:0x32', 'equiangular_with_poles:8x1',
                                  'healpix:0'])
def test_parse_rejects_empty_grids(text):
  with pytest.raises(ValueError):
    grids.parse(text)


# ----------------------------------------------------------------------------
# Quadrature.

ALL_GRIDS = [
    'gaussian:64x32', 'gaussian:7x5', 'gaussian:1x1', 'equiangular:64x32',
    'equiangular:9x5', 'equiangular:1x1', 'equiangular_with_poles:64x33',
    'equiangular_with_poles:4x2', 'healpix:1', 'healpix:3', 'healpix:16',
]


@pytest.mark.parametrize('text', ALL_GRIDS)
def test_quadrature_weights_shape_and_sum(text):
  grid = grids.parse(text)
  w = grid.quadrature_weights
  assert w.shape == grid.shape
  assert np.all(w > 0)
  np.testing.assert_allclose(w.sum(), FOUR_PI, rtol=1e-13)
  rings = grid.rings
  np.testing.assert_allclose(rings.weight.sum(), FOUR_PI, rtol=1e-13)
  assert int(np.sum(rings.nphi)) == int(np.prod(grid.shape))


def _moment(k):
  """Integral of x^k over [-1, 1]."""
  return 0.0 if k % 2 else 2.0 / (k + 1)


def _documented_degree(kind, nlat):
  # Gauss-Legendre: 2n - 1; Clenshaw-Curtis and Fejer (first rule): n - 1.
  return 2 * nlat - 1 if kind == 'gaussian' else nlat - 1


@pytest.mark.parametrize('kind, nlat', [
    (kind, nlat) for kind in grids.LATLON_KINDS for nlat in [1, 2, 3, 5, 8, 16, 33]
    if not (kind == 'equiangular_with_poles' and nlat < 2)])  # needs both poles
def test_latlon_weights_integrate_polynomials_exactly(kind, nlat):
  grid = grids.LatLonGrid(kind, 4, nlat)
  x = np.sin(np.radians(grid.latitudes))
  w = grid.latitude_weights
  np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-14)
  degree = _documented_degree(kind, nlat)
  for k in range(degree + 1):
    np.testing.assert_allclose(np.sum(w * x**k), _moment(k), rtol=0, atol=1e-13,
                               err_msg=f'{kind} nlat={nlat} degree {k}')
  # The bound is tight: the Legendre polynomial P_k of the first even degree k
  # above it (odd degrees vanish by symmetry of the nodes) does not integrate
  # to its exact value 0.
  k = degree + 1 if (degree + 1) % 2 == 0 else degree + 2
  p_k = np.polynomial.legendre.legval(x, [0] * k + [1])
  assert abs(np.sum(w * p_k)) > 1e-5
  # The full 2D weights are the latitude weights times 2*pi/nlon.
  np.testing.assert_allclose(grid.quadrature_weights,
                             np.broadcast_to(w * 2 * np.pi / 4, (4, nlat)), rtol=1e-15)


@pytest.mark.parametrize('text', ['gaussian:16x8', 'equiangular:16x8',
                                  'equiangular_with_poles:16x9'])
def test_latlon_sphere_integral(text):
  # Integral over the sphere of cos(lon)^2 * sin(lat)^2 = pi * 2/3.
  grid = grids.parse(text)
  lon = np.radians(grid.longitudes)[:, None]
  lat = np.radians(grid.latitudes)[None, :]
  f = np.cos(lon)**2 * np.sin(lat)**2
  np.testing.assert_allclose(np.sum(grid.quadrature_weights * f), 2 * np.pi / 3,
                             rtol=1e-13)


@pytest.mark.parametrize('text', ['gaussian:64x32', 'equiangular:64x32',
                                  'equiangular_with_poles:64x33', 'gaussian:9x8'])
def test_exact_quadrature_lmax_within_quadrature_degree(text):
  # The product of two degree-L functions has degree 2L in sin(latitude) (times
  # cos(latitude)^{2m}, even), and 2L in longitude.
  grid = grids.parse(text)
  big = grid.exact_quadrature_lmax
  assert 0 <= big <= grid.lmax
  assert 2 * big <= _documented_degree(grid.kind, grid.nlat)
  assert 2 * big < grid.nlon


# ----------------------------------------------------------------------------
# Latitudes and longitudes of lat-lon grids.

@pytest.mark.parametrize('nlat', [1, 2, 7, 32, 181])
def test_gaussian_latitudes_are_legendre_roots(nlat):
  x, w = np.polynomial.legendre.leggauss(nlat)
  grid = grids.gaussian(2 * nlat, nlat)
  np.testing.assert_allclose(grid.latitudes, np.degrees(np.arcsin(x)), atol=1e-12)
  np.testing.assert_allclose(grid.latitude_weights, w, atol=1e-14)


@pytest.mark.parametrize('nlat', [1, 4, 32, 721])
def test_equiangular_latitudes_closed_form(nlat):
  grid = grids.equiangular(2 * nlat, nlat)
  expected = (np.arange(nlat) + 0.5) * 180.0 / nlat - 90.0
  np.testing.assert_allclose(grid.latitudes, expected, atol=1e-11)


@pytest.mark.parametrize('nlat', [2, 3, 33, 721])
def test_equiangular_with_poles_latitudes_closed_form(nlat):
  grid = grids.equiangular_with_poles(2 * nlat, nlat)
  expected = np.arange(nlat) * 180.0 / (nlat - 1) - 90.0
  np.testing.assert_allclose(grid.latitudes, expected, atol=1e-11)
  assert grid.latitudes[0] == pytest.approx(-90.0, abs=1e-12)
  assert grid.latitudes[-1] == pytest.approx(90.0, abs=1e-12)


@pytest.mark.parametrize('nlon', [1, 4, 64, 1440])
def test_latlon_longitudes(nlon):
  grid = grids.gaussian(nlon, 4)
  np.testing.assert_allclose(grid.longitudes, 360.0 * np.arange(nlon) / nlon, atol=1e-12)
  assert grid.longitudes.shape == (nlon,)


@pytest.mark.parametrize('text, lmax', [
    ('gaussian:64x32', 31),
    ('equiangular:64x32', 31),
    ('equiangular_with_poles:64x33', 31),
    ('equiangular_with_poles:1440x721', 719),
    ('healpix:16', 47),
    ('gaussian:128x32', 31),  # latitude-limited
    ('gaussian:16x32', 7),  # longitude-limited: nlon >= 2*lmax + 1
])
def test_lmax(text, lmax):
  assert grids.parse(text).lmax == lmax


# ----------------------------------------------------------------------------
# dinosaur.

_DINOSAUR_SPACING = {'gaussian': 'gauss', 'equiangular': 'equiangular',
                     'equiangular_with_poles': 'equiangular_with_poles'}


@pytest.mark.parametrize('text', ['gaussian:64x32', 'equiangular:64x32',
                                  'equiangular_with_poles:64x33', 'gaussian:128x64',
                                  'equiangular_with_poles:16x9'])
def test_latitudes_match_dinosaur(text):
  from dinosaur import spherical_harmonic  # pylint: disable=g-import-not-at-top
  grid = grids.parse(text)
  # Built directly with dinosaur's API, not through grids.to_dinosaur.
  dino = spherical_harmonic.Grid(
      longitude_wavenumbers=grid.lmax + 1, total_wavenumbers=grid.lmax + 2,
      longitude_nodes=grid.nlon, latitude_nodes=grid.nlat,
      latitude_spacing=_DINOSAUR_SPACING[grid.kind])
  if grid.kind == 'equiangular_with_poles':
    # dinosaur stores sin(latitude) and returns arcsin of it; arcsin is
    # ill-conditioned next to +-1 (d arcsin/dx = 1/sqrt(1 - x^2)), so when
    # sin(latitude) is held in float32 (as in some dinosaur versions / JAX
    # configurations) its latitudes next to the poles are off by up to ~1e-5 rad.
    atol = 1e-5
  else:
    atol = 1e-9
  np.testing.assert_allclose(np.asarray(dino.latitudes, np.float64),
                             np.radians(grid.latitudes), rtol=0, atol=atol)
  np.testing.assert_allclose(np.asarray(dino.longitudes, np.float64),
                             np.radians(grid.longitudes), rtol=0, atol=1e-6)


@pytest.mark.parametrize('text', ['gaussian:64x32', 'equiangular:64x32',
                                  'equiangular_with_poles:64x33', 'gaussian:16x32'])
def test_to_from_dinosaur_round_trip(text):
  grid = grids.parse(text)
  dino = grids.to_dinosaur(grid)
  assert dino.longitude_nodes == grid.nlon
  assert dino.latitude_nodes == grid.nlat
  assert dino.latitude_spacing == _DINOSAUR_SPACING[grid.kind]
  assert dino.longitude_wavenumbers == grid.lmax + 1
  assert dino.total_wavenumbers == grid.lmax + 2
  assert tuple(dino.nodal_shape) == grid.shape
  assert grids.from_dinosaur(dino) == grid
  assert grids.to_dinosaur(text) == dino  # accepts the text form too
  small = grids.to_dinosaur(grid, lmax=5)
  assert (small.longitude_wavenumbers, small.total_wavenumbers) == (6, 7)
  assert grids.from_dinosaur(small) == grid


def test_from_dinosaur_t21():
  from dinosaur import spherical_harmonic  # pylint: disable=g-import-not-at-top
  assert grids.from_dinosaur(spherical_harmonic.Grid.T21()) == grids.gaussian(64, 32)


def test_from_dinosaur_rejects_longitude_offset():
  from dinosaur import spherical_harmonic  # pylint: disable=g-import-not-at-top
  dino = spherical_harmonic.Grid(longitude_wavenumbers=8, total_wavenumbers=9,
                                 longitude_nodes=16, latitude_nodes=8,
                                 longitude_offset=0.1)
  with pytest.raises(ValueError, match='longitude_offset'):
    grids.from_dinosaur(dino)


@pytest.mark.parametrize('grid', [grids.healpix(4), 'healpix:2'])
def test_to_dinosaur_rejects_healpix(grid):
  with pytest.raises(ValueError, match='healpix'):
    grids.to_dinosaur(grid)


# ----------------------------------------------------------------------------
# HEALPix against healpy.

HEALPIX_NSIDES = [1, 2, 4, 8, 16]


@pytest.mark.parametrize('nside', HEALPIX_NSIDES + [3, 5])
def test_healpix_pixel_centres_match_healpy(nside):
  grid = grids.healpix(nside)
  npix = 12 * nside**2
  assert grid.npix == npix and grid.shape == (npix,)
  lon, lat = healpy.pix2ang(nside, np.arange(npix), lonlat=True)  # RING order
  np.testing.assert_allclose(grid.longitudes, lon, rtol=0, atol=1e-10)
  np.testing.assert_allclose(grid.latitudes, lat, rtol=0, atol=1e-10)
  assert np.all((grid.longitudes >= 0) & (grid.longitudes < 360))
  np.testing.assert_allclose(grid.quadrature_weights,
                             healpy.nside2pixarea(nside), rtol=1e-14)


# healpy.ringinfo aborts the process (uncaught C++ PlanckError) for an nside
# that is not a power of two, so only powers of two here.
@pytest.mark.parametrize('nside', HEALPIX_NSIDES)
def test_healpix_rings_match_healpy_ringinfo(nside):
  rings = grids.healpix(nside).rings
  nrings = 4 * nside - 1
  start, ringpix, costheta, _, _ = healpy.ringinfo(nside, np.arange(1, nrings + 1))
  np.testing.assert_array_equal(rings.offset, start)
  np.testing.assert_array_equal(rings.nphi, ringpix)
  np.testing.assert_allclose(np.cos(rings.theta), costheta, rtol=0, atol=1e-13)
  first_lon, _ = healpy.pix2ang(nside, start, lonlat=True)
  np.testing.assert_allclose(np.degrees(rings.phi0), first_lon, rtol=0, atol=1e-10)
  np.testing.assert_allclose(rings.weight, ringpix * healpy.nside2pixarea(nside),
                             rtol=1e-13)


@pytest.mark.parametrize('nside', HEALPIX_NSIDES + [32])
def test_nested_ring_permutations_match_healpy(nside):
  pix = np.arange(12 * nside**2)
  n2r = grids.nested_to_ring(nside)
  r2n = grids.ring_to_nested(nside)
  np.testing.assert_array_equal(n2r, healpy.nest2ring(nside, pix))
  np.testing.assert_array_equal(r2n, healpy.ring2nest(nside, pix))
  np.testing.assert_array_equal(n2r[r2n], pix)
  # The documented reordering recipes, checked with healpy's own reorder.
  rng = np.random.default_rng(nside)
  map_ring = rng.normal(size=pix.size)
  map_nested = healpy.reorder(map_ring, r2n=True)
  np.testing.assert_array_equal(map_ring[n2r], map_nested)
  np.testing.assert_array_equal(map_nested[r2n], map_ring)
  # Returned tables are copies: mutating one does not corrupt the cache.
  n2r[:] = 0
  np.testing.assert_array_equal(grids.nested_to_ring(nside), healpy.nest2ring(nside, pix))


@pytest.mark.parametrize('nside', [0, 3, 6, 12])
def test_nested_helpers_need_power_of_two(nside):
  with pytest.raises(ValueError, match='power of two'):
    grids.nested_to_ring(nside)
  with pytest.raises(ValueError, match='power of two'):
    grids.ring_to_nested(nside)


@pytest.mark.parametrize('nside', [1, 2, 3, 16, 64])
def test_healpix_lmax(nside):
  assert grids.healpix(nside).lmax == 3 * nside - 1


# ----------------------------------------------------------------------------
# Detection from xarray.

def _wb2_dataset(lat, lon, lat_name='latitude', lon_name='longitude'):
  """WeatherBench2 layout: dims (time, level, longitude, latitude)."""
  shape = (2, 3, lon.size, lat.size)
  return xr.Dataset(
      {'temperature': (('time', 'level', lon_name, lat_name),
                       np.zeros(shape, np.float32))},
      coords={'time': np.arange(2), 'level': [500, 700, 850],
              lon_name: lon, lat_name: lat})


def _era5_dataset(lat, lon):
  """ERA5 layout: dims (time, latitude, longitude)."""
  return xr.Dataset(
      {'t2m': (('time', 'latitude', 'longitude'),
               np.zeros((1, lat.size, lon.size), np.float32))},
      coords={'time': [0], 'latitude': lat, 'longitude': lon})


def _lon(nlon, start=0.0):
  return start + 360.0 * np.arange(nlon) / nlon


def test_from_dataset_wb2_equiangular():
  lat = (np.arange(32) + 0.5) * 180 / 32 - 90
  ds = _wb2_dataset(lat, _lon(64))
  assert grids.from_dataset(ds) == grids.equiangular(64, 32)
  assert grids.from_dataset(ds['temperature']) == grids.equiangular(64, 32)


def test_from_dataset_wb2_gaussian():
  lat = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(32)[0]))
  assert grids.from_dataset(_wb2_dataset(lat, _lon(64))) == grids.gaussian(64, 32)


def test_from_dataset_wb2_with_poles():
  lat = np.linspace(-90, 90, 121)
  assert (grids.from_dataset(_wb2_dataset(lat, _lon(240)))
          == grids.equiangular_with_poles(240, 121))


def test_from_dataset_fine_equiangular_is_not_taken_for_gaussian():
  # At 1440x720, Gaussian latitudes differ from equiangular ones by < 0.07 deg.
  lat = (np.arange(720) + 0.5) * 180 / 720 - 90
  ds = xr.Dataset(coords={'latitude': lat, 'longitude': _lon(1440)})
  assert grids.from_dataset(ds) == grids.equiangular(1440, 720)


def test_from_dataset_era5_descending_with_poles():
  lat = np.linspace(90, -90, 721)
  ds = _era5_dataset(lat, _lon(1440))
  assert grids.from_dataset(ds) == grids.equiangular_with_poles(1440, 721)


def test_from_dataset_era5_descending_float32():
  lat = np.linspace(90, -90, 181).astype(np.float32)
  lon = _lon(360).astype(np.float32)
  assert grids.from_dataset(_era5_dataset(lat, lon)) == grids.equiangular_with_poles(360, 181)


@pytest.mark.parametrize('kind, nlat', [('gaussian', 48), ('equiangular', 48),
                                        ('equiangular_with_poles', 49)])
def test_from_dataset_longitudes_minus_180_to_180(kind, nlat):
  grid = grids.LatLonGrid(kind, 96, nlat)
  lon = _lon(96, start=-180.0)
  assert lon.min() == -180.0 and lon.max() < 180.0
  assert grids.from_dataset(_wb2_dataset(grid.latitudes, lon)) == grid
  assert grids.from_dataset(_era5_dataset(grid.latitudes[::-1], lon)) == grid


def test_from_dataset_float32_gaussian_coordinates():
  lat = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(64)[0])).astype(np.float32)
  lon = _lon(128).astype(np.float32)
  assert lat.dtype == np.float32
  assert grids.from_dataset(_wb2_dataset(lat, lon)) == grids.gaussian(128, 64)


def test_from_dataset_lat_lon_names():
  lat = (np.arange(32) + 0.5) * 180 / 32 - 90
  ds = xr.Dataset({'z': (('lat', 'lon'), np.zeros((32, 64)))},
                  coords={'lat': lat, 'lon': _lon(64)})
  assert grids.from_dataset(ds) == grids.equiangular(64, 32)
  assert grids.from_dataset(ds['z']) == grids.equiangular(64, 32)


@pytest.mark.parametrize('where', ['dataset', 'coord'])
def test_from_dataset_healpix(where):
  nside = 8
  ds = xr.Dataset({'t': (('time', 'pixel'), np.zeros((2, 12 * nside**2)))},
                  coords={'time': [0, 1]})
  attrs = {'healpix_nside': nside, 'healpix_order': 'ring'}
  if where == 'dataset':
    ds.attrs.update(attrs)
  else:
    ds = ds.assign_coords(pixel=('pixel', np.arange(12 * nside**2), attrs))
  assert grids.from_dataset(ds) == grids.healpix(nside)
  assert grids.from_dataset(ds['t']) == grids.healpix(nside)


def test_from_dataset_healpix_without_attrs():
  ds = xr.Dataset({'t': (('pixel',), np.zeros(12 * 4**2))})
  assert grids.from_dataset(ds) == grids.healpix(4)


def _error(ds):
  with pytest.raises(ValueError) as info:
    grids.from_dataset(ds)
  return str(info.value)


def test_from_dataset_rejects_regional_grid():
  lat = np.arange(30.0, 60.25, 0.25)
  message = _error(_era5_dataset(lat, _lon(1440)))
  assert 'latitude' in message and '121' in message


def test_from_dataset_rejects_missing_longitude_in_the_middle():
  lon = np.delete(_lon(1440), 700)
  message = _error(_era5_dataset(np.linspace(90, -90, 721), lon))
  assert '1439' in message and 'longitude' in message


def test_from_dataset_rejects_missing_last_longitude():
  # 1439 points 0.25 deg apart: every step is within 2e-4 deg of 360/1439, so
  # only the gap from 359.5 back to 0 shows that a point is missing.
  lon = _lon(1440)[:-1]
  message = _error(_era5_dataset(np.linspace(90, -90, 721), lon))
  assert '1439' in message and 'longitude' in message


def test_from_dataset_rejects_duplicated_longitude_cover():
  lon = np.concatenate([_lon(64), _lon(64)])  # goes round twice
  lat = (np.arange(32) + 0.5) * 180 / 32 - 90
  message = _error(_wb2_dataset(lat, lon))
  assert '128' in message


def test_from_dataset_rejects_irregular_latitudes():
  lat = np.linspace(-90, 90, 73)
  lat[10] += 1.0
  message = _error(_era5_dataset(lat, _lon(144)))
  assert 'latitude' in message and '73' in message


def test_from_dataset_rejects_bad_pixel_count():
  ds = xr.Dataset({'t': (('pixel',), np.zeros(100))}, attrs={'healpix_nside': 3})
  message = _error(ds)
  assert '100' in message and '12*nside^2' in message


def test_from_dataset_rejects_nside_mismatch():
  ds = xr.Dataset({'t': (('pixel',), np.zeros(12 * 4**2))}, attrs={'healpix_nside': 8})
  message = _error(ds)
  assert 'nside=8' in message and '192' in message


@pytest.mark.parametrize('attrs', [{'healpix_nside': 4, 'healpix_order': 'NESTED'},
                                   {'nside': 4, 'order': 'nested'},
                                   {'healpix_order': 'nest'}])
def test_from_dataset_reads_nested_order(attrs):
  """NESTED used to be refused; it is read now, and the layout says so."""
  ds = xr.Dataset({'t': (('pixel',), np.zeros(12 * 4**2))}, attrs=attrs)
  assert grids.from_dataset(ds) == grids.healpix(4)
  layout = grids.healpix_layout(ds)
  assert layout.order == 'nested'
  np.testing.assert_array_equal(layout.ring_index, healpy.nest2ring(4, np.arange(192)))


def test_from_dataset_rejects_unknown_order():
  ds = xr.Dataset({'t': (('pixel',), np.zeros(12 * 4**2))}, attrs={'healpix_order': 'zuniq'})
  message = _error(ds)
  assert "'zuniq'" in message and 'nested' in message


def test_from_dataset_rejects_no_grid_dims():
  ds = xr.Dataset({'t': (('y', 'x'), np.zeros((4, 5)))})
  message = _error(ds)
  assert 'latitude' in message and 'pixel' in message and "'x': 5" in message


def _healpix_dataset(nside, nest=False, **attrs):
  theta, phi = healpy.pix2ang(nside, np.arange(12 * nside**2), nest=nest)
  lat, lon = 90 - np.degrees(theta), np.degrees(phi)
  return xr.Dataset({'tas': (('cell',), np.sin(np.radians(lat)))},
                    coords={'cell': np.arange(lat.size), 'lat': ('cell', lat),
                            'lon': ('cell', lon)}, attrs=attrs)


def test_from_dataset_healpix_reads_nested_and_permuted_data():
  """easy.gems-style layouts: a `cell` dim, per-pixel lat/lon, a `crs` grid mapping.

  These were refused before; now they are read and `to_ring` reorders them
  (healpy's pix2ang(nest=True) places the reference values).
  """
  ring = _healpix_dataset(8)
  assert grids.from_dataset(ring) == grids.healpix(8)
  assert grids.to_ring(ring) is ring
  nested = _healpix_dataset(8, nest=True)
  nested['crs'] = ((), 0, {'grid_mapping_name': 'healpix', 'healpix_nside': 8,
                           'healpix_order': 'nest'})
  assert grids.from_dataset(nested) == grids.healpix(8)
  assert grids.healpix_layout(nested).order == 'nested'
  np.testing.assert_array_equal(grids.to_ring(nested)['tas'].values, ring['tas'].values)
  # Undeclared, the order is RING; the per-pixel coordinates then give it away.
  with pytest.raises(ValueError, match='not the centres .* RING order'):
    grids.from_dataset(nested.drop_vars('crs'))
  # Any permutation given by the cell ids is undone.
  permuted = ring.isel(cell=np.random.default_rng(0).permutation(768))
  assert grids.from_dataset(permuted) == grids.healpix(8)
  back = grids.to_ring(permuted)
  for name in ('tas', 'lat', 'lon', 'cell'):
    np.testing.assert_array_equal(back[name].values, ring[name].values)
  # The result describes itself as RING: selecting from it cannot lose that.
  assert back.crs.attrs['healpix_order'] == 'ring' and back.tas.attrs['grid_mapping'] == 'crs'
  assert grids.healpix_layout(back[['tas']]).to_ring is None
  back_nested = grids.to_ring(nested)[['tas']]  # the crs data variable is gone, its coord kept
  assert grids.healpix_layout(back_nested).to_ring is None
