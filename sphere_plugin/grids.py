"""Grids on the sphere: Gaussian, equiangular (with and without poles), HEALPix.

Every grid is a frozen, hashable dataclass, so transform tables can be cached
per grid. Conventions (see the README):

* Lat-lon grids have spatial shape ``(nlon, nlat)``: longitude first, latitude
  ascending (south to north), as in dinosaur, NeuralGCM and WeatherBench2.
  Longitudes are ``360 * k / nlon`` degrees, k = 0..nlon-1.
* HEALPix grids have spatial shape ``(npix,)`` in RING order (north to south).
  NESTED order is reached with :func:`ring_to_nested` / :func:`nested_to_ring`.
  Datasets may store HEALPix cells in NESTED or any order their attrs declare
  (xdggs, CF 1.13, easy.gems): :func:`healpix_layout` reads it, :func:`to_ring`
  reorders, :func:`healpix_coords` describes output for all three.
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

    HEALPix has no exact quadrature: the forward transform is a least-squares
    solve (preconditioned CG, `sht.default_n_iter` steps) that recovers
    band-limited maps to ~3e-7 (float32) / ~6e-16 (float64) for
    lmax <= 2*nside; between 2*nside and 3*nside - 1 it does not converge
    (relative error ~1e-2 to 1e-1 at nside 16-32 even after 12 steps), so the
    layers use lmax <= 2*nside.
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
_PIX_NAMES = ('pixel', 'pix', 'cell', 'cells', 'healpix', 'values')


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
  HEALPix is recognised from a `pixel` (or `cell`, ...) dimension whose size is
  12 * nside**2, in RING or NESTED order, declared as xdggs, CF 1.13, easy.gems
  or plain attrs do (see `healpix_layout`, which also gives the order and the
  cell ids; `to_ring` reorders). The grid itself is always RING: data in
  another order must go through `to_ring` before array code sees them.

  Raises:
    ValueError: saying what was found, when this is not a global grid we know.
  """
  dims = spatial_dims(ds)
  if len(dims) == 2:
    lon_name, lat_name = dims
    return _detect_latlon(np.asarray(ds[lat_name].values, dtype=np.float64),
                          np.asarray(ds[lon_name].values, dtype=np.float64))
  return healpix_layout(ds).grid


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
  for name, c in ds.coords.items():  # a cell-id coordinate (xdggs, CF) names the dim
    if c.ndim == 1 and (str(c.attrs.get('grid_name', '')).lower() == 'healpix'
                        or c.attrs.get('standard_name') == 'healpix_index'
                        or type(getattr(ds.xindexes.get(name), 'grid_info', None)).__name__
                        == 'HealpixInfo'):
      return (c.dims[0],)
  pix_name = _find(ds, _PIX_NAMES)
  if pix_name is not None and pix_name in ds.dims:
    return (pix_name,)
  raise ValueError(
      f'no global grid found: dims {dict(ds.sizes)}; need latitude and longitude '
      f'dims (named {_LAT_NAMES} / {_LON_NAMES}) or a HEALPix pixel dim '
      f'(named {_PIX_NAMES})')


# ----------------------------------------------------------------------------
# HEALPix datasets: the ecosystem's conventions, in and out.
#
# Read (`healpix_layout`): the order and nside may be declared by
#   * xdggs: a coordinate (usually `cell_ids`) with attrs grid_name='healpix',
#     level (nside = 2**level), indexing_scheme 'nested' (xdggs' default) or
#     'ring'; or, once `xdggs.decode`d, its HealpixIndex (`grid_info`);
#   * the zarr DGGS convention: dataset attr `dggs` = {name: 'healpix',
#     refinement_level, indexing_scheme, coordinate, ...};
#   * CF 1.13: a grid-mapping variable with grid_mapping_name='healpix',
#     refinement_level, indexing_scheme, and cell ids in a coordinate with
#     standard_name='healpix_index';
#   * easy.gems / CDO: a grid-mapping variable (`crs`) with healpix_nside and
#     healpix_order ('nest', 'nested' or 'ring');
#   * plain attrs on the dataset or the pixel coordinate: healpix_nside /
#     nside, healpix_order / order.
# All declarations must agree. Without any, the order is RING.

HEALPIX_ORDERS = ('ring', 'nested')
_HEALPIX_ORDER_NAMES = {'ring': 'ring', 'nest': 'nested', 'nested': 'nested'}
# How many missing cells a partial-sky error names.
_MISSING_SHOWN = 8


