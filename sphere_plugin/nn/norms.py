"""Batch normalisation that respects rotations.

Only rotation-invariant statistics are used: the mean of spin-0 fields (their
l = 0 coefficient) and the mean squared magnitude of each field. Fields of
nonzero spin have no invariant mean, so they are only scaled. Scales are real
per (spin, channel); the bias shifts spin-0 fields by a constant.

Running statistics keep the shapes they are created with: mean (C, 2) as
(real, imaginary) of the spin-0 mean, var (S, C).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import spectral
from sphere_plugin.nn.conv import as_complex


class _BatchNormBase(nn.Module):
  """Shared attributes and statistics bookkeeping; subclasses supply the moments."""
  spins: Sequence[int] = (0,)
  momentum: float = 0.99
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Callable = nn.initializers.ones
  axis_name: Any = None

  def _normalise(self, x, spins, train, batch_mean, batch_power, apply):
    """batch_mean(x) -> (*, C) complex; batch_power(x, mean) -> (S, C) real."""
    s, c = x.shape[-2:]
    rdtype = x.real.dtype
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c, 2), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((s, c), jnp.float32))
    if train:
      mean = batch_mean(x) if 0 in spins else jnp.zeros((c,), x.dtype)
      if self.axis_name is not None:
        mean = jax.lax.pmean(mean, self.axis_name)
      var = batch_power(x, mean)
      if self.axis_name is not None:
        var = jax.lax.pmean(var, self.axis_name)
      if not self.is_initializing():
        m = self.momentum
        mean_ri = jnp.stack([mean.real, mean.imag], -1)
        ra_mean.value = m * ra_mean.value + (1 - m) * mean_ri.astype(jnp.float32)
        ra_var.value = m * ra_var.value + (1 - m) * var.astype(jnp.float32)
    else:
      mean = as_complex(ra_mean.value.astype(rdtype))
      var = ra_var.value.astype(rdtype)
    scale = jax.lax.rsqrt(var + self.epsilon)
    if self.use_scale:
      scale = scale * self.param('scale', self.scale_init, (s, c), jnp.float32).astype(rdtype)
    bias = None
    if self.use_bias and 0 in spins:
      bias = as_complex(self.param('bias', nn.initializers.zeros, (c, 2),
                                   jnp.float32).astype(rdtype))
    return apply(x, mean, scale, bias)


@gin.configurable(module='sphere_plugin.nn')
class SpectralBatchNorm(_BatchNormBase):
  """Batch norm on spectral tensors (Esteves et al. 2023).

  The spin-0 mean is the l = 0 coefficient / sqrt(4 pi); the variance of each
  (spin, channel) is the batch mean of sum_{l,m} |a_lm - mean|^2 / (4 pi), the
  spatial mean of |x - mean|^2 by Parseval. Exactly rotation equivariant.

  Attributes:
    spins: spins of the spin axis.
    momentum: decay of the running statistics.
    epsilon: added to the variance.
    use_scale: learn a real scale per (spin, channel).
    use_bias: learn a complex shift of spin-0 fields (their l = 0 coefficient).
    scale_init: initialiser of the scale; zeros makes a residual branch start
      as the identity ("FixUp").
    axis_name: mapped axis (pmap / shard_map) to average statistics over; not
      needed under jit with a sharded batch, where means are already global.

  Call:
    a: complex (*batch, lmax+1, 2*lmax+1, S, C); train: use and update batch
      statistics (else the running ones). Returns the same shape.
  """

  @nn.compact
  def __call__(self, a, train: bool = False):
    a = jnp.asarray(a)
    spins = spectral.check_spins(a, self.spins, 'SpectralBatchNorm')
    lmax = spectral.lmax_of(a)
    batch_axes = tuple(range(a.ndim - 4))
    i0 = spins.index(0) if 0 in spins else None

    def batch_mean(a):
      return jnp.mean(a[..., 0, lmax, i0, :], axis=batch_axes) / spectral.SQRT_4PI

    def centred(a, mean):
      if i0 is None:
        return a
      return a.at[..., 0, lmax, i0, :].add(-mean * spectral.SQRT_4PI)

    def batch_power(a, mean):
      c = centred(a, mean)
      p = jnp.sum(c.real ** 2 + c.imag ** 2, axis=(-4, -3)) / (4 * np.pi)  # |c|^2 without abs's division
      return jnp.mean(p, axis=batch_axes)

    def apply(a, mean, scale, bias):
      out = centred(a, mean) * scale.astype(a.dtype)
      if bias is not None:
        out = out.at[..., 0, lmax, i0, :].add(bias * spectral.SQRT_4PI)
      return out

    return self._normalise(a, spins, train, batch_mean, batch_power, apply)


@gin.configurable(module='sphere_plugin.nn')
class SphericalBatchNorm(_BatchNormBase):
  """Batch norm on spatial tensors with quadrature-weighted statistics.

  Statistics are integrals over the sphere (grid quadrature weights), not
  plain pixel means, so polar rows of a lat-lon grid do not dominate. Exact
  for the mean of band-limited spin-0 fields; the variance integrates |x|^2,
  exact when the grid's quadrature reaches degree 2 lmax.

  Attributes: as `SpectralBatchNorm`, plus
    grid: the grid of the input.

  Call:
    x: (*batch, *grid.shape, S, C); train as in `SpectralBatchNorm`.
    Returns the same shape, complex.
  """
  grid: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.grid is None:
      raise ValueError('SphericalBatchNorm needs its grid')
    grid = grids_lib.parse(self.grid)
    spins = spectral.check_spins(x, self.spins, 'SphericalBatchNorm')
    spectral.check_spatial(x, grid, 'SphericalBatchNorm')
    x = jnp.asarray(x, jnp.result_type(x.dtype, jnp.complex64))
    gnd = len(grid.shape)
    w = (grid.quadrature_weights / (4 * np.pi)).astype(np.float32)[..., None, None]
    batch_axes = tuple(range(x.ndim - gnd - 2))
    space = tuple(range(x.ndim - gnd - 2, x.ndim - 2))
    i0 = spins.index(0) if 0 in spins else None
    w = w.astype(x.real.dtype)

    def batch_mean(x):
      m = jnp.sum(x[..., i0:i0 + 1, :] * w, axis=space)[..., 0, :]
      return jnp.mean(m, axis=batch_axes)

    def centred(x, mean):
      return x if i0 is None else x.at[..., i0, :].add(-mean)

    def batch_power(x, mean):
      return jnp.mean(jnp.sum(jnp.abs(centred(x, mean)) ** 2 * w, axis=space), axis=batch_axes)

    def apply(x, mean, scale, bias):
      out = centred(x, mean) * scale.astype(x.dtype)
      return out if bias is None else out.at[..., i0, :].add(bias)

    return self._normalise(x, spins, train, batch_mean, batch_power, apply)
