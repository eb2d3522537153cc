"""Learned baselines for the forecasting study: a planar CNN and a HEALPix graph U-Net.

Both are drop-in replacements of `sphere_plugin.models.Forecaster` in
`ForecastTask` (gin: `ForecastTask.model = @sphere_plugin.models.PlanarForecaster`):
same call `(state, forcings, train) -> increments`, same channels in and out,
increments in units of each channel's time-step difference standard deviation,
so the task's loss, optimizer, normalisation and rollout apply unchanged. Winds
are two scalar channels each (no spin-1 treatment): that is the conventional
choice the study compares against.

* `PlanarForecaster`: a ResNet on the (longitude, latitude) array in the style
  of Rasp & Thuerey (2021) / WeatherBench: 3x3 convolutions, batch norm,
  residual blocks. Longitude is padded periodically; across a pole the padding
  takes the rows on the other side of the pole, i.e. latitude reflected and
  longitude shifted by 180 degrees (`pad_lonlat`), the standard treatment for
  a lat-lon array (so the field is continuous over the pole; vector components
  are not sign-flipped there, as a planar CNN does not know they are vectors).
* `GraphForecaster`: DeepSphere's U-Net (`sphere_plugin.nn.GraphUNet`,
  Chebyshev graph convolutions, NESTED pooling) on a HEALPix grid, for data
  regridded to HEALPix (`ForecastTask.embedded_grid = 'healpix:16'`).

Both end with a head initialised small (`head_scale`) so an untrained model
starts close to persistence, as the spherical forecaster does.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import graph_layers


def pad_lonlat(x, width: int):
  """Pads (*batch, nlon, nlat, C) by `width` cells: periodic in longitude, over the poles.

  Beyond a pole the rows are those just across it: the latitude order
  reflected and the longitude shifted by half a turn (nlon must be even).

  Returns:
    (*batch, nlon + 2 width, nlat + 2 width, C).
  """
  if width == 0:
    return x
  nlon, nlat = x.shape[-3], x.shape[-2]
  if nlon % 2 or width > nlat or width > nlon:
    raise ValueError(f'pad_lonlat needs an even nlon and width <= nlat, nlon; got '
                     f'{nlon}x{nlat}, width {width}')
  half = nlon // 2
  south = jnp.roll(jnp.flip(x[..., :width, :], axis=-2), half, axis=-3)
  north = jnp.roll(jnp.flip(x[..., nlat - width:, :], axis=-2), half, axis=-3)
  x = jnp.concatenate([south, x, north], axis=-2)
  return jnp.concatenate([x[..., nlon - width:, :, :], x, x[..., :width, :, :]], axis=-3)


class _LonLatConv(nn.Module):
  """kxk convolution on (B, nlon, nlat, C) with `pad_lonlat` padding (size kept)."""
  features: int
  kernel: int = 3
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    h = pad_lonlat(x, self.kernel // 2)
    return nn.Conv(self.features, (self.kernel, self.kernel), padding='VALID',
                   kernel_init=self.kernel_init)(h)


def _flatten_batch(x, g: int):
  """(*batch, *spatial(g dims), C) -> ((B, *spatial, C), batch shape)."""
  batch = x.shape[:-1 - g]
  return x.reshape((-1,) + x.shape[-1 - g:]), batch


@gin.configurable(module='sphere_plugin.models')
class PlanarForecaster(nn.Module):
  """A conventional CNN forecaster on the lat-lon array (ResNet, WeatherBench style).

  Stem 3x3 conv to `features` channels, `blocks` residual blocks
  (conv-BN-GELU-conv-BN, skip, GELU), head 3x3 conv to the state channels,
  initialised at `head_scale` times the usual scale.

  Attributes:
    features: channels of the hidden layers.
    blocks: residual blocks.
    kernel: convolution size (odd).
    head_scale: initial weight scale of the head (small: starts near persistence).
    vector_pairs: (u, v) channel indices (set by ForecastTask; winds stay two
      scalar channels here, so they are only checked).

  Call:
    state: (*batch, nlon, nlat, C) normalised; forcings (*batch, nlon, nlat, F).
    Returns (*batch, nlon, nlat, C) increments in difference-std units.
  """
  features: int = 64
  blocks: int = 3
  kernel: int = 3
  head_scale: float = 0.1
  vector_pairs: Sequence[tuple[int, int]] = ()

  @nn.compact
  def __call__(self, state, forcings, train: bool = False):
    if state.ndim < 3 or state.shape[:-1] != forcings.shape[:-1]:
      raise ValueError(f'PlanarForecaster: state {state.shape} and forcings {forcings.shape} '
                       'must be (*batch, nlon, nlat, channels) on the same grid')
    if self.kernel % 2 != 1:
      raise ValueError(f'kernel must be odd, got {self.kernel}')
    c = state.shape[-1]
    x, batch = _flatten_batch(jnp.concatenate([state, forcings], -1).astype(jnp.float32), 2)
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    h = nn.gelu(bn()(_LonLatConv(self.features, self.kernel)(x)))
    for _ in range(self.blocks):
      r = nn.gelu(bn()(_LonLatConv(self.features, self.kernel)(h)))
      r = bn()(_LonLatConv(self.features, self.kernel)(r))
      h = nn.gelu(h + r)
    init = nn.initializers.variance_scaling(self.head_scale ** 2, 'fan_in', 'truncated_normal')
    y = _LonLatConv(c, self.kernel, kernel_init=init, name='head')(h)
    return y.reshape(batch + y.shape[1:])


@gin.configurable(module='sphere_plugin.models')
class GraphForecaster(nn.Module):
  """A DeepSphere graph forecaster: `GraphUNet` on HEALPix, winds as scalar channels.

  The U-Net maps state and forcings to `features[0]` channels; a pointwise head
  (initialised at `head_scale`) maps them to the increments.

  Attributes:
    grid: the HEALPix grid of the data (e.g. 'healpix:16').
    features, K, k, convs_per_stage: of the `GraphUNet`.
    head_scale: initial weight scale of the head.
    vector_pairs: set by ForecastTask (unused: winds are scalar channels).

  Call:
    state: (*batch, npix, C); forcings (*batch, npix, F).
    Returns (*batch, npix, C) increments in difference-std units.
  """
  grid: Any = 'healpix:16'
  features: Sequence[int] = (64, 96, 128)
  K: int = 4  # pylint: disable=invalid-name
  k: int = 8
  convs_per_stage: int = 1
  head_scale: float = 0.1
  vector_pairs: Sequence[tuple[int, int]] = ()

  @nn.compact
  def __call__(self, state, forcings, train: bool = False):
    grid = grids_lib.parse(self.grid)
    if not isinstance(grid, grids_lib.HealpixGrid):
      raise ValueError(f'GraphForecaster runs on HEALPix grids, got {grid}')
    if state.shape[-2:-1] != grid.shape or forcings.shape[-2:-1] != grid.shape:
      raise ValueError(f'GraphForecaster: state {state.shape} and forcings {forcings.shape} '
                       f'must be (*batch, {grid.npix}, channels) on {grid}')
    c = state.shape[-1]
    x, batch = _flatten_batch(jnp.concatenate([state, forcings], -1).astype(jnp.float32), 1)
    h = graph_layers.GraphUNet(grid=str(grid), features=tuple(self.features),
                               out_features=int(self.features[0]), K=self.K, k=self.k,
                               activation='gelu', convs_per_stage=self.convs_per_stage)(
                                   x[..., None, :], train)[..., 0, :]
    init = nn.initializers.variance_scaling(self.head_scale ** 2, 'fan_in', 'truncated_normal')
    y = nn.Dense(c, kernel_init=init, name='head')(nn.gelu(h))
    return y.reshape(batch + y.shape[1:])


def parameter_count(variables) -> int:
  """Number of trainable parameters (the 'params' collection)."""
  return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(variables['params'])))