def healpix_order(value) -> str:
  """Normalises a HEALPix order name: 'ring' -> 'ring'; 'nest'/'nested' -> 'nested'.

  Raises:
    ValueError: for other names (e.g. xdggs' 'zuniq'/'nuniq', not read here).
  """
  name = _HEALPIX_ORDER_NAMES.get(str(value).strip().lower())
  if name is None:
    raise ValueError(f'unknown HEALPix order {value!r}; sphere_plugin reads and writes '
                     "'ring' and 'nested' ('nest')")
  return name


@dataclasses.dataclass(frozen=True, eq=False)
class HealpixLayout:
  """How a HEALPix dataset stores its pixels (see `healpix_layout`).

  Attributes:
    grid: the (full-sphere) grid.
    dim: the pixel dim.
    order: 'ring' or 'nested': the indexing scheme of `cell_ids`.
    cell_ids: int64 (npix,): the HEALPix index (in `order`) of the cell stored
      at each position along `dim`.
    declared_by: where the order came from, e.g. "the 'cell_ids' coordinate
      (xdggs)"; 'nothing (RING assumed)' when undeclared.
    id_coords: names of the coordinates on `dim` that hold cell ids.
  """
  grid: HealpixGrid
  dim: str
  order: str
  cell_ids: np.ndarray
  declared_by: str
  id_coords: tuple[str, ...] = ()

  @property
  def ring_index(self) -> np.ndarray:
    """int64 (npix,): the RING index of the cell stored at each position."""
    if self.order == 'ring':
      return self.cell_ids
    return healpix_lib.nested_to_ring(self.grid.nside)[self.cell_ids]

  @property
  def to_ring(self) -> np.ndarray | None:
    """Positions p with `data[..., p]` in RING order, shape (npix,); None when
    the data already are (`ring_index` is 0..npix-1)."""
    ring = self.ring_index
    if np.array_equal(ring, np.arange(ring.size)):
      return None
    return np.argsort(ring, kind='stable')


def _grid_mapping_names(ds) -> set[str]:
  """Variables named by `grid_mapping` attrs ('crs' and 'crs: cell' forms)."""
  attrs = [dict(getattr(ds, 'attrs', {}))] + [dict(v.attrs) for v in _variables(ds).values()]
  names = set()
  for a in attrs:
    if 'grid_mapping' in a:
      tokens = str(a['grid_mapping']).replace(',', ' ').split()
      keyed = [t[:-1] for t in tokens if t.endswith(':')]  # 'crs: cell' form
      names.update(keyed or tokens)
  return names


def _variables(ds) -> dict:
  """Coordinates and (for a Dataset) data variables, by name."""
  out = dict(ds.coords)
  if hasattr(ds, 'data_vars'):
    out.update(ds.data_vars)
  return out


def _is_healpix_mapping(name, var, mapping_names) -> bool:
  gm = str(var.attrs.get('grid_mapping_name', '')).lower()
  if gm == 'healpix':
    return True
  return name in mapping_names and not gm and (
      'healpix_nside' in var.attrs or 'healpix_order' in var.attrs)


