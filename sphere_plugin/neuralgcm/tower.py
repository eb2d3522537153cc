"""`SphericalCNNTower`: the flax `SphericalCNN` backbone as a NeuralGCM tower.

NeuralGCM's legacy stacks (haiku + gin) map nodal features to nodal outputs
through towers: `NodalMapping(output_shapes, tower_factory)` packs its inputs
into one (C, lon, lat) array and calls `tower_factory(output_size)(array)`,
which must return (output_size, lon, lat). `SphericalCNNTower` has that
contract. It runs `sphere_plugin.nn.SphericalCNN` (one implementation of the
layers, shared with the rest of the package) lifted into haiku with
`haiku.experimental.flax.lift`, followed by a pointwise (1x1) projection of
the backbone's rotation-invariant per-pixel features to `output_size`.

Grid. A tower is built with `output_size` only, so the grid must come from
gin: `SphericalCNNTower.grid` accepts grid text ('gaussian:128x64'), a
`sphere_plugin.grids.Grid`, or a dinosaur grid, in particular the model's own
horizontal grid binding (`SphericalCNNTower.grid = @GridTL63()`, the same
reference the checkpoint binds to `CoordinateSystem.horizontal`). It is never
guessed from the input shape: 128x64 nodes are both Gaussian (T42, TL63) and
equiangular, and dinosaur's spectral truncation for a node count is a separate
choice (64x32 is both T21 and TL31). For the nodes our layers need, only the
latitude spacing and the node counts matter; the truncation the layers use is
`lmaxes` (default: the grid's full degree, 63 on gaussian:128x64). A call whose
(lon, lat) shape differs from the grid's raises ValueError;
`sphere_plugin.neuralgcm.check_tower_grids` also compares the spacing with the
model's coordinates.

Batch norm. NeuralGCM applies its haiku functions with `hk.transform` (no
state), so the tower carries no batch-norm state: the backbone runs in
inference mode with its running statistics fixed at their initial values
(mean 0, variance 1), i.e. each `SpectralBatchNorm` is a learned per-channel
scale and an l = 0 bias, still exactly rotation-equivariant. The fixed
statistics are constants of the computation, not parameters or state.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import gin
import haiku as hk
import jax
import jax.numpy as jnp

from sphere_plugin import grids as grids_lib
from sphere_plugin.nn.blocks import SphericalCNN


def resolve_grid(grid: Any) -> grids_lib.Grid:
  """A lat-lon `Grid` from text, a `Grid`, or a dinosaur grid.

  Args:
    grid: 'gaussian:128x64', a `sphere_plugin.grids.Grid`, or a
      `dinosaur.spherical_harmonic.Grid` (e.g. the gin reference @GridTL63()).

  Returns:
    The grid with the same nodes.
  """
  if grid is None or grid is gin.REQUIRED:
    raise ValueError(
        'SphericalCNNTower needs its grid: bind SphericalCNNTower.grid to the '
        "model's nodal grid, e.g. SphericalCNNTower.grid = 'gaussian:128x64' or "
        "@GridTL63() (the model's CoordinateSystem.horizontal); it is never guessed "
        'from the input shape (128x64 nodes are Gaussian or equiangular)')
  if isinstance(grid, (str, grids_lib.Grid)):
    return grids_lib.parse(grid)
  if hasattr(grid, 'latitude_spacing') and hasattr(grid, 'longitude_nodes'):
    return grids_lib.from_dinosaur(grid)
  raise ValueError(f'SphericalCNNTower.grid must be grid text, a Grid or a dinosaur '
                   f'Grid; got {type(grid).__name__}: {grid!r}')


def _initial_batch_stats(abstract):
  """Running statistics at their initial values (mean 0, variance 1)."""
  def fill(path, leaf):
    name = path[-1].key
    if name == 'mean':
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name == 'var':
      return jnp.ones(leaf.shape, leaf.dtype)
    raise ValueError(f'unexpected batch statistic {jax.tree_util.keystr(path)}')
  return jax.tree_util.tree_map_with_path(fill, abstract)


class TowerNet(nn.Module):
  """The flax network behind `SphericalCNNTower`: backbone, then a 1x1 projection.

  Attributes:
    backbone_kwargs: `SphericalCNN` attributes, as a tuple of (name, value)
      pairs (hashable); its input is spin-0, (lon, lat, 1, C).
    output_size: output channels.

  Call:
    x: real (*batch, *grid.shape, 1, C), the layer-tensor layout.
    Returns real (*batch, *grid.shape, output_size).
  """
  backbone_kwargs: tuple
  output_size: int

  def backbone(self) -> SphericalCNN:
    """The backbone as an unbound module (its parameters live under 'backbone')."""
    return SphericalCNN(**dict(self.backbone_kwargs), parent=None)

  def features(self, h):
    """Per-pixel rotation-invariant features of the backbone output.

    Args:
      h: complex (*batch, *grid.shape, S, F) backbone output.

    Returns:
      real (*batch, *grid.shape, F') with F' = 2F (spin-0 real and imaginary
      parts) + F per nonzero spin (magnitudes).
    """
    spins = self.backbone().stage_spins()[-1]
    parts = []
    for i, s in enumerate(spins):
      if s == 0:
        parts += [h[..., i, :].real, h[..., i, :].imag]
      else:
        parts.append(jnp.abs(h[..., i, :]))
    return jnp.concatenate(parts, axis=-1)

  @nn.compact
  def __call__(self, x):
    backbone = self.backbone()
    abstract = jax.eval_shape(lambda: backbone.init(jax.random.key(0), x))
    stats = _initial_batch_stats(abstract.get('batch_stats', {}))
    params = self.param('backbone', lambda rng: backbone.init(rng, x)['params'])
    h = backbone.apply({'params': params, 'batch_stats': stats}, x, train=False)
    return nn.Dense(self.output_size, name='projection')(self.features(h))


@gin.register(denylist=['output_size'], module='sphere_plugin.neuralgcm')
class SphericalCNNTower(hk.Module):
  """Spherical CNN tower with NeuralGCM's tower contract (like `Conv2DTower`).

  Registered with gin like NeuralGCM's towers, so a config can say
  `NodalMapping.tower_factory = @SphericalCNNTower`.

  Args:
    output_size: output channels (set by NeuralGCM's mapping; not a gin
      binding).
    grid: the model's nodal grid: text, `Grid`, or dinosaur grid (required).
    features: per-stage channels of the backbone.
    stage_grids: per-stage grids; default `grid` for every stage.
    spins: backbone spins (a tuple of ints for every stage, or one per stage).
    lmaxes: per-stage degree limits (None entries: the stage grid's full lmax).
    num_filter_params: per-stage filter anchors (None: full filters).
    blocks_per_stage: residual blocks per stage.
    name: haiku module name.

  Call:
    inputs: real (*batch, C, lon, lat), (lon, lat) == grid.shape.
    Returns real (*batch, output_size, lon, lat).
  """

  def __init__(
      self,
      output_size: int,
      grid: Any = gin.REQUIRED,
      features: Sequence[int] = (16,),
      stage_grids: Sequence[Any] | None = None,
      spins: Sequence[Any] = (0,),
      lmaxes: Sequence[int | None] | None = None,
      num_filter_params: Sequence[int | None] | None = (4,),
      blocks_per_stage: int = 1,
      name: str | None = None,
  ):
    super().__init__(name=name)
    self.grid = resolve_grid(grid)
    if not isinstance(self.grid, grids_lib.LatLonGrid):
      raise ValueError(f'SphericalCNNTower works on NeuralGCM lat-lon grids, got {self.grid}')
    features = tuple(int(f) for f in features)
    if stage_grids is None:
      stage_grids = (self.grid,) * len(features)
    self.output_size = int(output_size)
    self.net = TowerNet(
        backbone_kwargs=(
            ('input_grid', self.grid),
            ('grids', tuple(grids_lib.parse(g) for g in stage_grids)),
            ('features', features), ('spins', tuple(spins)), ('input_spins', (0,)),
            ('lmaxes', None if lmaxes is None else tuple(lmaxes)),
            ('num_filter_params',
             None if num_filter_params is None else tuple(num_filter_params)),
            ('blocks_per_stage', int(blocks_per_stage))),
        output_size=self.output_size)

  def __call__(self, inputs):
    inputs = jnp.asarray(inputs)
    if inputs.ndim < 3 or tuple(inputs.shape[-2:]) != self.grid.shape:
      raise ValueError(
          f'SphericalCNNTower: input shape {tuple(inputs.shape)} is not (*batch, C, '
          f'{self.grid.shape[0]}, {self.grid.shape[1]}) for its grid {self.grid}; bind '
          "SphericalCNNTower.grid to the grid this tower's mapping runs on (the model "
          "coordinates' horizontal grid)")
    x = jnp.moveaxis(inputs, -3, -1)[..., None, :]  # (*batch, lon, lat, 1, C)
    y = hk.experimental.flax.lift(self.net, name='flax')(x)  # (*batch, lon, lat, out)
    return jnp.moveaxis(y, -1, -3).astype(inputs.dtype)
