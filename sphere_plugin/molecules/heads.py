"""QM9 property heads on a `MoleculeEncoder`: one per target, each with its aggregation.

Each target's head maps each atom's embedding to a few numbers with a small
MLP and aggregates them over the molecule's atoms (all heads run as one
batched computation, `TargetHeads`):

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

from sphere_plugin.molecules import qm9 as qm9_data
from sphere_plugin.molecules import encoder as encoder_lib

AGGREGATIONS = ('element', 'sum', 'mean', 'dipole', 'spread')
DEFAULT_AGGREGATION = {'mu': 'dipole', 'r2': 'spread', 'homo': 'mean', 'lumo': 'mean',
                       'gap': 'mean'}  # the rest: 'element'


class TargetHeads(nn.Module):
  """All targets' per-atom MLPs and aggregations, batched over targets.

  Attributes:
    aggregations: one aggregation name per target (see the module docstring).
    hidden: width of each target's MLP.
    num_charges: K, the learned charges of a 'dipole' head.

  Call:
    atoms: (B, A, F) embeddings; mask: (B, A) bool; element: (B, A) element
    index (len(ELEMENTS) at padding); centred: (B, A, 3) positions minus the
    centre of mass. Returns (B, T).
  """
  aggregations: Sequence[str]
  hidden: int = 64
  num_charges: int = 8

  @nn.compact
  def __call__(self, atoms, mask, element, centred):
    unknown = sorted(set(self.aggregations) - set(AGGREGATIONS))
    if unknown:
      raise ValueError(f'unknown aggregation(s) {unknown}; known: {AGGREGATIONS}')
    t = len(self.aggregations)
    width = max({'dipole': self.num_charges, 'spread': 2}.get(a, 1) for a in self.aggregations)
    h = nn.silu(nn.DenseGeneral((t, self.hidden), name='hidden')(atoms))  # (B, A, T, H)
    kernel = self.param('kernel', nn.initializers.lecun_normal(batch_axis=(0,)),
                        (t, self.hidden, width))
    bias = self.param('bias', nn.initializers.zeros, (t, width))
    s = (jnp.einsum('bath,thw->batw', h, kernel) + bias) * mask[..., None, None]
    maskf = mask.astype(s.dtype)
    out = [None] * t

    def group(name):
      return [k for k, a in enumerate(self.aggregations) if a == name]

    if idx := group('element'):
      n = len(encoder_lib.ELEMENTS) + 1
      scale = nn.Embed(n, len(idx), embedding_init=nn.initializers.ones,
                       name='element_scale')(element)
      shift = nn.Embed(n, len(idx), embedding_init=nn.initializers.zeros,
                       name='element_bias')(element)
      y = jnp.sum((scale * s[:, :, idx, 0] + shift) * maskf[..., None], axis=1)
      out = _place(out, idx, y)
    if idx := group('sum'):
      out = _place(out, idx, jnp.sum(s[:, :, idx, 0], axis=1))
    if idx := group('mean'):
      count = jnp.maximum(jnp.sum(maskf, axis=1), 1.0)[:, None]
      out = _place(out, idx, jnp.sum(s[:, :, idx, 0], axis=1) / count)
    if idx := group('spread'):
      r2 = jnp.sum(centred ** 2, axis=-1)[..., None]
      out = _place(out, idx, jnp.sum(s[:, :, idx, 0] * r2 + s[:, :, idx, 1], axis=1))
    if idx := group('dipole'):
      k = self.num_charges
      moment = jnp.einsum('batk,bax->btkx', s[:, :, idx, :k], centred)
      norms = jnp.sqrt(jnp.sum(moment ** 2, axis=-1) + 1e-8)  # (B, Td, K)
      w = self.param('dipole_readout', nn.initializers.lecun_normal(batch_axis=(0,)),
                     (len(idx), k))
      b = self.param('dipole_bias', nn.initializers.zeros, (len(idx),))
      out = _place(out, idx, jnp.einsum('btk,tk->bt', norms, w) + b)
    return jnp.stack(out, axis=-1)


def _place(out: list, idx: Sequence[int], values) -> list:
  """out[idx[i]] = values[:, i]."""
  for i, k in enumerate(idx):
    out[k] = values[:, i]
  return out


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
    centred = positions - encoder_lib.centre_of_mass(atomic_numbers, positions)[:, None]
    element = encoder_lib.element_index(atomic_numbers)
    how = {**DEFAULT_AGGREGATION, **(self.aggregations or {})}
    return TargetHeads(tuple(how.get(t, 'element') for t in self.targets), self.hidden,
                       name='heads')(emb['atoms'], emb['mask'], element, centred)
