"""Grid-to-grid conversion between Gaussian, equiangular and HEALPix grids.

Public API:
  regridder(source, target, method='spectral', *, lmax=None, taper=None) -> Regridder
  regrid(x, source, target, method='spectral', **options)      -> x on the target
  regrid_vector(u, v, source, target, method='spectral', ...)  -> (u, v) on the target
  cell_areas(grid)                                             -> area of each cell

Methods:
  'spectral'      analysis on the source, synthesis on the target (exact for
                  band-limited fields; the default for smooth fields). Vectors
                  use the spin-1 transform. Optional cos^2 `taper` of the top
                  degrees. Needs complete, finite fields (no NaN or
                  Inf; refused with a ValueError that counts them).
  'conservative'  first-order area-weighted remapping from exact cell overlaps
                  (lat-lon cells and HEALPix pixels); conserves the global
                  integral; NaNs are skipped by renormalising over the valid
                  overlap. The choice for fluxes and precipitation.
  'bilinear'      on the source's iso-latitude rings, periodic in longitude.
  'nearest'       nearest source pixel.

Per variable (`sphere_plugin.regrid.methods`, used by `ds.sphere.regrid` and
tools/regrid.py): 'auto' picks 'conservative' for fields with missing values
and for non-negative fluxes and masks (by name or attrs), 'spectral' for the
rest; a mapping {variable: method, '*': default} names them one by one.

Fields are (..., *grid.shape) in the grid conventions of `sphere_plugin.grids`
(lat-lon (..., nlon, nlat) latitude ascending; HEALPix (..., npix) RING).
Weights and transform tables are built once per (source, target, method,
options) and cached.
"""

from __future__ import annotations

import functools

from sphere_plugin import grids as grids_lib
from sphere_plugin.regrid import conservative
from sphere_plugin.regrid import interpolation
from sphere_plugin.regrid import memory
from sphere_plugin.regrid import methods
from sphere_plugin.regrid import spectral
from sphere_plugin.regrid.base import Regridder
from sphere_plugin.regrid.base import result_dtype
from sphere_plugin.regrid.conservative import cell_areas
from sphere_plugin.regrid.sparse import SparseRegridder
from sphere_plugin.regrid.spectral import RingingWarning
from sphere_plugin.regrid.spectral import SpectralRegridder

METHODS = ('spectral', 'conservative', 'bilinear', 'nearest')


def _conservative_weights(source, target):
  overlap = conservative.overlap_areas(source, target).tocsr()
  covered = overlap.sum(axis=1).A1
  return overlap.multiply(1.0 / covered[:, None]).tocsr()


_WEIGHTS = {
    'conservative': _conservative_weights,
    'bilinear': interpolation.bilinear_weights,
    'nearest': interpolation.nearest_weights,
}


@functools.lru_cache(maxsize=32)
def _build(source, target, method, lmax, taper) -> Regridder:
  """Sizes the regridder against the memory budget, then builds it (cached)."""
  if method == 'spectral':
    band = spectral.default_lmax(source, target) if lmax is None else lmax
    if 0 <= band <= spectral.max_lmax(source, target):  # else the regridder says why
      memory.check(source, target, method, band)
    return SpectralRegridder(source, target, lmax=lmax, taper=taper)
  memory.check(source, target, method)
  return SparseRegridder(source, target, method, _WEIGHTS[method](source, target))


def regridder(source, target, method: str = 'spectral', *, lmax: int | None = None,
              taper: float | None = None) -> Regridder:
  """The (cached) Regridder from `source` to `target`.

  Args:
    source, target: Grids or their text forms ('gaussian:64x32', 'healpix:16').
    method: one of METHODS.
    lmax: spectral only; band limit (default min(source.lmax, target.lmax)).
    taper: spectral only; fraction of the top degrees rolled off (cos^2).

  Returns:
    a Regridder: call it on fields (..., *source.shape) -> (..., *target.shape),
    or `.vector(u, v)` on (eastward, northward) pairs.

  Raises:
    MemoryError: (one line) when the grids, tables or weights would exceed
      the table budget (`sphere_plugin.regrid.memory`), before allocating.
  """
  source, target = grids_lib.parse(source), grids_lib.parse(target)
  if method not in METHODS:
    raise ValueError(f'unknown regridding method {method!r}; expected one of {METHODS}')
  if method != 'spectral' and (lmax is not None or taper is not None):
    raise ValueError(f'lmax and taper apply to the spectral method only, not {method!r}')
  return _build(source, target, method, None if lmax is None else int(lmax),
                None if taper is None else float(taper))


def regrid(x, source, target, method: str = 'spectral', **options):
  """Regrids scalar fields x (..., *source.shape) -> (..., *target.shape)."""
  return regridder(source, target, method, **options)(x)


def regrid_vector(u, v, source, target, method: str = 'spectral', **options):
  """Regrids (eastward, northward) vector fields, each (..., *source.shape)."""
  return regridder(source, target, method, **options).vector(u, v)


__all__ = ['METHODS', 'Regridder', 'SparseRegridder', 'SpectralRegridder', 'cell_areas',
           'methods', 'regrid', 'regrid_vector', 'regridder', 'result_dtype']
