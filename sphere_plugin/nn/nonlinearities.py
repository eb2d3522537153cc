"""Pointwise nonlinearities on spatial spin-weighted layer tensors.

A rotation moves a spin-s field's values and multiplies each by a phase
exp(-i s gamma). So |x| is a spin-0 quantity and any map x -> g(|x|) x keeps
the spin: these layers commute with rotations in the continuum. On a grid the
output is no longer band-limited and the next forward transform aliases it;
that, and only that, makes them approximately equivariant (the error falls as
the grid is oversampled relative to lmax; see README).
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin.nn import spectral
from sphere_plugin.nn import conv as conv_lib
from sphere_plugin.nn.conv import as_complex


def apply_nonlinearity(nonlinearity, x, coeffs, spins: Sequence[int]):
  """Applies a nonlinearity module and collects what it knows of its output's coefficients.

  A nonlinearity whose `__call__` takes `coeffs` (PhaseCollapse) is given the
  coefficients its input was synthesised from and returns, beside its
  output, a dict for `spectral.to_spectral(known=...)`: the coefficients of
  the channels it passes through unchanged, and for spin 0 a
  `spectral.PartlyKnown`. The layer after it then analyses less or nothing.
  Any other callable is simply applied, with nothing known.

  Args:
    nonlinearity: a module instance (or callable) taking spatial layer tensors.
    x: complex (*batch, *grid.shape, S, C), synthesised from `coeffs`.
    coeffs: complex (*batch, L+1, 2L+1, S, C).
    spins: the S spins.

  Returns:
    (y, known): the nonlinearity's output, (*batch, *grid.shape, S, C), and
    {spin: (*batch, L+1, 2L+1, 1, C) or PartlyKnown} (possibly empty).
  """
  call = getattr(type(nonlinearity), '__call__', None)
  try:
    takes = call is not None and 'coeffs' in inspect.signature(call).parameters
  except (TypeError, ValueError):
    takes = False
  if not takes:
    return nonlinearity(x), {}
  return nonlinearity(x, coeffs=spectral.spin_coefficients(coeffs, spins, spins))


@gin.configurable(module='sphere_plugin.nn')
class MagnitudeNonlinearity(nn.Module):
  """x -> relu(|x| + b) x / |x|, b learned per (spin, channel).

  Attributes:
    spins: spins of the spin axis.
    epsilon: regularises |x| near zero.
    bias_init: initial value of b.

  Call:
    x: complex (*batch, *grid.shape, S, C). Returns the same shape.
  """
  spins: Sequence[int] = (0,)
  epsilon: float = 1e-6
  bias_init: float = -0.1

  @nn.compact
  def __call__(self, x):
    spectral.check_spins(x, self.spins, 'MagnitudeNonlinearity')
    b = self.param('bias', nn.initializers.constant(self.bias_init), x.shape[-2:],
                   jnp.float32).astype(x.real.dtype)
    mag = jnp.sqrt(jnp.abs(x) ** 2 + self.epsilon ** 2)
    return x * (jax.nn.relu(mag + b) / mag)


@gin.configurable(module='sphere_plugin.nn')
class PhaseCollapse(nn.Module):
  """Spin-0 channels from the magnitudes of all spins (Esteves et al. 2023).

  x0 <- (Dense_complex(x0) + Dense_real(|x| over all spins and channels)) / 2;
  channels of nonzero spin pass through unchanged. |x| is rotation invariant
  for every spin, so the new spin-0 channels are equivariant; they carry the
  information in the phases of the nonzero spins into spin 0.

  The dense map of x0 is linear and pointwise, so it commutes with the
  transforms: given the coefficients x was synthesised from, the layer also
  returns its output's coefficients as far as it knows them (see Call), and
  the next analysis only has to transform the real field
  Dense_real(|x|) / 2.

  Attributes:
    spins: spins of the spin axis; must contain 0.

  Call:
    x: complex (*batch, *grid.shape, S, C).
    coeffs: optional {spin: (*batch, L+1, 2L+1, 1, C)}, the coefficients x's
      channels of those spins were synthesised from (`spectral.spin_coefficients`).
    Returns the same shape as x; with coeffs, also {spin: coefficients or
    `spectral.PartlyKnown`} of the output for `spectral.to_spectral(known=...)`:
    the nonzero spins' coeffs unchanged, and for spin 0
    PartlyKnown((Dense_complex(coeffs[0]) + the bias at l = 0) / 2,
    Dense_real(|x|) / 2).
  """
  spins: Sequence[int] = (0, 1)

  @nn.compact
  def __call__(self, x, coeffs: dict | None = None):
    spins = spectral.check_spins(x, self.spins, 'PhaseCollapse')
    if 0 not in spins:
      raise ValueError(f'PhaseCollapse needs spin 0 among the spins, got {spins}')
    i0 = spins.index(0)
    c = x.shape[-1]
    rdtype = x.real.dtype
    x = jnp.asarray(x, jnp.result_type(rdtype, jnp.complex64))
    # Complex normal weights of variance 1/fan_in (real and imaginary parts 1/(2 fan_in)).
    w0 = self.param('kernel_spin0', conv_lib.complex_normal(1 / np.sqrt(c)), (c, c, 2),
                    jnp.float32)
    wm = self.param('kernel_magnitude', nn.initializers.variance_scaling(1.0, 'fan_in', 'normal'),
                    (x.shape[-2] * c, c), jnp.float32)
    b = self.param('bias', nn.initializers.zeros, (c, 2), jnp.float32)
    # Products of 2-D (point, channel) matrices: with the batch and grid axes
    # left as einsum batch dimensions, the backward pass's products ran ~2x
    # slower on CPU (the whole layer's fwd+bwd 54 -> 24 ms at 64x64, batch 8).
    n = int(np.prod(x.shape[:-2]))
    mag = jnp.abs(x).reshape(n, x.shape[-2] * c)  # (points, S * C)
    # Split, not index and .at[].set: their transposes are full-size pads.
    before, xi0, after = jnp.split(x, [i0, i0 + 1], axis=-2)
    w0, b = as_complex(w0.astype(rdtype)), as_complex(b.astype(rdtype))
    field = mag @ wm.astype(rdtype) * 0.5  # (points, C), real
    x0 = (xi0.reshape(n, c) @ w0 + b) * 0.5 + field
    y = jnp.concatenate([before, x0.reshape(xi0.shape), after], axis=-2)
    if coeffs is None:
      return y
    stray = sorted(set(int(s) for s in coeffs) - set(spins))
    if stray:
      raise ValueError(f'PhaseCollapse: coeffs for spins {stray}, not among {spins}')
    for s, a in coeffs.items():
      if (a.ndim < 4 or a.shape[:-4] != x.shape[:a.ndim - 4]
          or a.shape[-3] != 2 * a.shape[-4] - 1 or a.shape[-2:] != (1, c)):
        raise ValueError(f'PhaseCollapse: coeffs of spin {s} must be (*batch, L+1, 2L+1, 1, '
                         f'{c}) with the batch of x; got {a.shape}')
    known = {int(s): a for s, a in coeffs.items() if int(s) != 0}
    if 0 in coeffs:
      a0 = coeffs[0] @ w0
      lmax = spectral.lmax_of(a0)
      a0 = a0.at[..., 0, lmax, :, :].add(b * spectral.SQRT_4PI)  # the constant b: l = 0 only
      known[0] = spectral.PartlyKnown(coeffs=a0 * 0.5,
                                      field=field.reshape(xi0.shape[:-1] + (c,)))
    return y, known


_ACTIVATIONS = ('relu', 'gelu', 'silu', 'tanh', 'sigmoid', 'softplus', 'elu', 'leaky_relu')


@gin.configurable(module='sphere_plugin.nn')
class PointwiseNonlinearity(nn.Module):
  """A plain activation on spin-0 fields, applied to real and imaginary parts.

  Any pointwise map of a spin-0 field commutes with rotations (they only move
  values), so this is as equivariant as the grid allows. Fields of nonzero spin
  are rejected: a pointwise map of their components is not equivariant.

  Attributes:
    activation: a name from jax.nn (one of relu, gelu, silu, tanh, sigmoid,
      softplus, elu, leaky_relu) or a callable.
    spins: spins of the spin axis; all must be 0.

  Call:
    x: (*batch, *grid.shape, S, C), real or complex. Returns the same shape.
  """
  activation: str | Callable = 'relu'
  spins: Sequence[int] = (0,)

  def __call__(self, x):
    spins = spectral.check_spins(x, self.spins, 'PointwiseNonlinearity')
    if any(spins):
      raise ValueError(f'PointwiseNonlinearity is for spin-0 fields only, got spins {spins}; '
                       'use MagnitudeNonlinearity or PhaseCollapse')
    fn = self.activation
    if isinstance(fn, str):
      if fn not in _ACTIVATIONS:
        raise ValueError(f'unknown activation {fn!r}; use one of {_ACTIVATIONS} or a callable')
      fn = getattr(jax.nn, fn)
    if jnp.iscomplexobj(x):
      return jax.lax.complex(fn(x.real), fn(x.imag))
    return fn(x)
