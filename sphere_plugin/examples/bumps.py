"""Synthetic classification data: Gaussian bumps at random places on the sphere.

Class k has n_k bumps of angular width w_k (see `CLASSES`); positions and
amplitudes are random, so labels are invariant to rotations by construction.
"""

from __future__ import annotations

import gin
import numpy as np

from sphere_plugin import grids as grids_lib

# (number of bumps, width in radians) per class.
CLASSES = ((1, 0.25), (1, 0.5), (2, 0.25), (2, 0.5))


@gin.configurable(module='sphere_plugin.data')
def bumps(num: int, grid='gaussian:32x16', seed: int = 0):
  """Random labelled bump fields.

  Args:
    num: number of examples.
    grid: grid (or text) to sample on.
    seed: random seed.

  Returns:
    x float32 (num, *grid.shape, 1, 1) (one spin-0 channel), labels int32 (num,).
  """
  grid = grids_lib.parse(grid)
  rng = np.random.default_rng(seed)
  points = grids_lib.unit_vectors(grid)  # (*grid.shape, 3)
  labels = rng.integers(0, len(CLASSES), num).astype(np.int32)
  x = np.zeros((num,) + grid.shape, np.float32)
  for i, k in enumerate(labels):
    n, width = CLASSES[k]
    centres = rng.normal(size=(n, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    amps = rng.uniform(0.5, 1.5, n)
    cosd = points @ centres.T  # (*grid.shape, n)
    x[i] = np.sum(amps * np.exp((cosd - 1) / width ** 2), axis=-1)
  return x[..., None, None], labels
