"""Molecules as spherical signals around each atom, and a spherical-CNN atom encoder.

Each atom i sees its molecule as spin-0 signals on a sphere centred on it: for
each neighbour element e (H, C, N, O, F) and distance power p,

    f_{i,e,p}(g) = sum_{j != i, Z_j = e} Z_i Z_j / r_ij^p * k(<u_ij, g>) / norm_p,

where u_ij is the unit vector from atom i to atom j, g a point of the sphere
and k(c) = exp(-(c - 1)^2 / sigma^2) a smooth bump around u_ij whose width
makes it fall to 5 % at `cutoff_angle` from u_ij. p = 2 is Coulomb-like,
p = 6 van der Waals-like; norm_p = 9^2 / (1 Angstrom)^p keeps values O(1).
With 5 elements and 2 powers that is 10 channels per atom (the featurisation
of Esteves et al., "Scaling Spherical CNNs", 2023). The signals depend on the
geometry only through u_ij and r_ij: translating the molecule changes
nothing, rotating it rotates every atom's signals, and permuting atoms
permutes the atoms' spheres. Everything runs on device, inside the model.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import readout

ELEMENTS = (1, 6, 7, 8, 9)  # H, C, N, O, F
ATOMIC_MASSES = (1.008, 12.011, 14.007, 15.999, 18.998)


def grid_points(grid) -> np.ndarray:
  """Unit vectors of a grid's points, (*grid.shape, 3) float64 (`grids.unit_vectors`)."""
  return grids_lib.unit_vectors(grid)


def kernel_width(cutoff_angle: float) -> float:
  """sigma^2 of the bump k(c) = exp(-(c - 1)^2 / sigma^2) that is 0.05 at cutoff_angle."""
  return (1.0 - math.cos(cutoff_angle)) ** 2 / math.log(20.0)


def molecule_spheres(atomic_numbers, positions, points, *,
                     powers: Sequence[float] = (2.0, 6.0),
                     cutoff_angle: float = math.pi / 4,
                     elements: Sequence[int] = ELEMENTS):
  """Each atom's view of its molecule as spherical signals (see the module docstring).

  Args:
    atomic_numbers: (B, A) int; 0 marks padding.
    positions: (B, A, 3) in Angstrom.
    points: (P, 3) unit vectors where the signals are sampled (`grid_points`
      of a grid, flattened).
    powers: distance powers p.
    cutoff_angle: angle (radians) from u_ij where the bump has fallen to 5 %.
    elements: atomic numbers of the neighbour channels.

  Returns:
    (B, A, P, len(elements) * len(powers)) float32, channel index
    e * len(powers) + k for element e and power k; zero for padding atoms.
  """
  z = jnp.asarray(atomic_numbers)
  x = jnp.asarray(positions, jnp.float32)
  points = jnp.asarray(points, jnp.float32)
  mask = z > 0
  a = z.shape[-1]
  pair = mask[:, :, None] & mask[:, None, :] & ~jnp.eye(a, dtype=bool)
  d = x[:, None, :, :] - x[:, :, None, :]  # (B, i, j, 3): from atom i to atom j
  r = jnp.sqrt(jnp.sum(d * d, axis=-1))
  r = jnp.where(pair, r, 1.0)
  u = d / r[..., None]
  cos = jnp.einsum('bijx,px->bijp', u, points)
  bump = jnp.exp(-(cos - 1.0) ** 2 / kernel_width(cutoff_angle))
  zz = (z[:, :, None] * z[:, None, :]).astype(jnp.float32)
  strength = jnp.stack([zz / r ** p / (81.0) for p in powers], axis=-1)  # norm_p: 9^2 / 1 A^p
  strength = jnp.where(pair[..., None], strength, 0.0)
  onehot = (z[..., None] == jnp.asarray(elements)).astype(jnp.float32)  # (B, j, E)
  out = jnp.einsum('bijp,bijw,bje->bipew', bump, strength, onehot)
  return out.reshape(out.shape[:3] + (-1,))


def centre_of_mass(atomic_numbers, positions):
  """(B, 3) mass-weighted centre of each molecule (padding has no mass)."""
  masses = jnp.zeros(max(ELEMENTS) + 1).at[jnp.asarray(ELEMENTS)].set(jnp.asarray(ATOMIC_MASSES))
  m = masses[jnp.asarray(atomic_numbers)]
  return jnp.sum(m[..., None] * positions, axis=1) / jnp.sum(m, axis=1, keepdims=True)


