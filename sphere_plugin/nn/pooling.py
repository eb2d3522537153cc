"""Resolution changes: spectral pooling/upsampling and area-weighted spatial pooling."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import spectral


@gin.configurable(module='sphere_plugin.nn')
class SpectralPooling(nn.Module):
  """Changes the degree limit: truncation (pooling) or zero-padding (upsampling).

  Exactly rotation equivariant: it keeps or adds whole degrees. Either side may
  be spatial or spectral, and the output grid may be of another kind than the
  input's (gaussian -> healpix, ...).

  Attributes:
    lmax: output degree limit. Default: the output grid's
      `spectral.default_lmax`; required when the output is spectral.
    spins: spins of the spin axis (S entries); needed for spatial input/output.
    input_grid: grid of a spatial input, None for spectral input.
    output_grid: grid of a spatial output, None for spectral output.

  Call:
    x: (*batch, *input_grid.shape, S, C) or (*batch, L+1, 2L+1, S, C).
    Returns (*batch, *output_grid.shape, S, C) or (*batch, lmax+1, 2*lmax+1, S, C).
  """
  lmax: int | None = None
  spins: Sequence[int] = (0,)
  input_grid: Any = None
  output_grid: Any = None

  def __call__(self, x):
    spins = spectral.check_spins(x, self.spins, 'SpectralPooling')
    grid_in = spectral.as_grid(self.input_grid)
    grid_out = spectral.as_grid(self.output_grid)
    if self.lmax is not None:
      lmax = int(self.lmax)
    elif grid_out is not None:
      lmax = spectral.default_lmax(grid_out)
    else:
      raise ValueError('SpectralPooling: give lmax when the output is spectral')
    if grid_in is not None:
      spectral.check_spatial(x, grid_in, 'SpectralPooling')
      a = spectral.to_spectral(x, grid_in, min(lmax, spectral.default_lmax(grid_in)), spins)
    else:
      a = x
    a = spectral.resize(a, lmax)
    return a if grid_out is None else spectral.to_spatial(a, grid_out, spins)


def pooled_grid(grid) -> grids_lib.Grid:
  """The grid `SphericalPooling` produces from `grid` (half the resolution).

  gaussian/equiangular nlon x nlat -> nlon/2 x nlat/2 (both even);
  equiangular_with_poles nlon x (2k+1) -> nlon/2 x (k+1); healpix nside -> nside/2.
  """
  grid = grids_lib.parse(grid)
  if isinstance(grid, grids_lib.HealpixGrid):
    if grid.nside % 2:
      raise ValueError(f'SphericalPooling needs an even nside, got {grid}')
    return grids_lib.healpix(grid.nside // 2)
  if grid.nlon % 2:
    raise ValueError(f'SphericalPooling needs an even nlon, got {grid}')
  if grid.kind == 'equiangular_with_poles':
    if grid.nlat % 2 == 0:
      raise ValueError(f'SphericalPooling on equiangular_with_poles needs an odd nlat '
                       f'(rings at 2j land on the coarse rings), got {grid}')
    return grids_lib.LatLonGrid(grid.kind, grid.nlon // 2, (grid.nlat + 1) // 2)
  if grid.nlat % 2:
    raise ValueError(f'SphericalPooling needs an even nlat, got {grid}')
  return grids_lib.LatLonGrid(grid.kind, grid.nlon // 2, grid.nlat // 2)


def _latitude_pooling(grid: grids_lib.LatLonGrid) -> np.ndarray:
  """(nlat_out, nlat) area weights, rows summing to 1."""
  w = grid.latitude_weights
  n_out = pooled_grid(grid).nlat
  p = np.zeros((n_out, grid.nlat))
  for j in range(n_out):
    if grid.kind == 'equiangular_with_poles':
      # Coarse ring j sits on fine ring 2j; the neighbours are split in half.
      for i, f in ((2 * j - 1, 0.5), (2 * j, 1.0), (2 * j + 1, 0.5)):
        if 0 <= i < grid.nlat:
          p[j, i] = f * w[i]
    else:
      p[j, 2 * j:2 * j + 2] = w[2 * j:2 * j + 2]
  return p / p.sum(axis=1, keepdims=True)


@gin.configurable(module='sphere_plugin.nn')
class SphericalPooling(nn.Module):
  """Area-weighted spatial average pooling to half the resolution.

  Only approximately rotation equivariant (coarse cells are not rotations of
  each other); prefer `SpectralPooling` where equivariance matters. On HEALPix
  it averages the 4 NESTED children of each coarse pixel (equal areas, exact
  hierarchy). On lat-lon grids each coarse point averages the fine points
  around it, weighted by their quadrature weights (cell areas): longitudes
  (1/4, 1/2, 1/4) around the coarse longitude, latitudes the two fine rings
  either side (or, with poles, the coinciding ring plus half of each neighbour).

  Attributes:
    grid: the input grid; the output grid is `pooled_grid(grid)`.

  Call:
    x: (*batch, *grid.shape, S, C). Returns (*batch, *pooled_grid(grid).shape, S, C).
  """
  grid: Any

  def __call__(self, x):
    grid = grids_lib.parse(self.grid)
    spectral.check_spatial(x, grid, 'SphericalPooling')
    out = pooled_grid(grid)
    if isinstance(grid, grids_lib.HealpixGrid):
      fine = x[..., grids_lib.nested_to_ring(grid.nside).astype(np.int32), :, :]  # NESTED order
      coarse = jnp.mean(fine.reshape(x.shape[:-3] + (out.npix, 4) + x.shape[-2:]), axis=-3)
      return coarse[..., grids_lib.ring_to_nested(out.nside).astype(np.int32), :, :]
    lon = 0.5 * x[..., 0::2, :, :, :] + 0.25 * (
        x[..., 1::2, :, :, :] + jnp.roll(x, 1, axis=-4)[..., 0::2, :, :, :])
    p = _latitude_pooling(grid).astype(np.float32)
    return _pool_latitudes(p, lon)


def _pool_latitudes(p, x):
  """x (*batch, nlon, nlat, S, C), p (nlat_out, nlat) -> (*batch, nlon, nlat_out, S, C)."""
  return jnp.einsum('ji,...nisc->...njsc', p.astype(x.real.dtype), x)
