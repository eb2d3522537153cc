"""The interface every regridding method implements."""

from __future__ import annotations

import numpy as np

from sphere_plugin import grids as grids_lib


def result_dtype(dtype) -> np.dtype:
  """Output dtype of every regridder: the input's float dtype, float32 otherwise."""
  dtype = np.dtype(dtype)
  return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


class Regridder:
  """Maps fields from `source` to `target` with one method; build it once, call often.

  Attributes:
    source: the source Grid.
    target: the target Grid.
    method: 'spectral', 'conservative', 'bilinear' or 'nearest'.
  """

  source: grids_lib.Grid
  target: grids_lib.Grid
  method: str

  def __call__(self, x):
    """Regrids scalar fields: x (..., *source.shape) -> (..., *target.shape)."""
    raise NotImplementedError

  def vector(self, u, v):
    """Regrids tangent vector fields given as (eastward u, northward v).

    Args:
      u, v: components, each (..., *source.shape).

    Returns:
      (u, v) on the target, each (..., *target.shape), in the target pixels'
      own (east, north) frames (so pole pixels are right too).
    """
    raise NotImplementedError

  def _split(self, x) -> tuple[tuple[int, ...], int]:
    """Checks that x ends with the source shape; returns (leading shape, size)."""
    shape = self.source.shape
    if tuple(np.shape(x)[np.ndim(x) - len(shape):]) != shape:
      raise ValueError(f'field shape {np.shape(x)} does not end with the {self.source} '
                       f'shape {shape}')
    return tuple(np.shape(x)[:np.ndim(x) - len(shape)]), int(np.prod(shape))

  def __repr__(self) -> str:
    return f'{type(self).__name__}({self.source} -> {self.target}, {self.method!r})'
