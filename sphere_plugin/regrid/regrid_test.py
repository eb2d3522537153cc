"""Regridding against independent references.

* spectral: a ducc0-based regrid (ducc0 analysis on the source, ducc0
  synthesis on the target, float64) and the round trip on band-limited fields.
  Tolerance 1e-5 relative in float32: rounding (~6e-8) grows with the ~30
  degree sums and the FFTs, measured 2e-7.
* wind: an analytic solid-body rotation about a tilted axis, whose wind at the
  poles is not zero; 1e-4 of the maximum speed.
* bilinear: healpy's interpolation weights (HEALPix source) and scipy's
  RegularGridInterpolator with periodic padding (lat-lon source), to 1e-12.
* nearest: brute-force largest dot product.
"""

import ducc0
import healpy
import jax
import numpy as np
import pytest
import scipy.interpolate

from sphere_plugin import grids
from sphere_plugin import regrid
from sphere_plugin import sht
from sphere_plugin.regrid import points
from sphere_plugin.regrid import spectral
from sphere_plugin.testing.oracles import rel

DUCC_GEOMETRY = {'gaussian': 'GL', 'equiangular': 'F1', 'equiangular_with_poles': 'CC'}


def band_limited(grid, lmax, batch=3, seed=0):
  """Real random fields with degrees <= lmax, float64, (batch, *grid.shape)."""
  rng = np.random.default_rng(seed)
  shape = (batch, lmax + 1, 2 * lmax + 1)
  a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  l, m = np.arange(lmax + 1)[:, None], np.arange(-lmax, lmax + 1)[None]
  a = np.where(np.abs(m) <= l, a, 0)
  with jax.enable_x64(True):
    return np.asarray(sht.inverse(a, grid, real=False)).real


def _ducc_geometry(grid):
  if isinstance(grid, grids.HealpixGrid):
    return ducc0.healpix.Healpix_Base(grid.nside, 'RING').sht_info()
  return None


def ducc_regrid(x, source, target, lmax):
  """ducc0 analysis on `source`, synthesis on `target` (x: (batch, *source.shape))."""
  out = []
  for field in np.asarray(x, np.float64):
    if isinstance(source, grids.HealpixGrid):
      alm = ducc0.sht.pseudo_analysis(map=field[None], lmax=lmax, spin=0, maxiter=100,
                                      epsilon=1e-13, **_ducc_geometry(source))[0]
    else:
      ducc_map = np.transpose(field)[::-1][None]  # (1, ntheta north first, nphi)
      alm = ducc0.sht.analysis_2d(map=ducc_map, spin=0, lmax=lmax,
                                  geometry=DUCC_GEOMETRY[source.kind])
    if isinstance(target, grids.HealpixGrid):
      y = ducc0.sht.synthesis(alm=alm, spin=0, lmax=lmax, **_ducc_geometry(target))[0]
    else:
      y = ducc0.sht.synthesis_2d(alm=alm, spin=0, lmax=lmax, geometry=DUCC_GEOMETRY[target.kind],
                                 ntheta=target.nlat, nphi=target.nlon)[0]
      y = np.transpose(y[::-1])
    out.append(y)
  return np.stack(out)


@pytest.mark.parametrize('first,second', [('gaussian:64x32', 'healpix:16'),
                                          ('equiangular_with_poles:64x33', 'gaussian:64x32')])
def test_spectral_round_trip_matches_ducc0(first, second):
  first, second = grids.parse(first), grids.parse(second)
  lmax = spectral.default_lmax(first, second)
  x = band_limited(first, lmax)
  there = regrid.regrid(x.astype(np.float32), first, second)
  back = regrid.regrid(there, second, first)
  assert there.dtype == np.float32 and back.shape == x.shape
  ducc_there = ducc_regrid(x, first, second, lmax)
  assert rel(there, ducc_there) < 1e-5
  assert rel(back, ducc_regrid(ducc_there, second, first, lmax)) < 1e-5
  assert rel(back, x) < 1e-5


def solid_body_wind(grid, axis=(1.0, 0.5, 0.3), speed=20.0):
  """u, v of the velocity speed * (axis x r) (a degree-1 spin-1 field)."""
  axis = np.asarray(axis) / np.linalg.norm(axis)
  velocity = speed * np.cross(axis, points.xyz(grid))
  east, north = points.east_north(grid)
  u, v = np.sum(velocity * east, -1), np.sum(velocity * north, -1)
  return u.reshape(grid.shape), v.reshape(grid.shape)


