"""Weather forecaster: one autoregressive step of a spherical CNN on normalised states.

A state is a stack of C real channels on a grid (`sphere_plugin.data.weather`
fixes their order): scalars such as `temperature_850` and (u, v) wind pairs.
The forecaster carries the scalars and the forcings as spin-0 inputs and each
wind pair as one spin-1 field u + i v (`sphere_plugin.sht.vector_to_spin`), so
its spectral part commutes with rotations of the whole input. It predicts the
increment of every channel in units of that channel's time-step difference
standard deviation; `step` adds it to the state.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import blocks
from sphere_plugin.nn.conv import SpinSphericalConv

SPINS = (0, 1)


def split_channels(num_channels: int, vector_pairs: Sequence[tuple[int, int]]):
  """Scalar channel indices and (u, v) index arrays of a state layout.

  Returns:
    (scalar (N0,) int array, u (N1,) int array, v (N1,) int array).
  """
  pairs = np.asarray(vector_pairs, dtype=int).reshape(-1, 2)
  used = set(pairs.ravel().tolist())
  if len(used) != pairs.size or any(not 0 <= i < num_channels for i in used):
    raise ValueError(f'vector_pairs {tuple(map(tuple, pairs))} must be distinct channel '
                     f'indices in [0, {num_channels})')
  scalar = np.array([i for i in range(num_channels) if i not in used], dtype=int)
  return scalar, pairs[:, 0], pairs[:, 1]


@gin.configurable(module='sphere_plugin.models')
class Forecaster(nn.Module):
  """State (+ forcings) at t -> normalised increment to t + dt.

  Attributes:
    backbone: a `SphericalCNN` instance (gin: `Forecaster.backbone =
      @sphere_plugin.nn.SphericalCNN()`) whose `input_grid` is the data grid
      and whose `input_spins` are (0, 1).
    vector_pairs: (u, v) channel indices of the state, one pair per level
      (set from the data, not from gin).
    head_filter_params: anchors of the output convolution's localized filter
      (None: one weight per degree).
    head_scale: initial weight scale of the output convolution; small, so an
      untrained model starts close to persistence.

  Call:
    state: (*batch, *grid.shape, C) float32, normalised.
    forcings: (*batch, *grid.shape, F) float32, normalised (F may be 0).
    train: batch-norm mode.
    Returns (*batch, *grid.shape, C) float32 increments in units of each
    channel's difference standard deviation.
  """
  backbone: nn.Module
  vector_pairs: Sequence[tuple[int, int]] = ()
  head_filter_params: int | None = None
  head_scale: float = 0.1

  @nn.compact
  def __call__(self, state, forcings, train: bool = False):
    net = self.backbone
    grid = grids_lib.parse(net.input_grid)
    if tuple(net.input_spins) != SPINS:
      raise ValueError(f'Forecaster: the backbone must take spins {SPINS} '
                       f'(SphericalCNN.input_spins), got {tuple(net.input_spins)}')
    g = len(grid.shape)
    if state.shape[-1 - g:-1] != grid.shape or forcings.shape[-1 - g:-1] != grid.shape:
      raise ValueError(f'Forecaster: state {state.shape} and forcings {forcings.shape} must '
                       f'be (*batch, {", ".join(map(str, grid.shape))}, channels) on {grid}')
    c = state.shape[-1]
    scalar, u, v = split_channels(c, self.vector_pairs)
    spin0 = jnp.concatenate([state[..., scalar], forcings], axis=-1).astype(jnp.complex64)
    spin1 = (state[..., u] + 1j * state[..., v]).astype(jnp.complex64)
    width = max(spin0.shape[-1], spin1.shape[-1])
    pad = lambda a: jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])])
    x = jnp.stack([pad(spin0), pad(spin1)], axis=-2)  # (*batch, *grid, 2, width)
    # The backbone also hands out what its last nonlinearity knows of its
    # output's coefficients: the head does not analyse that again.
    h, coeffs = net(x, train, return_coeffs=True)
    out_width = max(len(scalar), len(u), 1)
    y = SpinSphericalConv(out_width, spins_in=net.stage_spins()[-1], spins_out=SPINS,
                          input_grid=net.grids[-1], output_grid=grid,
                          num_filter_params=self.head_filter_params,
                          kernel_scale=self.head_scale, name='head')(h, coeffs=coeffs)
    inc = jnp.zeros(state.shape, jnp.float32)
    inc = inc.at[..., scalar].set(y[..., 0, :len(scalar)].real)
    inc = inc.at[..., u].set(y[..., 1, :len(u)].real)
    inc = inc.at[..., v].set(y[..., 1, :len(u)].imag)
    return inc


def step(model: nn.Module, variables, state, forcings, diff_scale, train: bool = False,
         mutable=False):
  """One forecast step in normalised units: state + model(state) * diff_scale.

  Args:
    model: a `Forecaster`.
    variables: its flax variables.
    state: (B, *grid.shape, C) normalised state.
    forcings: (B, *grid.shape, F) normalised forcings at the state's time.
    diff_scale: (C,) difference std / state std per channel.
    train, mutable: passed to `model.apply` (train=True needs
      mutable=['batch_stats']).

  Returns:
    the next normalised state (B, *grid.shape, C), or (state, updates) when
    `mutable` is set.
  """
  out = model.apply(variables, state, forcings, train, mutable=mutable)
  inc, updates = out if mutable else (out, None)
  nxt = state + inc * jnp.asarray(diff_scale, state.dtype)
  return (nxt, updates) if mutable else nxt


def rollout(model: nn.Module, variables, state, forcings, diff_scale, train: bool = False):
  """k autoregressive steps (the k of `forcings`), batch-norm updates chained.

  Args:
    state: (B, *grid.shape, C) normalised initial state.
    forcings: (B, k, *grid.shape, F) normalised forcings at t, ..., t+(k-1) dt.

  Returns:
    (predictions (B, k, *grid.shape, C), the non-param collections after the
    last step).
  """
  preds = []
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  for j in range(forcings.shape[1]):
    v = dict(variables, **model_state)
    if train:
      state, model_state = step(model, v, state, forcings[:, j], diff_scale, True,
                                mutable=['batch_stats'])
    else:
      state = step(model, v, state, forcings[:, j], diff_scale)
    preds.append(state)
  return jnp.stack(preds, axis=1), model_state


def weighted_mse(pred, target, area_weights, diff_scale):
  """Area-weighted MSE in units of each channel's difference std.

  Args:
    pred, target: (B, k, *grid.shape, C) normalised states.
    area_weights: grid.shape weights with mean 1.
    diff_scale: (C,) difference std / state std.

  Returns:
    (scalar mean over batch, channels and space, summed over the k steps;
     (k,) per-step values).
  """
  err = (pred - target) / jnp.asarray(diff_scale, pred.dtype)
  w = jnp.asarray(area_weights, pred.dtype)[..., None]
  per_step = jnp.mean(err ** 2 * w, axis=tuple(i for i in range(err.ndim) if i != 1))
  return jnp.sum(per_step), per_step


def area_weights(grid) -> np.ndarray:
  """grid.shape quadrature weights normalised to mean 1 (float32)."""
  return grids_lib.parse(grid).area_weights.astype(np.float32)
