"""Graph layers on the sphere: ChebConv, HEALPix NESTED pooling, graph front end, U-Net.

DeepSphere (Perraudin et al. 2019; Defferrard et al., ICLR 2020): Chebyshev
polynomial filters of the graph Laplacian (`graph.py`) at high resolution,
HEALPix pooling by 4 in NESTED order (the 4 children of a coarse pixel are
consecutive). Filters are isotropic and only approximately rotation
equivariant (README "Graph convolutions").

Layout: like the other layers, spatial (*batch, *grid.shape, 1, C), spin 0
only (a single spin axis entry). Graph layers use real weights; a complex
input is filtered as two real fields (the Laplacian is real). Pixel order is
RING unless a layer says `order='nested'` (HEALPix only).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn import graph as graph_lib
from sphere_plugin.nn import spectral

ORDERS = ('ring', 'nested')
POOLING_MODES = ('average', 'max')


def _nside_of(npix: int) -> int:
  nside = int(round(np.sqrt(npix / 12)))
  if 12 * nside * nside != npix or nside & (nside - 1):
    raise ValueError(f'{npix} pixels is not 12 nside^2 for a power-of-two nside; HEALPix '
                     'NESTED order needs nside = 1, 2, 4, ...')
  return nside


def _check_order(order: str) -> None:
  if order not in ORDERS:
    raise ValueError(f'unknown HEALPix pixel order {order!r}; expected one of {ORDERS}')


def to_nested(x, axis: int = -3):
  """Reorders a HEALPix RING-order axis to NESTED order.

  Args:
    x: (..., 12 nside^2 on `axis`, ...), nside a power of two.
    axis: the pixel axis (-3 in layer tensors (*batch, N, S, C)).

  Returns:
    x with that axis in NESTED order (same shape).
  """
  p = grids_lib.nested_to_ring(_nside_of(x.shape[axis]))
  return jnp.take(x, jnp.asarray(p.astype(np.int32)), axis=axis)


def to_ring(x, axis: int = -3):
  """Reorders a HEALPix NESTED-order axis to RING order (inverse of `to_nested`)."""
  q = grids_lib.ring_to_nested(_nside_of(x.shape[axis]))
  return jnp.take(x, jnp.asarray(q.astype(np.int32)), axis=axis)


def _split_children(x, axis):
  axis = axis % x.ndim
  n = x.shape[axis]
  _nside_of(n)
  if n < 12 * 4:
    raise ValueError(f'cannot pool HEALPix nside 1 ({n} pixels) further')
  return x.reshape(x.shape[:axis] + (n // 4, 4) + x.shape[axis + 1:]), axis


def healpix_pool(x, mode: str = 'average', order: str = 'nested', axis: int = -3,
                 return_indices: bool = False):
  """Pools HEALPix nside -> nside/2: each coarse pixel gets its 4 NESTED children's mean or max.

  Args:
    x: (..., 12 nside^2 on `axis`, ...); real for mode 'max'.
    mode: 'average' or 'max'.
    order: pixel order of input and output, 'nested' or 'ring' (ring is reordered
      to nested and back: two gathers).
    axis: the pixel axis (-3 in layer tensors).
    return_indices: also return, for 'max', which child (0..3, NESTED) won.

  Returns:
    (..., 3 nside^2, ...) pooled, and with return_indices an int32 array of that shape.
  """
  _check_order(order)
  if mode not in POOLING_MODES:
    raise ValueError(f'unknown pooling mode {mode!r}; expected one of {POOLING_MODES}')
  if mode == 'max' and jnp.iscomplexobj(x):
    raise ValueError('max pooling needs a real input; got a complex one')
  if return_indices and mode != 'max':
    raise ValueError("return_indices needs mode='max'")
  if order == 'ring':
    x = to_nested(x, axis)
  xs, ax = _split_children(x, axis)
  if mode == 'average':
    out = jnp.mean(xs, axis=ax + 1)
  else:
    out = jnp.max(xs, axis=ax + 1)
    idx = jnp.argmax(xs, axis=ax + 1).astype(jnp.int32)
  if order == 'ring':
    out = to_ring(out, axis)
    if return_indices:
      idx = to_ring(idx, axis)
  return (out, idx) if return_indices else out


def healpix_unpool(x, indices=None, order: str = 'nested', axis: int = -3):
  """Unpools HEALPix nside -> 2 nside.

  Without indices every child gets its parent's value (nearest neighbour, the
  right inverse of average pooling). With the indices of a max pooling, the
  value goes to the child that won and the 3 others get 0 (max unpooling).

  Args:
    x: (..., 12 nside^2 on `axis`, ...).
    indices: None, or `healpix_pool(..., mode='max', return_indices=True)`'s indices,
      same shape and order as x.
    order: pixel order of input, indices and output.
    axis: the pixel axis.

  Returns:
    (..., 48 nside^2, ...).
  """
  _check_order(order)
  ax = axis % x.ndim
  _nside_of(x.shape[ax])
  if order == 'ring':
    x = to_nested(x, axis)
    if indices is not None:
      indices = to_nested(indices, axis)
  xe = jnp.expand_dims(x, ax + 1)
  if indices is None:
    fine = jnp.repeat(xe, 4, axis=ax + 1)
  else:
    if indices.shape != x.shape:
      raise ValueError(f'indices shape {indices.shape} does not match x shape {x.shape}')
    child = jnp.arange(4).reshape((4,) + (1,) * (x.ndim - ax - 1))
    fine = jnp.where(jnp.expand_dims(indices, ax + 1) == child, xe, jnp.zeros((), x.dtype))
  fine = fine.reshape(x.shape[:ax] + (4 * x.shape[ax],) + x.shape[ax + 1:])
  return to_ring(fine, axis) if order == 'ring' else fine


@gin.configurable(module='sphere_plugin.nn')
class HealpixPooling(nn.Module):
  """`healpix_pool` as a module (pixel axis -3 of layer tensors).

  Attributes:
    mode: 'average' or 'max'.
    order: 'nested' or 'ring' pixel order of input and output.

  Call:
    x: (*batch, 12 nside^2, S, C). Returns (*batch, 3 nside^2, S, C).
  """
  mode: str = 'average'
  order: str = 'nested'

  def __call__(self, x):
    return healpix_pool(x, self.mode, self.order)


@gin.configurable(module='sphere_plugin.nn')
class HealpixUnpooling(nn.Module):
  """Nearest-neighbour `healpix_unpool` as a module (pixel axis -3).

  Attributes:
    order: 'nested' or 'ring' pixel order of input and output.

  Call:
    x: (*batch, 12 nside^2, S, C). Returns (*batch, 48 nside^2, S, C).
  """
  order: str = 'nested'

  def __call__(self, x):
    return healpix_unpool(x, None, self.order)


@functools.lru_cache(maxsize=64)
def chebyshev_operator(grid_text: str, k: int, kind: str, kernel_width: float | None,
                       order: str = 'ring') -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The rescaled Laplacian L~ = 2 L / lmax - I as (neighbors, off, diag).

  Applied by `graph.gather_apply`.

  Cached per (grid text, k, kind, kernel width, order); plain numpy constants,
  never parameters. With order 'nested' (HEALPix) node i is NESTED pixel i.

  Returns:
    (neighbors (N, K) int32, off (N, K) float64, diag (N,) float64).
  """
  _check_order(order)
  g = graph_lib.sphere_graph(grid_text, k, kernel_width)
  nbr, off, diag = graph_lib.laplacian_parts(g, kind)
  lmax = graph_lib.laplacian_lmax(g, kind)
  off, diag = 2.0 * off / lmax, 2.0 * diag / lmax - 1.0
  if order == 'nested':
    grid = grids_lib.parse(grid_text)
    if not isinstance(grid, grids_lib.HealpixGrid):
      raise ValueError(f"order='nested' needs a HEALPix grid, got {grid}")
    p = grids_lib.nested_to_ring(grid.nside)  # ring index of nested node i
    q = grids_lib.ring_to_nested(grid.nside)
    nbr, off, diag = q[nbr[p]].astype(np.int32), off[p], diag[p]
  for a in (nbr, off, diag):
    a.flags.writeable = False  # shared by every caller of the cache
  return nbr, off, diag