def test_wind_keeps_pole_values_through_healpix():
  latlon, hp = grids.parse('equiangular_with_poles:64x33'), grids.parse('healpix:16')
  u, v = solid_body_wind(latlon)
  on_hp = regrid.regrid_vector(u.astype(np.float32), v.astype(np.float32), latlon, hp)
  back = regrid.regrid_vector(*on_hp, hp, latlon)
  scale = 20.0
  for got, want in zip(on_hp, solid_body_wind(hp)):
    assert np.max(np.abs(got - want)) < 1e-4 * scale
  for got, want in zip(back, (u, v)):
    poles = got[:, [0, -1]] - want[:, [0, -1]]
    assert np.abs(want[:, [0, -1]]).max() > 0.5 * scale  # the wind at the poles is strong
    assert np.max(np.abs(poles)) < 1e-4 * scale
    assert np.max(np.abs(got - want)) < 1e-4 * scale
  # Components regridded as scalars are wrong at the poles: why the spin-1 path exists.
  u_scalar = regrid.regrid(regrid.regrid(u, latlon, hp), hp, latlon)
  assert np.max(np.abs(u_scalar[:, [0, -1]] - u[:, [0, -1]])) > 0.1 * scale


@pytest.mark.parametrize('method', ['bilinear', 'nearest', 'conservative'])
def test_sparse_vector_regridding_is_right_at_the_poles(method):
  """Vectors go through 3-D Cartesian components, so pole pixels get their own frame."""
  source, target = grids.parse('gaussian:128x64'), grids.parse('equiangular_with_poles:64x33')
  u, v = solid_body_wind(source)
  got = regrid.regrid_vector(u, v, source, target, method)
  for g, want in zip(got, solid_body_wind(target)):
    assert np.max(np.abs(g[:, [0, -1]] - want[:, [0, -1]])) < 0.05 * 20  # first-order methods
    assert rel(g, want) < 0.05


def test_taper_window():
  np.testing.assert_array_equal(spectral.taper_window(10, None), np.ones(11))
  w = spectral.taper_window(10, 0.5)
  assert np.all(w[:6] == 1) and np.all(np.diff(w) <= 0) and 0 < w[-1] < 0.1
  with pytest.raises(ValueError, match='taper'):
    spectral.taper_window(10, 0.0)
  # A sharp step rings less with a taper.
  g = grids.parse('gaussian:64x32')
  step = np.broadcast_to(np.where(g.latitudes > 20, 1.0, 0.0), g.shape)
  with pytest.warns(UserWarning, match='non-negative field got negative values'):
    sharp = regrid.regrid(step, g, 'healpix:16')
  smooth = regrid.regrid(step - 0.5, g, 'healpix:16', taper=0.5) + 0.5
  assert smooth.min() > sharp.min() and smooth.max() < sharp.max()


def test_bilinear_matches_healpy_between_rings():
  hp = grids.parse('healpix:8')
  target = grids.parse('equiangular:64x32')
  w = regrid.regridder(hp, target, 'bilinear').weights.toarray()
  lon, lat = points.lonlat(target)
  theta = np.pi / 2 - lat
  rings = hp.rings.theta
  inside = (theta > rings.min()) & (theta < rings.max())  # healpy differs beyond the outer rings
  pix, hw = healpy.get_interp_weights(hp.nside, theta[inside], lon[inside])
  ref = np.zeros((inside.sum(), hp.npix))
  np.add.at(ref, (np.arange(inside.sum())[None].repeat(4, 0), pix), hw)
  assert inside.sum() > 0.8 * lat.size
  np.testing.assert_allclose(w[inside], ref, atol=1e-12)


def test_bilinear_latlon_matches_scipy_and_wraps_the_seam():
  source = grids.parse('gaussian:32x16')
  target = grids.parse('equiangular:97x40')
  rng = np.random.default_rng(1)
  x = rng.normal(size=source.shape)
  got = regrid.regrid(x, source, target, 'bilinear')
  # Reference: periodic padding in longitude; inside the outermost latitudes.
  lon = np.concatenate([source.longitudes, [360.0]])
  xp = np.concatenate([x, x[:1]], 0)
  interp = scipy.interpolate.RegularGridInterpolator((lon, source.latitudes), xp)
  tlon, tlat = np.meshgrid(target.longitudes, target.latitudes, indexing='ij')
  inside = (tlat > source.latitudes[0]) & (tlat < source.latitudes[-1])
  ref = interp(np.stack([tlon[inside], tlat[inside]], -1))
  np.testing.assert_allclose(got[inside], ref, atol=1e-12)
  assert np.all(np.isfinite(got))
  # Beyond the outermost ring: towards the ring's mean at the pole.
  beyond = got[:, -1]
  assert np.all((beyond >= min(x[:, -1].min(), x[:, -1].mean()) - 1e-12) &
                (beyond <= max(x[:, -1].max(), x[:, -1].mean()) + 1e-12))


