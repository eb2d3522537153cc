"""Pixel positions and local (east, north) frames of a grid, flattened.

Flattened order is C order of `grid.shape`: for lat-lon grids pixel
`i_lon * nlat + j_lat`, for HEALPix the RING index.
"""

from __future__ import annotations

import functools

import numpy as np

from sphere_plugin import grids as grids_lib


@functools.lru_cache(maxsize=16)
def lonlat(grid: grids_lib.Grid) -> tuple[np.ndarray, np.ndarray]:
  """Longitude and latitude of every pixel in radians, each shape (size,)."""
  if isinstance(grid, grids_lib.HealpixGrid):
    lon, lat = grid.longitudes, grid.latitudes
  else:
    lon, lat = np.meshgrid(grid.longitudes, grid.latitudes, indexing='ij')
  return np.radians(lon).ravel(), np.radians(lat).ravel()


def xyz(grid: grids_lib.Grid) -> np.ndarray:
  """Unit vectors of the pixels, shape (size, 3) (`grids.unit_vectors`, flattened)."""
  return grids_lib.unit_vectors(grid).reshape(-1, 3)


def east_north(grid: grids_lib.Grid) -> tuple[np.ndarray, np.ndarray]:
  """Local eastward and northward unit vectors, each shape (size, 3).

  At a pole the frame is the limit along the pixel's own meridian, which is the
  frame the spin-1 transforms use there too.
  """
  lon, lat = lonlat(grid)
  east = np.stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)], -1)
  north = np.stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)], -1)
  return east, north