@gin.configurable(module='sphere_plugin.nn')
class ChebConv(nn.Module):
  """Chebyshev graph convolution (Defferrard et al. 2016; DeepSphere).

  y = sum_{i<K} T_i(L~) x W_i + b, with L~ = 2 L / lmax - I the graph
  Laplacian rescaled to [-1, 1] (lmax its largest eigenvalue, `graph.laplacian_lmax`)
  and T_i the Chebyshev recursion T_0 x = x, T_1 x = L~ x,
  T_i x = 2 L~ T_{i-1} x - T_{i-2} x. A filter is a polynomial of degree K - 1
  in L: it reaches K - 1 hops. L~ is applied by gather + weighted sum over a
  fixed-degree neighbour list, built once per (grid, k, laplacian) and cached.

  Attributes:
    features: output channels C_out.
    grid: the grid (or text) of the input and output.
    K: number of Chebyshev terms (filter degree K - 1).
    k: graph neighbours (8, 20 or 40 have fitted kernel widths on HEALPix).
    laplacian: 'combinatorial' or 'normalized'.
    kernel_width: graph kernel width t; default `graph.kernel_width_for`.
    order: pixel order of x on HEALPix, 'ring' (default) or 'nested'.
    use_bias: add a learned bias per output channel.

  Call:
    x: (*batch, *grid.shape, 1, C_in), real or complex (spin 0).
    Returns (*batch, *grid.shape, 1, C_out), float32/float64 or complex as x.
  """
  features: int
  grid: Any
  K: int = 4  # pylint: disable=invalid-name
  k: int = 8
  laplacian: str = 'combinatorial'
  kernel_width: float | None = None
  order: str = 'ring'
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    grid = grids_lib.parse(self.grid)
    spectral.check_spatial(x, grid, 'ChebConv')
    if x.shape[-2] != 1:
      raise ValueError(f'ChebConv works on spin-0 fields (spin axis of size 1), got shape '
                       f'{x.shape}')
    if self.K < 1:
      raise ValueError(f'ChebConv needs K >= 1 Chebyshev terms, got {self.K}')
    graph_lib.check_laplacian_kind(self.laplacian)
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.iscomplexobj(x)):
      x = x.astype(jnp.float32)
    rdtype = jnp.finfo(x.dtype).dtype
    nd = len(grid.shape)
    batch, c_in, n = x.shape[:-2 - nd], x.shape[-1], int(np.prod(grid.shape))
    h = x.reshape(batch + (n, c_in))
    nbr, off, diag = chebyshev_operator(str(grid), int(self.k), self.laplacian,
                                        self.kernel_width, self.order)
    w = self.param('kernel', nn.initializers.variance_scaling(1.0, 'fan_in', 'normal',
                                                              in_axis=(0, 1), out_axis=2),
                   (self.K, c_in, self.features), jnp.float32).astype(rdtype)
    t_prev, t_cur = None, h
    out = jnp.einsum('...nc,cd->...nd', h, w[0])
    for i in range(1, self.K):
      lt = graph_lib.gather_apply(nbr, off, diag, t_cur)
      t_next = lt if i == 1 else 2 * lt - t_prev
      out = out + jnp.einsum('...nc,cd->...nd', t_next, w[i])
      t_prev, t_cur = t_cur, t_next
    if self.use_bias:
      out = out + self.param('bias', nn.initializers.zeros, (self.features,),
                             jnp.float32).astype(rdtype)
    return out.reshape(batch + grid.shape + (1, self.features))


