"""QM9 property heads on a `MoleculeEncoder`: one per target, each with its aggregation.

A target's head maps each atom's embedding to a few numbers with a small MLP
and aggregates them over the molecule's atoms:

  element   sum over atoms of (a_e * s_i + b_e), a per-element scale and
            bias (extensive properties: energies, polarizability, Cv)
  sum       sum over atoms of s_i
  mean      mean over atoms of s_i (intensive: HOMO, LUMO, gap)
  dipole    |sum_i q_i (x_i - c)| for K learned "charges" q_i, then a linear
            map of the K norms (the dipole moment; c = centre of mass)
  spread    sum over atoms of s_i |x_i - c|^2 + t_i (the spatial extent R^2)

All are invariant to rotations, translations and permutations of the atoms.
Heads output the target in normalised units: the training task regresses
(y - linear baseline - mean) / std, see `sphere_plugin.data.qm9.LinearBaseline`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp

from sphere_plugin.data import qm9 as qm9_data
from sphere_plugin.models import molecule_encoder

AGGREGATIONS = ('element', 'sum', 'mean', 'dipole', 'spread')
DEFAULT_AGGREGATION = {'mu': 'dipole', 'r2': 'spread', 'homo': 'mean', 'lumo': 'mean',
                       'gap': 'mean'}  # the rest: 'element'


class TargetHead(nn.Module):
  """One target's per-atom MLP and aggregation (see the module docstring).

  Call:
    atoms: (B, A, F) embeddings; mask: (B, A) bool; element: (B, A) element
    index (len(ELEMENTS) at padding); centred: (B, A, 3) positions minus the
    centre of mass. Returns (B,).
  """
  aggregation: str
  hidden: int = 64
  num_charges: int = 8

  @nn.compact
  def __call__(self, atoms, mask, element, centred):
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f'unknown aggregation {self.aggregation!r}; one of {AGGREGATIONS}')
    width = {'dipole': self.num_charges, 'spread': 2}.get(self.aggregation, 1)
    h = nn.silu(nn.Dense(self.hidden)(atoms))
    s = nn.Dense(width)(h) * mask[..., None]  # (B, A, width)
    if self.aggregation == 'element':
      n = len(molecule_encoder.ELEMENTS) + 1
      scale = nn.Embed(n, 1, embedding_init=nn.initializers.ones, name='element_scale')(element)
      bias = nn.Embed(n, 1, embedding_init=nn.initializers.zeros, name='element_bias')(element)
      return jnp.sum((scale * s + bias)[..., 0] * mask, axis=1)
    if self.aggregation == 'sum':
      return jnp.sum(s[..., 0], axis=1)
    if self.aggregation == 'mean':
      return jnp.sum(s[..., 0], axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)
    if self.aggregation == 'spread':
      r2 = jnp.sum(centred ** 2, axis=-1)
      return jnp.sum(s[..., 0] * r2 + s[..., 1], axis=1)
    moment = jnp.einsum('bak,bax->bkx', s, centred)  # dipole
    norms = jnp.sqrt(jnp.sum(moment ** 2, axis=-1) + 1e-8)
    return nn.Dense(1)(norms)[..., 0]


@gin.configurable(module='sphere_plugin.models')
class QM9Regressor(nn.Module):
  """A `MoleculeEncoder` with one head per QM9 target.

  Attributes:
    encoder: a MoleculeEncoder instance (gin: `@MoleculeEncoder()`).
    targets: target names (`sphere_plugin.data.qm9.TARGET_NAMES` order or any
      subset).
    aggregations: per-target overrides of `DEFAULT_AGGREGATION` ('element'
      for targets it does not name).
    hidden: width of each head's MLP.

  Call:
    atomic_numbers: (B, A) int, 0 at padding; positions: (B, A, 3) Angstrom;
    train: batch-norm mode. Returns (B, len(targets)) in normalised units.
  """
  encoder: Any
  targets: Sequence[str] = qm9_data.TARGET_NAMES
  aggregations: Mapping[str, str] | None = None
  hidden: int = 64

  @nn.compact
  def __call__(self, atomic_numbers, positions, train: bool = False):
    qm9_data.target_indices(self.targets)  # validates the names
    emb = self.encoder(atomic_numbers, positions, train)
    positions = jnp.asarray(positions, jnp.float32)
    centred = positions - molecule_encoder.centre_of_mass(atomic_numbers, positions)[:, None]
    element = molecule_encoder.element_index(atomic_numbers)
    how = {**DEFAULT_AGGREGATION, **(self.aggregations or {})}
    outs = [TargetHead(how.get(t, 'element'), self.hidden, name=f'head_{t}')(
        emb['atoms'], emb['mask'], element, centred) for t in self.targets]
    return jnp.stack(outs, axis=-1)