def _healpix_declarations(ds, pix_name: str):
  """(nside declarations, order declarations, cell-id coordinate candidates).

  Declarations are (where, value) pairs; candidates are (coordinate name, where).
  """
  nsides, orders, ids = [], [], []

  def level(where, value):
    nsides.append((where, 2 ** int(value)))

  variables = _variables(ds)
  # xdggs: grid metadata on the cell-id coordinate.
  for name, c in ds.coords.items():
    if c.dims == (pix_name,) and str(c.attrs.get('grid_name', '')).lower() == 'healpix':
      where = f'the {name!r} coordinate (xdggs)'
      if 'level' in c.attrs:
        level(f'{where} level', c.attrs['level'])
      if 'nside' in c.attrs:
        nsides.append((f'{where} nside', int(c.attrs['nside'])))
      orders.append((f'{where} indexing_scheme', c.attrs.get('indexing_scheme', 'nested')))
      ids.append((name, where))
  # xdggs, decoded: a HealpixIndex (attrs are gone, the index holds them).
  for name, index in getattr(ds, 'xindexes', {}).items():
    info = getattr(index, 'grid_info', None)
    if info is not None and type(info).__name__ == 'HealpixInfo' and name in ds.coords and (
        ds[name].dims == (pix_name,)):
      where = f'the xdggs index of {name!r}'
      level(f'{where} (level)', info.level)
      orders.append((f'{where} (indexing_scheme)', info.indexing_scheme))
      ids.append((name, where))
  # zarr DGGS convention.
  dggs = getattr(ds, 'attrs', {}).get('dggs')
  if isinstance(dggs, dict) and str(dggs.get('name', '')).lower() == 'healpix':
    where = "the dataset attr 'dggs' (zarr DGGS convention)"
    if 'refinement_level' in dggs:
      level(f'{where} refinement_level', dggs['refinement_level'])
    orders.append((f'{where} indexing_scheme', dggs.get('indexing_scheme', 'nested')))
    coord = dggs.get('coordinate')
    if coord in ds.coords and ds[coord].dims == (pix_name,):
      ids.append((coord, where))
  # CF grid mappings (CF 1.13 and easy.gems / CDO attrs).
  mapping_names = _grid_mapping_names(ds)
  for name, v in variables.items():
    if not _is_healpix_mapping(name, v, mapping_names):
      continue
    where = f'the grid mapping {name!r}'
    if 'refinement_level' in v.attrs:
      level(f'{where} refinement_level', v.attrs['refinement_level'])
    if 'healpix_nside' in v.attrs:
      nsides.append((f'{where} healpix_nside', int(v.attrs['healpix_nside'])))
    for key in ('indexing_scheme', 'healpix_order'):
      if key in v.attrs:
        orders.append((f'{where} {key}', v.attrs[key]))
  for name, c in ds.coords.items():
    if c.dims == (pix_name,) and str(c.attrs.get('standard_name', '')) == 'healpix_index':
      ids.append((name, f'the {name!r} coordinate (CF healpix_index)'))
  # Plain attrs.
  for where, attrs in ((f'the attrs of {pix_name!r}',
                        ds[pix_name].attrs if pix_name in ds.coords else {}),
                       ('the dataset attrs', getattr(ds, 'attrs', {}))):
    for key in ('healpix_nside', 'nside'):
      if key in attrs:
        nsides.append((f'{where} ({key})', int(attrs[key])))
    for key in ('healpix_order', 'order'):
      if key in attrs:
        orders.append((f'{where} ({key})', attrs[key]))
  # Integer coordinates on the pixel dim: `cell_ids`, the dim's own coordinate.
  for name in ('cell_ids', pix_name):
    if name in ds.coords and ds[name].dims == (pix_name,) and np.issubdtype(
        ds[name].dtype, np.integer):
      ids.append((name, f'the {name!r} coordinate'))
  return nsides, orders, ids


def _agreed(declarations, what: str, normalise=lambda v: v):
  """The one value all declarations give (None if none); ValueError if they differ."""
  values = {}
  for where, value in declarations:
    values.setdefault(normalise(value), []).append(where)
  if len(values) > 1:
    said = '; '.join(f'{", ".join(w)} say{"s" if len(w) == 1 else ""} {v}'
                     for v, w in values.items())
    raise ValueError(f'the HEALPix {what} is declared inconsistently: {said}')
  if not values:
    return None, None
  (value, wheres), = values.items()
  return value, wheres[0]