@pytest.mark.parametrize('source,target', [('healpix:4', 'gaussian:32x16'),
                                           ('gaussian:16x8', 'healpix:8')])
def test_nearest_is_the_closest_pixel(source, target):
  source, target = grids.parse(source), grids.parse(target)
  x = np.random.permutation(np.prod(source.shape)).astype(float).reshape(source.shape)
  chosen = regrid.regrid(x, source, target, 'nearest').ravel().astype(int)  # pixel ids
  cosines = points.xyz(target) @ points.xyz(source).T
  # Ties are common (symmetric grids), so compare distances, not indices.
  np.testing.assert_allclose(cosines[np.arange(chosen.size), np.argsort(x.ravel())[chosen]],
                             cosines.max(axis=1), atol=1e-12)


@pytest.mark.parametrize('method', ['bilinear', 'nearest', 'conservative'])
def test_missing_values_are_renormalised(method):
  source, target = grids.parse('equiangular:36x18'), grids.parse('gaussian:24x12')
  r = regrid.regridder(source, target, method)
  x = np.full(source.shape, 3.0)
  x[5:20, 4:12] = np.nan  # "land"
  y = r(x)
  valid = ~np.isnan(y)
  np.testing.assert_allclose(y[valid], 3.0, rtol=1e-12)  # a constant stays constant
  w = r.weights.toarray()
  reaches_valid = w @ (~np.isnan(x.ravel())).astype(float) > 0
  np.testing.assert_array_equal(valid.ravel(), reaches_valid)
  # Renormalised mean over the valid sources, field by field.
  x2 = np.where(np.isnan(x), np.nan, np.random.default_rng(3).normal(size=source.shape))
  y2 = r(np.stack([x2, np.nan_to_num(x2)]))
  m = (~np.isnan(x2)).ravel()
  expected = (w[:, m] @ x2.ravel()[m]) / np.where(reaches_valid, w[:, m].sum(1), 1)
  np.testing.assert_allclose(y2[0].ravel()[reaches_valid], expected[reaches_valid], atol=1e-12)
  assert not np.isnan(y2[1]).any()


def test_regridder_is_cached_and_checks_input():
  assert regrid.regridder('healpix:4', 'gaussian:16x8') is regrid.regridder(
      grids.healpix(4), grids.gaussian(16, 8))
  with pytest.raises(ValueError, match='unknown regridding method'):
    regrid.regridder('healpix:4', 'gaussian:16x8', 'cubic')
  with pytest.raises(ValueError, match='spectral method only'):
    regrid.regridder('healpix:4', 'gaussian:16x8', 'bilinear', taper=0.2)
  with pytest.raises(ValueError, match='beyond what'):
    regrid.regridder('healpix:4', 'gaussian:64x32', lmax=40)
  with pytest.raises(ValueError, match='does not end with'):
    regrid.regrid(np.zeros((3, 16)), 'gaussian:16x8', 'healpix:4', 'nearest')
  with pytest.raises(ValueError, match='NaN'):
    regrid.regrid(np.full((16, 8), np.nan), 'gaussian:16x8', 'healpix:4')


def test_spectral_regrid_works_under_jit_and_grad():
  r = regrid.regridder('gaussian:16x8', 'healpix:4')
  x = band_limited(grids.parse('gaussian:16x8'), 7, batch=1)[0].astype(np.float32)
  y = jax.jit(r)(x)
  np.testing.assert_allclose(y, r(x), atol=1e-5)
  g = jax.grad(lambda f: (r(f) ** 2).sum())(jax.numpy.asarray(x))
  assert g.shape == x.shape and np.all(np.isfinite(g))


GRIDS = ['gaussian:16x8', 'equiangular:20x10', 'equiangular_with_poles:24x13', 'healpix:4',
         'healpix:3']


