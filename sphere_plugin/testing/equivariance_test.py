"""The public harness catches a layer that is not equivariant, and passes one that is."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import pytest

from sphere_plugin import nn as snn
from sphere_plugin.testing import equivariance


class _LatitudeWeighted(nn.Module):
  """Multiplies a spatial field by sin(latitude): breaks rotation equivariance."""
  grid: str

  @nn.compact
  def __call__(self, x):
    from sphere_plugin import grids  # pylint: disable=g-import-not-at-top
    g = grids.parse(self.grid)
    w = jnp.sin(jnp.radians(jnp.asarray(g.latitudes)))[None, None, :, None, None]
    return x * (1 + w)


def test_assert_equivariant_passes_a_convolution():
  conv = snn.SpinSphericalConv(features=2, spins_in=(0,), spins_out=(0, 1), lmax=6)
  err = equivariance.assert_equivariant(conv, lmax=6, spins_in=(0,), spins_out=(0, 1))
  assert err < 1e-5


def test_assert_equivariant_catches_a_latitude_dependent_layer():
  grid = 'gaussian:16x8'
  with pytest.raises(AssertionError, match='not equivariant'):
    equivariance.assert_equivariant(_LatitudeWeighted(grid), lmax=6, spins_in=(0,),
                                    spins_out=(0,), input_grid=grid, output_grid=grid)
