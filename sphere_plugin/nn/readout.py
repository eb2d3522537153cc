"""Rotation-invariant read-outs of spatial layer tensors."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import spectral


def invariants(x, grid, spins: Sequence[int]):
  """Rotation-invariant features of each (spin, channel).

  |sphere mean of x| for spin 0 and sphere mean of |x| for other spins, both
  integrated with the grid's quadrature weights.

  Args:
    x: (*batch, *grid.shape, S, C), real or complex.
    grid: the grid of x.
    spins: the S spins.

  Returns:
    real (*batch, S * C).
  """
  grid = grids_lib.parse(grid)
  spins = spectral.check_spins(x, spins, 'invariants')
  spectral.check_spatial(x, grid, 'invariants')
  gnd = len(grid.shape)
  w = (grid.quadrature_weights / (4 * np.pi))[..., None].astype(x.real.dtype)
  space = tuple(range(x.ndim - gnd - 2, x.ndim - 2))
  feats = []
  for i, s in enumerate(spins):
    xs = x[..., i, :]
    feats.append(jnp.abs(jnp.sum(xs * w, axis=space)) if s == 0
                 else jnp.sum(jnp.abs(xs) * w, axis=space))
  return jnp.concatenate(feats, axis=-1)
