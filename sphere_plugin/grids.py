"""Grids on the sphere: Gaussian, equiangular (with and without poles), HEALPix.

Every grid is a frozen, hashable dataclass, so transform tables can be cached
per grid. Conventions (see the README):

* Lat-lon grids have spatial shape ``(nlon, nlat)``: longitude first, latitude
  ascending (south to north), as in dinosaur, NeuralGCM and WeatherBench2.
  Longitudes are ``360 * k / nlon`` degrees, k = 0..nlon-1.
* HEALPix grids have spatial shape ``(npix,)`` in RING order (north to south).
  NESTED order is reached with :func:`ring_to_nested` / :func:`nested_to_ring`.
* ``quadrature_weights`` has the grid's spatial shape and sums to 4*pi.
* Text forms: ``gaussian:64x32``, ``equiangular:64x32``,
  ``equiangular_with_poles:64x33`` (nlon x nlat) and ``healpix:16`` (nside);
  ``str(grid)`` gives that form back and :func:`parse` reads it.

Internally every grid is also a set of iso-latitude *rings* (:class:`Rings`),
which is all the spherical harmonic transforms need.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import numpy as np

from sphere_plugin import healpix as healpix_lib

LATLON_KINDS = ('gaussian', 'equiangular', 'equiangular_with_poles')
KINDS = LATLON_KINDS + ('healpix',)

# dinosaur's `latitude_spacing` names for our lat-lon kinds.
_DINOSAUR_SPACING = {
    'gaussian': 'gauss',
    'equiangular': 'equiangular',
    'equiangular_with_poles': 'equiangular_with_poles',
}


@dataclasses.dataclass(frozen=True)
class Rings:
  """Iso-latitude ring description of a grid (what the transforms consume).

  Attributes:
    theta: colatitude of each ring in radians, shape (nrings,).
    nphi: pixels per ring, shape (nrings,).
    phi0: longitude of each ring's first pixel in radians, shape (nrings,).
    weight: quadrature weight of each whole ring (sum over its pixels), shape
      (nrings,); sums to 4*pi.
    offset: index of each ring's first pixel in the flattened pixel array (RING
      order for HEALPix), shape (nrings,).
  """
  theta: np.ndarray
  nphi: np.ndarray
  phi0: np.ndarray
  weight: np.ndarray
  offset: np.ndarray


class Grid:
  """Base class of all grids. Subclasses are frozen dataclasses."""

  kind: str

  @property
  def shape(self) -> tuple[int, ...]:
    """Spatial shape: (nlon, nlat) for lat-lon grids, (npix,) for HEALPix."""
    raise NotImplementedError

  @property
  def lmax(self) -> int:
    """Largest degree the grid resolves (see each subclass)."""
    raise NotImplementedError

  @property
  def latitudes(self) -> np.ndarray:
    """Latitudes in degrees: per axis (nlat,) or per pixel (npix,)."""
    raise NotImplementedError

  @property
  def longitudes(self) -> np.ndarray:
    """Longitudes in degrees in [0, 360): per axis (nlon,) or per pixel (npix,)."""
    raise NotImplementedError

  @property
  def quadrature_weights(self) -> np.ndarray:
    """Quadrature weight per pixel, shape `self.shape`, summing to 4*pi."""
    raise NotImplementedError

  @property
  def rings(self) -> Rings:
    """The grid as iso-latitude rings, ordered as the pixel array stores them."""
    raise NotImplementedError

  @property
  def exact_quadrature_lmax(self) -> int:
    """Largest lmax for which the plain quadrature is exact for band-limited data.

    Above it (up to `lmax`), the forward transform uses a least-squares
    projection on each order m (lat-lon grids) or iterative refinement
    (HEALPix).
    """
    raise NotImplementedError

  @property
  def area_weights(self) -> np.ndarray:
    """`quadrature_weights` normalised to mean 1, float64, shape `self.shape`.

    The weights of area-weighted means (`mean(w * x)`), losses and scores;
    all 1 on HEALPix.
    """
    w = np.asarray(self.quadrature_weights, np.float64)
    return w / w.mean()


def _gauss_legendre(nlat: int) -> tuple[np.ndarray, np.ndarray]:
  x, w = np.polynomial.legendre.leggauss(nlat)  # x = cos(colat) ascending
  return np.arcsin(x), w


def _clenshaw_curtis(nlat: int) -> tuple[np.ndarray, np.ndarray]:
  """Clenshaw-Curtis nodes (poles included) and weights in cos(theta)."""
  n = nlat - 1
  theta = np.pi * np.arange(nlat) / n
  w = np.empty(nlat)
  for j in range(nlat):
    s = 0.0
    for k in range(1, n // 2 + 1):
      b = 1.0 if 2 * k == n else 2.0
      s += b / (4 * k * k - 1) * np.cos(2 * k * theta[j])
    w[j] = (1.0 if j in (0, n) else 2.0) / n * (1.0 - s)
  lat = np.pi / 2 - theta
  return lat[::-1].copy(), w[::-1].copy()


def _fejer1(nlat: int) -> tuple[np.ndarray, np.ndarray]:
  """Fejer's first rule: nodes at (j + 1/2) pi / n, no poles."""
  n = nlat
  theta = np.pi * (np.arange(n) + 0.5) / n
  k = np.arange(1, n // 2 + 1)
  s = np.sum(np.cos(2 * np.outer(theta, k)) / (4 * k * k - 1), axis=1)
  w = 2.0 / n * (1.0 - 2.0 * s)
  lat = np.pi / 2 - theta
  return lat[::-1].copy(), w[::-1].copy()


@functools.lru_cache(maxsize=None)
def _latlon_nodes(kind: str, nlat: int) -> tuple[np.ndarray, np.ndarray]:
  """(latitudes in radians ascending, weights in cos(colat) summing to 2)."""
  if kind == 'gaussian':
    return _gauss_legendre(nlat)
  if kind == 'equiangular_with_poles':
    return _clenshaw_curtis(nlat)
  return _fejer1(nlat)


@dataclasses.dataclass(frozen=True)
class LatLonGrid(Grid):
  """A regular longitude-latitude grid.

  Attributes:
    kind: 'gaussian' (Gauss-Legendre latitudes), 'equiangular' (latitudes
      (j + 1/2) * 180/nlat - 90, no poles; WB2 "equiangular") or
      'equiangular_with_poles' (j * 180/(nlat-1) - 90, both poles; ERA5).
    nlon: number of longitudes.
    nlat: number of latitudes.
  """
  kind: str
  nlon: int
  nlat: int

  def __post_init__(self):
    if self.kind not in LATLON_KINDS:
      raise ValueError(f'unknown lat-lon grid kind {self.kind!r}; expected one of '
                       f'{LATLON_KINDS}')
    min_lat = 2 if self.kind == 'equiangular_with_poles' else 1
    if int(self.nlon) < 1 or int(self.nlat) < min_lat:
      raise ValueError(f'{self.kind} grid needs nlon >= 1 and nlat >= {min_lat}, '
                       f'got {self.nlon}x{self.nlat}')

  def __str__(self) -> str:
    return f'{self.kind}:{self.nlon}x{self.nlat}'

  @property
  def shape(self) -> tuple[int, int]:
    return (self.nlon, self.nlat)

  @property
  def lmax(self) -> int:
    """Largest degree resolved exactly (forward(inverse(c)) == c).

    Longitudes need nlon >= 2*lmax + 1. In latitude: Gaussian grids resolve
    lmax = nlat - 1 by Gauss-Legendre quadrature; equiangular grids resolve
    lmax = nlat - 1 and equiangular_with_poles lmax = nlat - 2 (a band-limited
    function is then determined by its samples on each ring set; the forward
    transform solves that exactly). E.g. gaussian:64x32 -> 31 (TL31),
    equiangular_with_poles:1440x721 -> 719.
    """
    lat_limit = self.nlat - 2 if self.kind == 'equiangular_with_poles' else self.nlat - 1
    return max(0, min(lat_limit, (self.nlon - 1) // 2))

  @property
  def exact_quadrature_lmax(self) -> int:
    if self.kind == 'gaussian':
      lat_limit = self.nlat - 1  # degree 2*nlat - 1 >= 2*lmax
    else:
      # Clenshaw-Curtis and Fejer rules on n nodes are exact to degree n - 1.
      lat_limit = (self.nlat - 1) // 2
    return max(0, min(lat_limit, (self.nlon - 1) // 2))

  @property
  def latitudes(self) -> np.ndarray:
    return np.degrees(_latlon_nodes(self.kind, self.nlat)[0])

  @property
  def longitudes(self) -> np.ndarray:
    return 360.0 * np.arange(self.nlon) / self.nlon

  @property
  def latitude_weights(self) -> np.ndarray:
    """Quadrature weights in sin(latitude), shape (nlat,), summing to 2."""
    return _latlon_nodes(self.kind, self.nlat)[1].copy()

  @property
  def quadrature_weights(self) -> np.ndarray:
    w = self.latitude_weights * (2 * np.pi / self.nlon)
    return np.broadcast_to(w, self.shape).copy()

  @property
  def rings(self) -> Rings:
    lat, w = _latlon_nodes(self.kind, self.nlat)
    return Rings(theta=np.pi / 2 - lat,
                 nphi=np.full(self.nlat, self.nlon),
                 phi0=np.zeros(self.nlat),
                 weight=2 * np.pi * w,
                 offset=np.arange(self.nlat) * self.nlon)


@dataclasses.dataclass(frozen=True)
class HealpixGrid(Grid):
  """A HEALPix grid (Gorski et al. 2005) in RING order.

  Attributes:
    nside: resolution parameter; npix = 12 * nside**2. Any positive integer is
      accepted in RING order; NESTED helpers need a power of two.
  """
  nside: int
  kind: str = dataclasses.field(default='healpix', init=False)

  def __post_init__(self):
    if int(self.nside) < 1:
      raise ValueError(f'healpix nside must be >= 1, got {self.nside}')

  def __str__(self) -> str:
    return f'healpix:{self.nside}'

  @property
  def npix(self) -> int:
    """Number of pixels, 12 * nside**2."""
    return 12 * self.nside**2

  @property
  def shape(self) -> tuple[int]:
    return (self.npix,)

  @property
  def lmax(self) -> int:
    """The conventional HEALPix limit 3*nside - 1 (healpy's default).

    HEALPix has no exact quadrature: the forward transform refines iteratively
    and recovers band-limited maps to ~1e-5 (float32) / 1e-10 (float64) for
    lmax <= 2*nside; between 2*nside and 3*nside - 1 it is a least-squares
    approximation.
    """
    return 3 * self.nside - 1

  @property
  def exact_quadrature_lmax(self) -> int:
    return 2 * self.nside

  @property
  def rings(self) -> Rings:
    return _healpix_rings(self.nside)

  @property
  def latitudes(self) -> np.ndarray:
    r = self.rings
    return np.repeat(90.0 - np.degrees(r.theta), r.nphi)

  @property
  def longitudes(self) -> np.ndarray:
    r = self.rings
    k = np.arange(self.npix) - np.repeat(r.offset, r.nphi)
    phi = np.repeat(r.phi0, r.nphi) + 2 * np.pi * k / np.repeat(r.nphi, r.nphi)
    return np.degrees(phi)

  @property
  def quadrature_weights(self) -> np.ndarray:
    return np.full(self.npix, 4 * np.pi / self.npix)


@functools.lru_cache(maxsize=None)
def _healpix_rings(nside: int) -> Rings:
  ns = nside
  i = np.arange(1, 4 * ns)  # ring numbers 1..4ns-1, north to south
  nphi = np.where(i < ns, 4 * i, np.where(i > 3 * ns, 4 * (4 * ns - i), 4 * ns))
  cap = np.minimum(i, 4 * ns - i)  # ring number counted from the nearest pole
  z = np.where(i < ns, 1 - i**2 / (3.0 * ns**2),
               np.where(i > 3 * ns, -(1 - (4 * ns - i) ** 2 / (3.0 * ns**2)),
                        4.0 / 3 - 2.0 * i / (3 * ns)))
  shifted = ((i - ns + 1) % 2 == 1)
  phi0 = np.where((i < ns) | (i > 3 * ns), np.pi / (2 * np.maximum(cap, 1)) / 2,
                  np.where(shifted, np.pi / (4 * ns), 0.0))
  offset = np.concatenate([[0], np.cumsum(nphi)[:-1]])
  npix = 12 * ns * ns
  return Rings(theta=np.arccos(np.clip(z, -1, 1)), nphi=nphi, phi0=phi0,
               weight=nphi * 4 * np.pi / npix, offset=offset)


def gaussian(nlon: int, nlat: int) -> LatLonGrid:
  """Gauss-Legendre grid with nlon x nlat points (e.g. TL31 = 64x32)."""
  return LatLonGrid('gaussian', nlon, nlat)


def equiangular(nlon: int, nlat: int) -> LatLonGrid:
  """Equiangular grid without poles (WB2 "equiangular", e.g. 64x32)."""
  return LatLonGrid('equiangular', nlon, nlat)


def equiangular_with_poles(nlon: int, nlat: int) -> LatLonGrid:
  """Equiangular grid including both poles (ERA5 0.25 deg = 1440x721)."""
  return LatLonGrid('equiangular_with_poles', nlon, nlat)


def healpix(nside: int) -> HealpixGrid:
  """HEALPix grid with the given nside, RING order."""
  return HealpixGrid(nside)


_TEXT_RE = re.compile(r'^\s*([a-z_]+)\s*:\s*(\d+)(?:\s*x\s*(\d+))?\s*$')


def parse(text: str | Grid) -> Grid:
  """Parses a grid's text form: 'gaussian:64x32', 'healpix:16', ...

  A Grid passes through unchanged. Raises ValueError with the accepted forms.
  """
  if isinstance(text, Grid):
    return text
  match = _TEXT_RE.match(str(text))
  forms = ("'gaussian:64x32', 'equiangular:64x32', 'equiangular_with_poles:64x33' "
           "(nlon x nlat) or 'healpix:16' (nside)")
  if not match:
    raise ValueError(f'cannot parse grid {text!r}; expected {forms}')
  kind, a, b = match.group(1), int(match.group(2)), match.group(3)
  if kind == 'healpix':
    if b is not None:
      raise ValueError(f'healpix takes one number (nside), got {text!r}; '
                       f'expected {forms}')
    return HealpixGrid(a)
  if kind not in LATLON_KINDS:
    raise ValueError(f'unknown grid kind {kind!r} in {text!r}; expected {forms}')
  if b is None:
    raise ValueError(f'{kind} needs nlon x nlat, got {text!r}; expected {forms}')
  return LatLonGrid(kind, a, int(b))


def unit_vectors(grid: Grid | str) -> np.ndarray:
  """Pixel centres as unit vectors (x, y, z), shape (*grid.shape, 3), float64.

  x points to latitude 0 / longitude 0, z to the north pole; lat-lon grids are
  (nlon, nlat, 3), HEALPix (npix, 3) in RING order.
  """
  grid = parse(grid)
  lat, lon = np.radians(grid.latitudes), np.radians(grid.longitudes)
  if isinstance(grid, LatLonGrid):
    lon, lat = np.meshgrid(lon, lat, indexing='ij')  # (nlon, nlat)
  return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


# HEALPix NESTED <-> RING indexing lives in `sphere_plugin.healpix`; re-exported here.
nested_to_ring = healpix_lib.nested_to_ring
ring_to_nested = healpix_lib.ring_to_nested


# ----------------------------------------------------------------------------
# dinosaur interop.

def to_dinosaur(grid: Grid, lmax: int | None = None) -> Any:
  """The `dinosaur.spherical_harmonic.Grid` with the same nodes.

  Args:
    grid: a lat-lon grid (dinosaur has no HEALPix).
    lmax: largest total wavenumber; default `grid.lmax`. dinosaur's grid gets
      `longitude_wavenumbers = lmax + 1` and `total_wavenumbers = lmax + 2`
      (its convention, as in `Grid.T21()`).
  """
  from dinosaur import spherical_harmonic  # pylint: disable=g-import-not-at-top
  grid = parse(grid)
  if not isinstance(grid, LatLonGrid):
    raise ValueError(f'dinosaur has no equivalent of {grid}: only lat-lon grids '
                     f'({", ".join(LATLON_KINDS)}) convert')
  lmax = grid.lmax if lmax is None else int(lmax)
  return spherical_harmonic.Grid(
      longitude_wavenumbers=lmax + 1, total_wavenumbers=lmax + 2,
      longitude_nodes=grid.nlon, latitude_nodes=grid.nlat,
      latitude_spacing=_DINOSAUR_SPACING[grid.kind])


def from_dinosaur(dino_grid: Any) -> LatLonGrid:
  """Our grid with the nodes of a `dinosaur.spherical_harmonic.Grid`."""
  spacing = {v: k for k, v in _DINOSAUR_SPACING.items()}
  if dino_grid.latitude_spacing not in spacing:
    raise ValueError(f'unknown dinosaur latitude_spacing {dino_grid.latitude_spacing!r}')
  if dino_grid.longitude_offset:
    raise ValueError('dinosaur grids with a longitude_offset are not supported, got '
                     f'{dino_grid.longitude_offset}')
  return LatLonGrid(spacing[dino_grid.latitude_spacing], dino_grid.longitude_nodes,
                    dino_grid.latitude_nodes)


# ----------------------------------------------------------------------------
# Detection from xarray.

_LAT_NAMES = ('latitude', 'lat')
_LON_NAMES = ('longitude', 'lon')
_PIX_NAMES = ('pixel', 'pix', 'cell', 'healpix', 'values')


def _find(ds, names):
  for n in names:
    if n in ds.coords or n in ds.dims:
      return n
  return None


def from_dataset(ds) -> Grid:
  """Detects the grid of an xarray Dataset or DataArray.

  Lat-lon grids are recognised from `latitude`/`lat` and `longitude`/`lon`
  coordinates in any order and dims order, latitude ascending or descending,
  longitude in [0, 360) or [-180, 180) (any rotation of the circle).
  HEALPix is recognised from a `pixel` (or `cell`) dimension whose size is
  12 * nside**2, with attrs `healpix_nside` / `nside` (optional) and
  `healpix_order` / `order` (must be 'ring' if given).

  Raises:
    ValueError: saying what was found, when this is not a global grid we know.
  """
  dims = spatial_dims(ds)
  if len(dims) == 2:
    lon_name, lat_name = dims
    return _detect_latlon(np.asarray(ds[lat_name].values, dtype=np.float64),
                          np.asarray(ds[lon_name].values, dtype=np.float64))
  return _detect_healpix(ds, dims[0])


def spatial_dims(ds) -> tuple[str, ...]:
  """Names of the spatial dims of a Dataset/DataArray in our axis order.

  Returns (longitude_name, latitude_name) for lat-lon data, (pixel_name,) for
  HEALPix, found as `from_dataset` finds them.

  Raises:
    ValueError: when there are no such dims.
  """
  lat_name, lon_name = _find(ds, _LAT_NAMES), _find(ds, _LON_NAMES)
  if lat_name in ds.dims and lon_name in ds.dims:
    return (lon_name, lat_name)
  pix_name = _find(ds, _PIX_NAMES)
  if pix_name is not None and pix_name in ds.dims:
    return (pix_name,)
  raise ValueError(
      f'no global grid found: dims {dict(ds.sizes)}; need latitude and longitude '
      f'dims (named {_LAT_NAMES} / {_LON_NAMES}) or a HEALPix pixel dim '
      f'(named {_PIX_NAMES})')


def _healpix_attrs(ds, pix_name: str) -> dict:
  """HEALPix attrs from the dataset, the pixel coordinate and any grid-mapping variable."""
  attrs = dict(getattr(ds, 'attrs', {}))
  if pix_name in ds.coords:
    attrs.update(ds[pix_name].attrs)
  variables = getattr(ds, 'variables', {})
  # CF grid mapping (easy.gems / nextGEMS style: a `crs` variable).
  mapping_names = {str(v.attrs['grid_mapping']) for v in variables.values()
                   if 'grid_mapping' in v.attrs}
  if hasattr(ds, 'attrs') and 'grid_mapping' in ds.attrs:
    mapping_names.add(str(ds.attrs['grid_mapping']))
  for name, v in variables.items():
    if name in mapping_names or str(v.attrs.get('grid_mapping_name', '')).lower() == 'healpix':
      attrs.update(v.attrs)
  return attrs


def _detect_healpix(ds, pix_name: str) -> HealpixGrid:
  npix = int(ds.sizes[pix_name])
  attrs = _healpix_attrs(ds, pix_name)
  nside = int(round(np.sqrt(npix / 12)))
  if 12 * nside * nside != npix:
    raise ValueError(f'dim {pix_name!r} has {npix} points, which is not 12*nside^2 '
                     'for any nside: not a HEALPix grid')
  declared = attrs.get('healpix_nside', attrs.get('nside'))
  if declared is not None and int(declared) != nside:
    raise ValueError(f'attrs say nside={declared} but dim {pix_name!r} has {npix} '
                     f'points (nside={nside})')
  order = str(attrs.get('healpix_order', attrs.get('order', 'ring'))).lower()
  if order not in ('ring',):
    raise ValueError(f'HEALPix order {order!r} found; sphere_plugin works in RING '
                     'order: reorder with grids.ring_to_nested / nested_to_ring')
  grid = HealpixGrid(nside)
  # The data must be stored in RING order, pixel i at index i: check what the
  # coordinates say.
  if pix_name in ds.coords and np.issubdtype(ds[pix_name].dtype, np.integer):
    if np.any(np.asarray(ds[pix_name].values) != np.arange(npix)):
      raise ValueError(f'the {pix_name!r} coordinate is not 0..{npix - 1} in order; sort '
                       f'the data by it first (ds.sortby({pix_name!r}))')
  lat_name, lon_name = _find(ds, _LAT_NAMES), _find(ds, _LON_NAMES)
  if (lat_name is not None and lon_name is not None
      and ds[lat_name].dims == (pix_name,) and ds[lon_name].dims == (pix_name,)):
    lat = np.radians(np.asarray(ds[lat_name].values, np.float64))
    lon = np.radians(np.asarray(ds[lon_name].values, np.float64))
    ref_lat, ref_lon = np.radians(grid.latitudes), np.radians(grid.longitudes)
    cos_d = (np.sin(lat) * np.sin(ref_lat)
             + np.cos(lat) * np.cos(ref_lat) * np.cos(lon - ref_lon))
    worst = np.degrees(np.arccos(np.clip(cos_d.min(), -1, 1)))
    if worst > 1e-3:
      raise ValueError(f'the per-pixel {lat_name}/{lon_name} coordinates are not the '
                       f'RING-order centres of healpix:{nside} (off by up to {worst:.3g} '
                       'degrees); NESTED data must be reordered with '
                       'grids.nested_to_ring first')
  return grid


def _latlon_candidates(nlat: int):
  for kind in LATLON_KINDS:
    if kind == 'equiangular_with_poles' and nlat < 2:
      continue
    yield kind, np.degrees(_latlon_nodes(kind, nlat)[0])


def _detect_latlon(lat: np.ndarray, lon: np.ndarray) -> LatLonGrid:
  if lat.ndim != 1 or lon.ndim != 1:
    raise ValueError(f'latitude and longitude must be 1-D, got shapes {lat.shape} and '
                     f'{lon.shape}')
  nlat, nlon = lat.size, lon.size
  order = 'descending' if nlat > 1 and lat[0] > lat[-1] else 'ascending'
  lat_sorted = np.sort(lat)
  spacing = np.diff(lat_sorted).mean() if nlat > 1 else float('nan')
  desc = (f'latitude coordinate has {nlat} points from {lat[0]:g} to {lat[-1]:g} '
          f'with spacing {spacing:.6g} ({order})')
  # Tolerance: coordinates are often stored in float32.
  tol = max(1e-4, 1e-5 * 180)
  # The closest candidate within tolerance (Gaussian and equiangular latitudes
  # come within 0.02 degrees of each other at a few thousand latitudes).
  kind, best = None, np.inf
  for k, ref in _latlon_candidates(nlat):
    dev = np.max(np.abs(lat_sorted - ref))
    if dev < tol * (10 if k == 'gaussian' else 1) and dev < best:
      kind, best = k, dev
  if kind is None:
    raise ValueError(f'{desc}: this is not a global Gaussian, equiangular or '
                     'equiangular_with_poles latitude set')
  grid_text = f'{kind}:{2 * nlat if kind != "equiangular_with_poles" else 2 * (nlat - 1)}x{nlat}'
  # Longitudes: equally spaced, covering the circle once, starting at 0 modulo 360.
  lon_mod = np.mod(lon, 360.0)
  expected_step = 360.0 / nlon if nlon else float('nan')
  steps = np.mod(np.diff(lon), 360.0)
  # The step from the last longitude back round to the first must be one step
  # too; otherwise per-step errors below the tolerance add up (1439 points
  # 0.25 degrees apart would pass as 1439 points 360/1439 apart).
  wrap = np.mod(lon[0] - lon[-1] - expected_step + 180.0, 360.0) - 180.0 if nlon else 0.0
  ok = (nlon >= 1 and np.all(np.abs(steps - expected_step) < 1e-3)
        and abs(wrap) < 1e-3
        and np.min(np.minimum(lon_mod, 360 - lon_mod)) < 1e-3)
  if not ok:
    step_desc = (f'spacing {np.mean(steps):.6g}' if nlon > 1 else 'one point')
    raise ValueError(
        f'{desc}: this looks like {grid_text}, but longitude has {nlon} points from '
        f'{lon[0]:g} to {lon[-1]:g} with {step_desc}; a global grid needs '
        f'equally spaced longitudes covering 360 degrees once, one of them at 0')
  return LatLonGrid(kind, nlon, nlat)
