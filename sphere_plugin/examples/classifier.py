"""A rotation-invariant classifier: SphericalCNN backbone + invariant read-out + MLP."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import gin

from sphere_plugin.nn import blocks
from sphere_plugin.nn import readout


@gin.configurable(module='sphere_plugin.models')
class SphericalClassifier(nn.Module):
  """Classifies spherical fields; invariant to rotations of the input (up to aliasing).

  Attributes:
    num_classes: number of classes.
    backbone: module class (gin reference, e.g. @SphericalCNN) built with no
      arguments; it must have `grids` and `stage_spins()` like `SphericalCNN`.
    hidden: width of the MLP head.

  Call:
    x: (batch, *input_grid.shape, S_in, C_in); train: batch-norm mode.
    Returns logits (batch, num_classes), float32.
  """
  num_classes: int
  backbone: Callable[..., nn.Module] = blocks.SphericalCNN
  hidden: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False):
    net = self.backbone()
    h = net(x, train)
    features = readout.invariants(h, net.grids[-1], net.stage_spins()[-1])
    features = nn.relu(nn.Dense(self.hidden)(features))
    return nn.Dense(self.num_classes)(features)
