"""Residual blocks and the generic `SphericalCNN` backbone."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import flax.linen as nn
import gin

from sphere_plugin.nn import spectral
from sphere_plugin.nn.conv import SpinSphericalConv
from sphere_plugin.nn.nonlinearities import PhaseCollapse
from sphere_plugin.nn.nonlinearities import apply_nonlinearity
from sphere_plugin.nn.norms import SpectralBatchNorm


@gin.configurable(module='sphere_plugin.nn')
class SpinSphericalResidualBlock(nn.Module):
  """conv -> spectral BN -> nonlinearity -> conv -> spectral BN, plus a spectral skip.

  The input is analysed once; the skip is summed in the spectral domain; the
  sum is synthesised on the output grid and passed through the nonlinearity.
  That is 2 forward and 2 inverse transforms per block, less what the
  nonlinearity knows of its output's coefficients (`apply_nonlinearity`):
  with PhaseCollapse the middle analysis only transforms one real spin-0
  field, and a block given its input's coefficients analyses nothing more at
  its start. When the spins or
  channels change, the skip goes through a convolution whose filter is
  constant in l (an equivariant channel/spin projection) with a bias on the
  spin-0 l = 0 coefficient only; the reference implementation's real bias on
  every (l, m) broke equivariance.

  Attributes:
    features: output channels.
    spins_in: input spins.
    spins_out: output spins (must contain 0 for PhaseCollapse).
    input_grid: grid of the (spatial) input.
    output_grid: grid of the output and of the middle nonlinearity; default
      input_grid.
    lmax: degree limit inside the block; default the smaller of the two grids'
      `spectral.default_lmax`.
    num_filter_params: None (full filters) or anchors of localized filters.
    nonlinearity: module class called as nonlinearity(spins=...) on spatial
      tensors; PhaseCollapse by default.
    axis_name: for the batch norms' cross-device statistics.

  Call:
    x: (*batch, *input_grid.shape, S_in, C_in); train: batch-norm mode.
    coeffs: optional {spin: (*batch, L+1, 2L+1, 1, C_in) or
      `spectral.PartlyKnown`}, what is known of x's coefficients on
      input_grid (see `spectral.to_spectral(known=...)`); used instead of
      analysing those channels.
    return_coeffs: also return such a dict for the output (what its
      nonlinearity knows, see `apply_nonlinearity`).
    Returns complex (*batch, *output_grid.shape, S_out, features), and the
    dict when return_coeffs.
  """
  features: int
  spins_in: Sequence[int] = (0, 1)
  spins_out: Sequence[int] = (0, 1)
  input_grid: Any = None
  output_grid: Any = None
  lmax: int | None = None
  num_filter_params: int | None = None
  nonlinearity: Callable[..., nn.Module] = PhaseCollapse
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False, coeffs: dict | None = None,
               return_coeffs: bool = False):
    if self.input_grid is None:
      raise ValueError('SpinSphericalResidualBlock needs input_grid')
    grid_in = spectral.as_grid(self.input_grid)
    grid_out = spectral.as_grid(self.output_grid) or grid_in
    spins_in = spectral.check_spins(x, self.spins_in, 'SpinSphericalResidualBlock')
    spins_out = tuple(int(s) for s in self.spins_out)
    spectral.check_spatial(x, grid_in, 'SpinSphericalResidualBlock')
    lmax = self.lmax
    if lmax is None:
      lmax = min(spectral.default_lmax(grid_in), spectral.default_lmax(grid_out))
    a = spectral.to_spectral(x, grid_in, min(lmax, spectral.default_lmax(grid_in)), spins_in,
                             known=coeffs)
    a = spectral.resize(a, lmax)

    def conv(spins, **kw):
      return SpinSphericalConv(self.features, spins_in=spins, spins_out=spins_out, lmax=lmax,
                               **kw)

    def bn(**kw):
      return SpectralBatchNorm(spins=spins_out, axis_name=self.axis_name, **kw)

    h = conv(spins_in, num_filter_params=self.num_filter_params, use_bias=False)(a)
    h = bn()(h, train)
    # What the nonlinearity knows of its output's coefficients is not analysed again.
    y, known = apply_nonlinearity(self.nonlinearity(spins=spins_out),
                                  spectral.to_spatial(h, grid_out, spins_out), h, spins_out)
    h = conv(spins_out, input_grid=grid_out, num_filter_params=self.num_filter_params,
             use_bias=False)(y, coeffs=known)
    h = bn(scale_init=nn.initializers.zeros)(h, train)
    skip = a
    if spins_in != spins_out or x.shape[-1] != self.features:
      skip = conv(spins_in, num_filter_params=1, use_bias=True, name='skip_projection')(a)
    h = h + skip
    out, known = apply_nonlinearity(self.nonlinearity(spins=spins_out),
                                    spectral.to_spatial(h, grid_out, spins_out), h, spins_out)
    return (out, known) if return_coeffs else out


def _per_stage(value, n, what):
  if value is None:
    return (None,) * n
  value = tuple(value)
  if len(value) != n:
    raise ValueError(f'SphericalCNN: {what} has {len(value)} entries for {n} stages')
  return value


@gin.configurable(module='sphere_plugin.nn')
class SphericalCNN(nn.Module):
  """Generic spherical CNN backbone: a stem convolution, then residual stages.

  Stage i runs `blocks_per_stage` residual blocks on `grids[i]` with
  `features[i]` channels, spins `spins[i]`, degree limit `lmaxes[i]`; the
  first block of a stage moves from the previous stage's grid (spectral
  pooling or upsampling, so resolution changes stay equivariant). The stem is
  a convolution from `input_grid` to the first stage's spectrum, a spectral
  batch norm and the nonlinearity.

  Attributes:
    input_grid: grid of the input.
    grids: per-stage grids (Grid or text), e.g. ('gaussian:64x32', 'gaussian:32x16').
    features: per-stage channels.
    spins: per-stage spins, e.g. ((0, 1), (0, 1)); a single tuple of ints
      applies to every stage.
    input_spins: spins of the input's spin axis.
    lmaxes: per-stage degree limits (None entries: the grid's default).
    num_filter_params: per-stage filter anchors (None entries: full filters).
    blocks_per_stage: residual blocks per stage.
    block: residual block class (gin-configurable).
    nonlinearity: module class of the stem's nonlinearity (spins=... keyword).
    axis_name: for batch-norm statistics under pmap/shard_map.
    front_end: None, or a module class built with no arguments (a gin
      reference, e.g. a scattering transform or graph-convolution stack) that
      runs before the stem: hybrid networks. It is called as
      `front_end()(x, train)` on the input and must return spin-0 fields
      (*batch, *G.shape, 1, C'), where G is its `output_grid` (an attribute
      or a method returning a Grid or grid text); the stem then reads G.

  Call:
    x: (*batch, *input_grid.shape, len(input_spins), C_in); train: batch-norm mode.
    return_coeffs: also return what the last nonlinearity knows of the
      output's coefficients, {spin: (*batch, L+1, 2L+1, 1, features[-1]) or
      `spectral.PartlyKnown`} for `spectral.to_spectral(known=...)` (empty if
      the block class does not return it).
    Returns complex (*batch, *grids[-1].shape, len(spins[-1]), features[-1]),
    and the dict when return_coeffs.
  """
  input_grid: Any
  grids: Sequence[Any]
  features: Sequence[int]
  spins: Sequence[Any] = (0, 1)
  input_spins: Sequence[int] = (0,)
  lmaxes: Sequence[int | None] | None = None
  num_filter_params: Sequence[int | None] | None = None
  blocks_per_stage: int = 1
  block: Callable[..., nn.Module] = SpinSphericalResidualBlock
  nonlinearity: Callable[..., nn.Module] = PhaseCollapse
  axis_name: Any = None
  front_end: Callable[..., nn.Module] | None = None

  def stage_spins(self) -> tuple[tuple[int, ...], ...]:
    """Per-stage spin tuples."""
    n = len(self.grids)
    if all(isinstance(s, int) for s in self.spins):
      return (tuple(self.spins),) * n
    return tuple(tuple(s) for s in _per_stage(self.spins, n, 'spins'))

  @nn.compact
  def __call__(self, x, train: bool = False, return_coeffs: bool = False):
    n = len(self.grids)
    if n == 0:
      raise ValueError('SphericalCNN needs at least one stage')
    features = _per_stage(self.features, n, 'features')
    lmaxes = _per_stage(self.lmaxes, n, 'lmaxes')
    nfps = _per_stage(self.num_filter_params, n, 'num_filter_params')
    spins = self.stage_spins()
    grids = [spectral.as_grid(g) for g in self.grids]
    input_grid, input_spins = self.input_grid, self.input_spins
    if self.front_end is not None:
      front = self.front_end()
      x = front(x, train)
      input_grid = front.output_grid
      input_grid = spectral.as_grid(input_grid() if callable(input_grid) else input_grid)
      input_spins = (0,)
    lmax0 = lmaxes[0] if lmaxes[0] is not None else min(
        spectral.default_lmax(input_grid), spectral.default_lmax(grids[0]))
    h = SpinSphericalConv(features[0], spins_in=input_spins, spins_out=spins[0],
                          input_grid=input_grid, lmax=lmax0,
                          num_filter_params=nfps[0], use_bias=False, name='stem')(x)
    a = SpectralBatchNorm(spins=spins[0], axis_name=self.axis_name)(h, train)
    h, coeffs = apply_nonlinearity(self.nonlinearity(spins=spins[0]),
                                   spectral.to_spatial(a, grids[0], spins[0]), a, spins[0])
    # Blocks that take and return what is known of their input's and output's
    # coefficients (SpinSphericalResidualBlock's `coeffs` / `return_coeffs`)
    # get it, so that the next block does not analyse those channels again.
    chain = 'return_coeffs' in inspect.signature(self.block.__call__).parameters
    grid, sp = grids[0], spins[0]
    for i in range(n):
      for _ in range(self.blocks_per_stage):
        block = self.block(features[i], spins_in=sp, spins_out=spins[i], input_grid=grid,
                           output_grid=grids[i], lmax=lmaxes[i], num_filter_params=nfps[i],
                           axis_name=self.axis_name)
        if chain:
          h, coeffs = block(h, train, coeffs=coeffs, return_coeffs=True)
        else:
          h, coeffs = block(h, train), {}
        grid, sp = grids[i], spins[i]
    return (h, coeffs) if return_coeffs else h
