"""Equivariance harness: compare layer(rotate(x)) with rotate(layer(x)).

Rotations act on coefficients (`sphere_plugin.sht.rotate`, arbitrary ZYZ
Euler angles), so input pairs are exact: band-limited random coefficients and
their rotation, synthesised on the input grid. Outputs are compared in the
spectral domain (analysed on the output grid when spatial), where the rotation
of the reference output is again exact.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import sht
from sphere_plugin.nn import spectral


def random_rotation(key) -> tuple[float, float, float]:
  """Haar-random ZYZ Euler angles (alpha, beta, gamma) as Python floats."""
  u = np.asarray(jax.random.uniform(key, (3,)))
  return float(2 * np.pi * u[0]), float(np.arccos(1 - 2 * u[1])), float(2 * np.pi * u[2])


def random_coefficients(key, lmax: int, spins: Sequence[int], channels: int,
                        batch: Sequence[int] = (2,), dtype=jnp.complex64):
  """White band-limited spectral layer tensor.

  Returns:
    complex (*batch, lmax+1, 2*lmax+1, S, C), zero where |m| > l or l < |s|,
    with unit expected spatial mean square.
  """
  spins = tuple(spins)
  shape = tuple(batch) + (lmax + 1, 2 * lmax + 1, len(spins), channels)
  kr, ki = jax.random.split(key)
  rdtype = jnp.finfo(dtype).dtype
  a = jax.lax.complex(jax.random.normal(kr, shape, rdtype), jax.random.normal(ki, shape, rdtype))
  l = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None, :]
  valid = (np.abs(m) <= l)[..., None, None] & (l[..., None, None] >= np.abs(np.array(spins))[:, None])
  n = valid.sum(axis=(0, 1))  # per spin
  scale = np.sqrt(4 * np.pi / (2 * np.maximum(n, 1)))  # (S, 1)
  return (a * (valid * scale)).astype(dtype)


def rotate_spectral(a, angles):
  """Rotates a spectral layer tensor (*batch, L+1, 2L+1, S, C) by ZYZ angles."""
  z = jnp.moveaxis(a, (-2, -1), (0, 1))  # (S, C, *batch, L+1, 2L+1)
  return jnp.moveaxis(sht.rotate(z, *angles), (0, 1), (-2, -1))


def equivariance_error(fn: Callable, coeffs, angles, *, spins_in: Sequence[int],
                       spins_out: Sequence[int], input_grid=None, output_grid=None,
                       output_lmax: int | None = None) -> float:
  """Normalised equivariance error of `fn`.

  Args:
    fn: maps an input layer tensor to an output one.
    coeffs: band-limited input coefficients (*batch, L+1, 2L+1, S_in, C_in).
    angles: ZYZ Euler angles of the rotation.
    spins_in / spins_out: spins of the input / output.
    input_grid: feed fn spatial input on this grid (None: spectral input).
    output_grid: fn's output is spatial on this grid (None: spectral).
    output_lmax: degree limit for analysing a spatial output (default:
      `spectral.default_lmax(output_grid)`).

  Returns:
    ||fn(R x) - R fn(x)|| / ||fn(x)||, over all coefficients.
  """
  def run(a):
    x = a if input_grid is None else spectral.to_spatial(a, input_grid, spins_in)
    y = fn(x)
    if output_grid is None:
      return y
    lmax = spectral.default_lmax(output_grid) if output_lmax is None else output_lmax
    return spectral.to_spectral(y, output_grid, lmax, spins_out)

  y = run(coeffs)
  y_rot = run(rotate_spectral(coeffs, angles))
  ref = rotate_spectral(y, angles)
  return float(jnp.linalg.norm((y_rot - ref).ravel()) / jnp.linalg.norm(y.ravel()))


def randomize_params(variables, key, scale: float = 0.5):
  """Replaces every parameter (biases included) by N(0, scale**2) values.

  Freshly initialised layers have zero biases and small filters, which can
  hide an equivariance bug; random parameters exercise every path.
  """
  if 'params' not in variables:
    return variables
  leaves, tree = jax.tree.flatten(variables['params'])
  keys = jax.random.split(key, len(leaves))
  leaves = [scale * jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)]
  return {**variables, 'params': jax.tree.unflatten(tree, leaves)}


def assert_equivariant(module, *, lmax: int, spins_in: Sequence[int], spins_out: Sequence[int],
                       input_grid=None, output_grid=None, channels: int = 3,
                       train: bool | None = None, tol: float = 1e-5, seed: int = 0,
                       rotations: int = 2) -> float:
  """Checks that a flax module commutes with rotations; returns the largest error.

  The module is initialised on band-limited random input (`random_coefficients`,
  degrees <= lmax, synthesised on `input_grid` when given), its parameters
  are randomised (`randomize_params`), and `equivariance_error` is measured
  for `rotations` Haar-random rotations.

  Args:
    module: a flax module taking a layer tensor (spectral
      (batch, L+1, 2L+1, S, C), or spatial (batch, *grid.shape, S, C) when
      `input_grid` is given).
    lmax: band limit of the random input (and of the analysed output).
    spins_in / spins_out: spins of the input / output.
    input_grid / output_grid: see `equivariance_error`.
    channels: input channels.
    train: passed to the module as `train=` when not None (True: batch
      statistics, with the `batch_stats` collection mutable).
    tol: the largest relative error accepted.
    seed: seeds the input, initialisation, parameters and rotations.
    rotations: how many rotations to try.

  Raises:
    AssertionError: naming every rotation's error, when one exceeds `tol`.
  """
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  a = random_coefficients(k1, lmax, spins_in, channels)
  x = a if input_grid is None else spectral.to_spatial(a, input_grid, spins_in)
  kwargs = {} if train is None else {'train': train}
  variables = randomize_params(module.init(k2, x, **kwargs), k3)

  @jax.jit
  def fn(x):
    if train:
      return module.apply(variables, x, train=True, mutable=['batch_stats'])[0]
    return module.apply(variables, x, **kwargs)

  errors = [equivariance_error(fn, a, random_rotation(jax.random.key(100 + seed * 10 + i)),
                               spins_in=spins_in, spins_out=spins_out, input_grid=input_grid,
                               output_grid=output_grid, output_lmax=lmax)
            for i in range(rotations)]
  if max(errors) >= tol:
    raise AssertionError(f'{type(module).__name__} is not equivariant: relative errors '
                         f'{errors} (tolerance {tol})')
  return max(errors)