def element_index(atomic_numbers, elements: Sequence[int] = ELEMENTS):
  """(B, A) int32 position of each atom's element in `elements`; len(elements) at padding."""
  z = jnp.asarray(atomic_numbers)
  table = np.full(max(elements) + 1, len(elements), np.int32)
  table[list(elements)] = np.arange(len(elements))
  return jnp.asarray(table)[z]


def _rbf(distance, centres, width):
  """Gaussian radial basis expansion, (...,) -> (..., len(centres))."""
  return jnp.exp(-((distance[..., None] - centres) / width) ** 2)


@functools.lru_cache(maxsize=8)
def _points(grid_text: str) -> np.ndarray:
  return grid_points(grid_text).reshape(-1, 3).astype(np.float32)


@gin.configurable(module='sphere_plugin.models')
class MoleculeEncoder(nn.Module):
  """Per-atom and per-molecule embeddings of molecules from a spherical CNN.

  Each atom's spheres (`molecule_spheres`, on the backbone's input grid) go
  through the backbone; the rotation-invariant read-out of its last stage
  (`readout.invariants`) plus an embedding of the atom's element and of its
  distance to the centre of mass give the atom's embedding. The molecule's
  embedding is the sum over its atoms. Invariant to rotations (up to the
  aliasing of pointwise nonlinearities), translations and permutations of the
  atoms.

  Attributes:
    backbone: a `SphericalCNN` instance (gin: `@SphericalCNN()`) whose
      input_grid is the atoms' sphere grid and whose input has spin (0,) and
      len(elements) * len(powers) channels.
    features: embedding width F.
    powers, cutoff_angle, elements: featurisation (see `molecule_spheres`).

  Call:
    atomic_numbers: (B, A) int, 0 at padding; positions: (B, A, 3) Angstrom;
    train: batch-norm mode.
    Returns {'atoms': (B, A, F) (zero at padding), 'molecule': (B, F),
    'mask': (B, A) bool}.
  """
  backbone: Any
  features: int = 64
  powers: Sequence[float] = (2.0, 6.0)
  cutoff_angle: float = math.pi / 4
  elements: Sequence[int] = ELEMENTS

  @nn.compact
  def __call__(self, atomic_numbers, positions, train: bool = False):
    atomic_numbers = jnp.asarray(atomic_numbers)
    positions = jnp.asarray(positions, jnp.float32)
    if atomic_numbers.ndim != 2 or positions.shape != atomic_numbers.shape + (3,):
      raise ValueError('MoleculeEncoder takes atomic_numbers (B, A) and positions (B, A, 3), '
                       f'got {atomic_numbers.shape} and {positions.shape}')
    grid = grids_lib.parse(self.backbone.input_grid)
    b, a = atomic_numbers.shape
    spheres = molecule_spheres(atomic_numbers, positions, _points(str(grid)),
                               powers=self.powers, cutoff_angle=self.cutoff_angle,
                               elements=self.elements)
    x = spheres.reshape((b * a, *grid.shape, 1, spheres.shape[-1]))
    h = self.backbone(x, train)
    inv = readout.invariants(h, self.backbone.grids[-1], self.backbone.stage_spins()[-1])
    inv = inv.reshape(b, a, -1)
    mask = atomic_numbers > 0
    centred = positions - centre_of_mass(atomic_numbers, positions)[:, None, :]
    dist = jnp.sqrt(jnp.sum(centred ** 2, axis=-1) + 1e-12)
    e = nn.Dense(self.features, name='sphere_features')(inv)
    e = e + nn.Embed(len(self.elements) + 1, self.features, name='element_embedding')(
        element_index(atomic_numbers, self.elements))
    e = e + nn.Dense(self.features, name='distance_features')(
        _rbf(dist, jnp.linspace(0.0, 6.0, 12), 0.5))
    e = nn.Dense(self.features, name='atom_embedding')(nn.silu(e))
    e = e * mask[..., None]
    return {'atoms': e, 'molecule': jnp.sum(e, axis=1), 'mask': mask}