def healpix_layout(ds) -> HealpixLayout:
  """Detects a HEALPix dataset's grid, pixel order and cell ids.

  Accepts RING and NESTED order declared the ecosystem's ways (xdggs, the zarr
  DGGS convention, CF 1.13's healpix grid mapping, easy.gems / CDO, plain
  `healpix_nside` / `healpix_order` attrs; see the comment above), and any
  permutation of the cells given by integer cell ids. The library works in
  RING order: `layout.to_ring` (or `to_ring(ds)`) reorders.

  Args:
    ds: a Dataset or DataArray with a HEALPix pixel dim (see `spatial_dims`).

  Returns:
    the HealpixLayout.

  Raises:
    ValueError: in one line, when the declarations disagree, the order is not
      RING or NESTED, cell ids repeat or are out of range, the data cover part
      of the sphere only (the transforms need all of it: says how many and
      which cells are missing), or per-pixel lat/lon coordinates are not the
      centres of the declared cells.
  """
  dims = spatial_dims(ds)
  if len(dims) != 1:
    raise ValueError(f'not a HEALPix dataset: its spatial dims are {dims}')
  pix_name = dims[0]
  size = int(ds.sizes[pix_name])
  nsides, orders, id_candidates = _healpix_declarations(ds, pix_name)
  declared_nside, nside_where = _agreed(nsides, 'nside')
  order, order_where = _agreed(orders, 'order', healpix_order)
  if order is None:
    order, order_where = 'ring', 'nothing (RING assumed)'
  # The cell ids: the first candidate; every other must hold the same values.
  cell_ids, id_coords = None, []
  for name, where in id_candidates:
    if name in id_coords:
      continue
    values = np.asarray(ds[name].values).astype(np.int64)
    if cell_ids is None:
      cell_ids, ids_where = values, where
    elif not np.array_equal(values, cell_ids):
      raise ValueError(f'{where} and {ids_where} hold different cell ids')
    id_coords.append(name)
  if declared_nside is not None:
    nside = int(declared_nside)
  else:
    nside = int(round(np.sqrt(size / 12)))
    if 12 * nside * nside != size:
      raise ValueError(f'dim {pix_name!r} has {size} points, which is not 12*nside^2 '
                       'for any nside: not a HEALPix grid (a partial sky needs its nside '
                       'declared, and the transforms need the full sphere)')
  if nside < 1:
    raise ValueError(f'HEALPix nside must be >= 1, {nside_where} says {nside}')
  grid = HealpixGrid(nside)
  npix = grid.npix
  if order == 'nested' and nside & (nside - 1):
    raise ValueError(f'NESTED order needs nside a power of two; {order_where} says nested '
                     f'and nside is {nside}')
  if cell_ids is None:
    if size != npix:
      not_healpix = ('' if 12 * round(np.sqrt(size / 12)) ** 2 == size
                     else ', not 12*nside^2 for any nside')
      raise ValueError(f'attrs say nside={nside} ({nside_where}) but dim {pix_name!r} has '
                       f'{size} points (npix={npix}{not_healpix}); a partial sky needs '
                       'cell ids (a cell_ids coordinate), and the transforms need the '
                       'full sphere')
    cell_ids = np.arange(npix, dtype=np.int64)
  else:
    bad = (cell_ids < 0) | (cell_ids >= npix)
    if bad.any():
      raise ValueError(f'cell ids {cell_ids[bad][:_MISSING_SHOWN].tolist()} ({ids_where}) '
                       f'are outside 0..{npix - 1} of healpix:{nside}')
    seen = np.bincount(cell_ids, minlength=npix)
    if (seen > 1).any():
      raise ValueError(f'cell ids repeat ({ids_where}): e.g. '
                       f'{np.flatnonzero(seen > 1)[:_MISSING_SHOWN].tolist()}')
    if size != npix:
      missing = np.flatnonzero(seen == 0)
      shown = ', '.join(map(str, missing[:_MISSING_SHOWN].tolist()))
      raise ValueError(
          f'partial-sky HEALPix data: {size} of the {npix} cells of healpix:{nside} '
          f'({order} order); the spherical transforms need the full sphere: '
          f'{missing.size} cells missing ({order} ids {shown}'
          f'{", ..." if missing.size > _MISSING_SHOWN else ""})')
  layout = HealpixLayout(grid=grid, dim=pix_name, order=order, cell_ids=cell_ids,
                         declared_by=order_where, id_coords=tuple(id_coords))
  _check_pixel_centres(ds, layout)
  return layout


def _check_pixel_centres(ds, layout: HealpixLayout) -> None:
  """Per-pixel lat/lon coordinates, if any, must be the centres of the declared cells."""
  pix_name = layout.dim
  lat_name, lon_name = _find(ds, _LAT_NAMES), _find(ds, _LON_NAMES)
  if (lat_name is None or lon_name is None
      or ds[lat_name].dims != (pix_name,) or ds[lon_name].dims != (pix_name,)):
    return
  lat = np.radians(np.asarray(ds[lat_name].values, np.float64))
  lon = np.radians(np.asarray(ds[lon_name].values, np.float64))
  ring = layout.ring_index
  ref_lat, ref_lon = np.radians(layout.grid.latitudes[ring]), np.radians(
      layout.grid.longitudes[ring])
  cos_d = (np.sin(lat) * np.sin(ref_lat)
           + np.cos(lat) * np.cos(ref_lat) * np.cos(lon - ref_lon))
  worst = np.degrees(np.arccos(np.clip(cos_d.min(), -1, 1)))
  if worst > 1e-3:
    raise ValueError(
        f'the per-pixel {lat_name}/{lon_name} coordinates are not the centres of the '
        f'cells of healpix:{layout.grid.nside} in {layout.order.upper()} order (off by up '
        f'to {worst:.3g} degrees; the order came from {layout.declared_by}): declare the '
        "order the data are in (e.g. healpix_order='nest')")


