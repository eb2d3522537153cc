"""Tests of `SphericalCNNTower` (small grids; the NeuralGCM stack is in integration_tests)."""

from __future__ import annotations

import gin
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin import grids
from sphere_plugin.neuralgcm import tower as tower_lib
from sphere_plugin.nn.blocks import SphericalCNN

GRID = 'gaussian:16x8'
KW = dict(grid=GRID, features=(4,), lmaxes=(5,), num_filter_params=(3,))


def _tower_fn(output_size=3, **kw):
  kw = {**KW, **kw}
  return hk.transform(lambda x: tower_lib.SphericalCNNTower(output_size, **kw)(x))


def _inputs(c=5, shape=(16, 8), seed=0):
  return jax.random.normal(jax.random.key(seed), (c, *shape), jnp.float32)


def test_contract_and_no_state():
  f = _tower_fn()
  x = _inputs()
  # hk.transform (not transform_with_state) is what NeuralGCM uses: init fails
  # if the tower creates haiku state (e.g. batch-norm statistics).
  params = f.init(jax.random.key(1), x)
  y = f.apply(params, None, x)
  assert y.shape == (3, 16, 8) and y.dtype == jnp.float32
  assert np.isfinite(np.asarray(y)).all()
  batched = f.apply(params, None, jnp.stack([x, 2 * x]))
  assert batched.shape == (2, 3, 16, 8)
  # float32 matmuls on different batch shapes: agreement to rounding.
  np.testing.assert_allclose(batched[0], y, rtol=1e-4, atol=1e-5)


def test_equals_flax_backbone_applied_directly():
  """One implementation: the tower is SphericalCNN + a 1x1 projection, nothing else."""
  f = _tower_fn()
  x = _inputs()
  params = f.init(jax.random.key(2), x)
  y = f.apply(params, None, x)
  (proj_key,) = [k for k in params if k.endswith('/projection')]
  prefix = proj_key[:-len('projection')]
  backbone_params = {k[len(prefix):]: v for k, v in params.items()
                     if k.startswith(prefix + 'backbone')}
  assert backbone_params, sorted(params)
  # Rebuild the flax nested params from haiku's flat module paths.
  nested = {}
  for path, leaves in backbone_params.items():
    node = nested
    for part in path.split('/')[1:]:
      node = node.setdefault(part, {})
    node.update(leaves)
  net = SphericalCNN(input_grid=GRID, grids=(GRID,), features=(4,), spins=(0,),
                     lmaxes=(5,), num_filter_params=(3,))
  xin = jnp.moveaxis(x, 0, -1)[..., None, :]
  stats = net.init(jax.random.key(0), xin)['batch_stats']  # initial running stats
  h = net.apply({'params': nested, 'batch_stats': stats}, xin, train=False)
  feats = jnp.concatenate([h[..., 0, :].real, h[..., 0, :].imag], axis=-1)
  proj = params[proj_key]
  ref = jnp.moveaxis(feats @ proj['kernel'] + proj['bias'], -1, 0)
  # Same float32 operations in the same order: agreement to rounding.
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_zonal_shift_equivariance():
  """Rolling the input in longitude by whole nodes rolls the output the same way.

  A rotation about the polar axis by 2*pi*k/nlon maps the grid onto itself, so
  every equivariant layer (and the pointwise projection) commutes with it up to
  float32 rounding.
  """
  f = _tower_fn()
  x = _inputs(seed=3)
  params = f.init(jax.random.key(4), x)
  y = f.apply(params, None, x)
  y_shift = f.apply(params, None, jnp.roll(x, 5, axis=-2))
  np.testing.assert_allclose(y_shift, jnp.roll(y, 5, axis=-2), rtol=1e-4, atol=1e-4)


def test_grid_mismatch_and_missing_grid_are_refused():
  f = _tower_fn()
  with pytest.raises(ValueError, match=r'input shape \(5, 32, 16\).*gaussian:16x8'):
    f.init(jax.random.key(0), _inputs(shape=(32, 16)))
  g = hk.transform(lambda x: tower_lib.SphericalCNNTower(3)(x))
  with pytest.raises(ValueError, match='never guessed'):
    g.init(jax.random.key(0), _inputs())
  with pytest.raises(ValueError, match='lat-lon'):
    _tower_fn(grid='healpix:2').init(jax.random.key(0), _inputs())


def test_grid_from_dinosaur_and_text():
  from dinosaur import spherical_harmonic  # pylint: disable=g-import-not-at-top
  assert tower_lib.resolve_grid(spherical_harmonic.Grid.TL63()) == grids.parse('gaussian:128x64')
  # T21 and TL31 share their nodes; our layers need only the nodes.
  assert tower_lib.resolve_grid(spherical_harmonic.Grid.T21()) == grids.parse('gaussian:64x32')
  assert tower_lib.resolve_grid('equiangular:64x32') == grids.parse('equiangular:64x32')
  with pytest.raises(ValueError, match='grid text'):
    tower_lib.resolve_grid(64)


def test_gin_tower_factory_in_neuralgcm_mapping():
  """The real NeuralGCM NodalMapping builds our tower from a gin reference."""
  from neuralgcm.legacy import mappings  # pylint: disable=g-import-not-at-top
  del mappings
  gin.clear_config()
  try:
    gin.parse_config([
        'NodalMapping.tower_factory = @SphericalCNNTower',
        f"SphericalCNNTower.grid = '{GRID}'",
        'SphericalCNNTower.features = (4,)',
        'SphericalCNNTower.lmaxes = (5,)',
    ])
    out_shapes = {'a': np.asarray((2, 16, 8)), 'b': np.asarray((1, 16, 8))}  # shapes

    def fwd(inputs):
      mapping = gin.get_configurable('NodalMapping')(out_shapes)
      return mapping(inputs)

    f = hk.transform(fwd)
    inputs = {'u': _inputs(c=3), 'v': _inputs(c=1, seed=1)}
    params = f.init(jax.random.key(0), inputs)
    out = f.apply(params, None, inputs)
  finally:
    gin.clear_config()
  assert out['a'].shape == (2, 16, 8) and out['b'].shape == (1, 16, 8)
  assert any('spherical_cnn_tower' in k for k in params), sorted(params)