def _activation(name):
  if callable(name):
    return name
  if not isinstance(name, str) or not hasattr(jax.nn, name):
    raise ValueError(f'unknown activation {name!r}; give a jax.nn function name or a callable')
  return getattr(jax.nn, name)


@gin.configurable(module='sphere_plugin.nn')
class GraphFrontEnd(nn.Module):
  """DeepSphere stack at high resolution: (ChebConv -> activation) x n, then pool by 4.

  Stage i runs `convs_per_stage` ChebConvs with `features[i]` channels on
  healpix nside / 2^i, then pools (NESTED, `pooling`) to nside / 2^(i+1).
  Works in NESTED order inside (one reorder at each end); input and output are
  RING. Usable as `SphericalCNN.front_end` (a gin reference): graph layers at
  high resolution, then spectral layers on `output_grid()`.

  Attributes:
    input_grid: a HEALPix grid (power-of-two nside).
    features: channels per stage; len(features) poolings.
    K: Chebyshev terms per ChebConv.
    k: graph neighbours.
    laplacian: 'combinatorial' or 'normalized'.
    pooling: 'average' or 'max'.
    activation: a jax.nn function name or a callable.
    convs_per_stage: ChebConvs before each pooling.

  Call:
    x: real (*batch, 12 nside^2, 1, C_in), RING order; train: unused (no batch norm).
    Returns real (*batch, 12 (nside / 2^len(features))^2, 1, features[-1]), RING.
  """
  input_grid: Any
  features: Sequence[int] = (16,)
  K: int = 4  # pylint: disable=invalid-name
  k: int = 8
  laplacian: str = 'combinatorial'
  pooling: str = 'average'
  activation: str | Callable = 'relu'
  convs_per_stage: int = 1

  def _nsides(self):
    grid = grids_lib.parse(self.input_grid)
    if not isinstance(grid, grids_lib.HealpixGrid):
      raise ValueError(f'GraphFrontEnd needs a HEALPix input_grid, got {grid}')
    n = len(self.features)
    if grid.nside % (2**n) or grid.nside & (grid.nside - 1):
      raise ValueError(f'GraphFrontEnd: {n} poolings need a power-of-two nside divisible by '
                       f'{2**n}, got {grid}')
    return [grid.nside // 2**i for i in range(n + 1)]

  def output_grid(self) -> grids_lib.HealpixGrid:
    """healpix:(nside / 2^len(features))."""
    return grids_lib.healpix(self._nsides()[-1])

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    nsides = self._nsides()
    spectral.check_spatial(x, grids_lib.healpix(nsides[0]), 'GraphFrontEnd')
    if jnp.iscomplexobj(x) or x.shape[-2] != 1:
      raise ValueError(f'GraphFrontEnd takes real spin-0 fields (*batch, N, 1, C), got '
                       f'{x.dtype} {x.shape}')
    act = _activation(self.activation)
    h = to_nested(x)
    for i, feats in enumerate(self.features):
      for _ in range(self.convs_per_stage):
        h = act(ChebConv(feats, grid=grids_lib.healpix(nsides[i]), K=self.K, k=self.k,
                         laplacian=self.laplacian, order='nested')(h))
      h = healpix_pool(h, self.pooling, 'nested')
    return to_ring(h)


@gin.configurable(module='sphere_plugin.nn')
class GraphUNet(nn.Module):
  """A DeepSphere-style HEALPix U-Net (ChebConv encoder/decoder, NESTED pooling).

  Encoder stage i: (ChebConv(features[i]) -> activation) x convs_per_stage on
  nside / 2^i, then pool (except after the last stage). Decoder: unpool
  (nearest), concatenate the encoder output of that resolution, ChebConvs with
  that stage's features; a final ChebConv (no activation) maps to
  `out_features`. Input and output are RING order on `grid`.

  Attributes:
    grid: HEALPix grid of input and output.
    features: channels per resolution, finest first.
    out_features: output channels.
    K, k, laplacian, pooling, activation, convs_per_stage: as in `GraphFrontEnd`.

  Call:
    x: real (*batch, 12 nside^2, 1, C_in). Returns real (*batch, 12 nside^2, 1, out_features).
  """
  grid: Any
  features: Sequence[int] = (16, 32)
  out_features: int = 1
  K: int = 4  # pylint: disable=invalid-name
  k: int = 8
  laplacian: str = 'combinatorial'
  pooling: str = 'average'
  activation: str | Callable = 'relu'
  convs_per_stage: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    grid = grids_lib.parse(self.grid)
    n = len(self.features)
    if not isinstance(grid, grids_lib.HealpixGrid) or grid.nside % 2 ** (n - 1):
      raise ValueError(f'GraphUNet: {n} resolutions need a HEALPix grid with nside divisible '
                       f'by {2 ** (n - 1)}, got {grid}')
    spectral.check_spatial(x, grid, 'GraphUNet')
    if jnp.iscomplexobj(x) or x.shape[-2] != 1:
      raise ValueError(f'GraphUNet takes real spin-0 fields (*batch, N, 1, C), got '
                       f'{x.dtype} {x.shape}')
    act = _activation(self.activation)

    def convs(h, feats, nside):
      for _ in range(self.convs_per_stage):
        h = act(ChebConv(feats, grid=grids_lib.healpix(nside), K=self.K, k=self.k,
                         laplacian=self.laplacian, order='nested')(h))
      return h

    h = to_nested(x)
    skips = []
    for i, feats in enumerate(self.features):
      if i:
        h = healpix_pool(h, self.pooling, 'nested')
      h = convs(h, feats, grid.nside // 2**i)
      skips.append(h)
    for i in range(n - 2, -1, -1):
      h = jnp.concatenate([healpix_unpool(h, None, 'nested'), skips[i]], axis=-1)
      h = convs(h, self.features[i], grid.nside // 2**i)
    h = ChebConv(self.out_features, grid=grid, K=self.K, k=self.k, laplacian=self.laplacian,
                 order='nested')(h)
    return to_ring(h)