def to_ring(ds):
  """`ds` with its HEALPix pixel dim in RING order; lat-lon data unchanged.

  Data and the pixel dim's other coordinates (e.g. per-pixel lat/lon) move
  together; the old HEALPix description (cell-id coordinates, xdggs index,
  grid-mapping variables, order attrs) is replaced by a RING one
  (`healpix_coords` without lat/lon), so the result says RING whatever is
  selected from it later. Lazy (dask) data stay lazy.

  Args:
    ds: Dataset or DataArray on a grid `from_dataset` detects.

  Returns:
    the reordered Dataset/DataArray; `ds` itself when it already is in RING
    order (its description then stays as it is).
  """
  if len(spatial_dims(ds)) != 1:
    return ds
  layout = healpix_layout(ds)
  perm = layout.to_ring
  if perm is None:
    return ds
  dim = layout.dim
  mappings = healpix_metadata_names(ds)
  ds = ds.drop_vars([n for n in (*layout.id_coords, *mappings) if n in _variables(ds)])
  ds = ds.isel({dim: perm})
  # The stale description: order attrs and references to the dropped mappings.
  def clean(attrs):
    for key in ('healpix_order', 'order', 'healpix_nside', 'nside', 'dggs'):
      attrs.pop(key, None)
    if attrs.get('grid_mapping') is not None and set(
        str(attrs['grid_mapping']).replace(':', ' ').split()) & mappings:
      attrs.pop('grid_mapping')
  ds = ds.copy(deep=False)
  clean(ds.attrs)
  for v in _variables(ds).values():
    clean(v.attrs)
  coords = {k: v for k, v in healpix_coords(layout.grid, 'ring', dim).items()
            if k not in ('latitude', 'longitude')}
  ds = ds.assign_coords(coords)
  for v in (ds.data_vars.values() if hasattr(ds, 'data_vars') else [ds]):
    if dim in v.dims:
      v.attrs['grid_mapping'] = 'crs'
  return ds


def healpix_coords(grid: HealpixGrid | str, order: str = 'ring', dim: str = 'pixel') -> dict:
  """Coordinates that describe HEALPix data stored in `order` along `dim`.

  What `ds.sphere.regrid` writes, readable by xdggs (`xdggs.decode`), CF 1.13
  readers and easy.gems / CDO:

  * `dim`: the cell index 0..npix-1 (CF standard_name 'healpix_index', attrs
    healpix_nside / healpix_order as before);
  * `cell_ids`: the same ids with xdggs' attrs (grid_name='healpix', level,
    indexing_scheme), when nside is a power of two (xdggs and CF need a level);
  * `crs`: the grid mapping: grid_mapping_name='healpix', refinement_level,
    indexing_scheme (CF 1.13), healpix_nside, healpix_order ('ring' / 'nest',
    easy.gems and CDO); data variables name it in their `grid_mapping` attr;
  * `latitude`, `longitude`: the cell centres, degrees.

  Args:
    grid: a HEALPix grid or its text form.
    order: 'ring' or 'nested' ('nest').
    dim: the pixel dim's name.

  Returns:
    {name: (dims, values, attrs)}, what `xr.Dataset(coords=...)` takes.

  Raises:
    ValueError: 'nested' for an nside that is not a power of two.
  """
  grid = parse(grid)
  if not isinstance(grid, HealpixGrid):
    raise ValueError(f'healpix_coords needs a HEALPix grid, got {grid}')
  order = healpix_order(order)
  nside, npix = grid.nside, grid.npix
  power_of_two = not nside & (nside - 1)
  if order == 'nested' and not power_of_two:
    raise ValueError(f'NESTED order needs nside a power of two, got healpix:{nside}')
  ids = np.arange(npix, dtype=np.int64)
  ring = ids if order == 'ring' else healpix_lib.nested_to_ring(nside)
  easygems_order = 'ring' if order == 'ring' else 'nest'
  mapping = {'grid_mapping_name': 'healpix'}
  coords = {
      dim: ((dim,), ids, {'standard_name': 'healpix_index', 'units': '1',
                          'healpix_nside': nside, 'healpix_order': easygems_order}),
  }
  if power_of_two:
    level = int(nside).bit_length() - 1
    coords['cell_ids'] = ((dim,), ids, {'grid_name': 'healpix', 'level': level,
                                        'indexing_scheme': order})
    mapping.update(refinement_level=level, indexing_scheme=order)
  mapping.update(healpix_nside=nside, healpix_order=easygems_order)
  coords['crs'] = ((), np.int32(0), mapping)
  coords['latitude'] = ((dim,), grid.latitudes[ring], {'units': 'degrees_north',
                                                       'standard_name': 'latitude'})
  coords['longitude'] = ((dim,), grid.longitudes[ring], {'units': 'degrees_east',
                                                         'standard_name': 'longitude'})
  return coords


def healpix_metadata_names(ds) -> set[str]:
  """Names of the HEALPix grid-mapping variables of `ds` (such as easy.gems' `crs`):
  they describe the source layout only, so regridding drops them."""
  variables = _variables(ds)
  mapping_names = _grid_mapping_names(ds)
  return {n for n, v in variables.items() if _is_healpix_mapping(n, v, mapping_names)}


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