@pytest.mark.parametrize('target', GRIDS)
@pytest.mark.parametrize('source', GRIDS)
def test_conservative_preserves_the_global_integral(source, target):
  """Integral with each grid's analytic cell areas, to 1e-6 relative (float32 in/out)."""
  source, target = grids.parse(source), grids.parse(target)
  x = np.random.default_rng(4).uniform(0, 10, size=(2,) + source.shape).astype(np.float32)
  y = regrid.regrid(x, source, target, 'conservative')
  assert y.dtype == np.float32
  integral_in = np.sum(x.astype(np.float64) * regrid.cell_areas(source), axis=(-1,) if
                       len(source.shape) == 1 else (-2, -1))
  integral_out = np.sum(y.astype(np.float64) * regrid.cell_areas(target), axis=(-1,) if
                        len(target.shape) == 1 else (-2, -1))
  np.testing.assert_allclose(integral_out, integral_in, rtol=1e-6)
  constant = regrid.regrid(np.full(source.shape, 7.25), source, target, 'conservative')
  np.testing.assert_allclose(constant, 7.25, rtol=1e-12)
  assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5  # first order: no overshoot


@pytest.mark.parametrize('source,target', [('equiangular_with_poles:48x25', 'gaussian:32x16'),
                                           ('gaussian:32x16', 'equiangular:72x36')])
def test_conservative_matches_dinosaur_on_latlon_pairs(source, target):
  from dinosaur import horizontal_interpolation  # pylint: disable=g-import-not-at-top
  source, target = grids.parse(source), grids.parse(target)
  x = np.random.default_rng(5).normal(size=(2,) + source.shape)
  with jax.enable_x64(True):
    dino = horizontal_interpolation.ConservativeRegridder(grids.to_dinosaur(source),
                                                          grids.to_dinosaur(target))
    ref = np.asarray(dino(jax.numpy.asarray(x)))
  np.testing.assert_allclose(regrid.regrid(x, source, target, 'conservative'), ref, atol=1e-12)


def test_healpix_source_defaults_to_its_exact_band_limit():
  """At 3*nside-1 even a degree-1 field comes back with ~1e-3 errors; 2*nside is exact."""
  hp, target = grids.parse('healpix:16'), grids.parse('gaussian:128x64')
  assert regrid.regridder(hp, target).lmax == 32
  lon, lat = points.lonlat(hp)
  y = regrid.regrid(np.cos(lat) * np.cos(lon), hp, target)
  tlon, tlat = points.lonlat(target)
  np.testing.assert_allclose(y.ravel(), np.cos(tlat) * np.cos(tlon), atol=1e-5)


def test_numpy_inputs_of_any_shape_reuse_a_few_compiled_programs():
  r = regrid.SpectralRegridder(grids.parse('gaussian:16x8'), grids.parse('healpix:4'))
  x = band_limited(grids.parse('gaussian:16x8'), 7, batch=17).astype(np.float32)
  whole = r(x)
  for shape in [(3,), (5, 2), (), (17,)]:
    n = int(np.prod(shape))
    np.testing.assert_allclose(r(x[:n].reshape(shape + (16, 8))),
                               whole[:n].reshape(shape + (192,)), atol=1e-6)
  assert r._scalar._cache_size() == 3  # blocks of 16, 4 and 1 fields


@pytest.mark.parametrize('bad', [np.inf, -np.inf])
def test_spectral_refuses_inf_like_nan(bad):
  """One Inf used to turn the whole spectrally regridded field into NaN, silently."""
  x = np.random.default_rng(0).normal(size=(3, 16, 8))
  x[1, 5, 3] = bad
  name = '+Inf' if bad > 0 else '-Inf'
  with pytest.raises(ValueError, match=rf'non-finite values \(1 \{name} of 384\)'):
    regrid.regrid(x, 'gaussian:16x8', 'healpix:4')
  with pytest.raises(ValueError, match='non-finite'):
    regrid.regrid_vector(x, np.zeros_like(x), 'gaussian:16x8', 'healpix:4')
  y = regrid.regrid(x, 'gaussian:16x8', 'healpix:4', 'nearest')  # sparse methods take it
  assert np.isfinite(y).sum() > 0


@pytest.mark.parametrize('target,method', [('healpix:1000000', 'spectral'),
                                           ('gaussian:10000000x5000000', 'spectral'),
                                           ('healpix:1000000', 'nearest'),
                                           ('healpix:4096', 'conservative')])
def test_absurd_grids_are_refused_before_allocating(target, method):
  """These used to fail deep in numpy (or never: the spectral ones build lazily)."""
  with pytest.raises(MemoryError, match=rf'-> {target} \({method}\): .* would need .*budget'):
    regrid.regridder('gaussian:16x8', target, method)
  assert regrid.regridder('gaussian:16x8', 'healpix:1024', 'spectral').target == grids.healpix(
      1024)  # large but sane: accepted (its tables are built on first use)
