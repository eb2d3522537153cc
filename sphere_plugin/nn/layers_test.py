"""Layer behaviour: shapes, errors, statistics, pooling against references, gin, gradients."""

import flax.linen as nn
import gin
import healpy
import jax
from jax import test_util as jax_test_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from sphere_plugin import grids
from sphere_plugin import nn as snn
from sphere_plugin import sht
from sphere_plugin.testing import equivariance as eq

G = 'gaussian:16x8'


def _field(shape, seed=0, complex_=True):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape)
  if complex_:
    x = x + 1j * rng.normal(size=shape)
  return jnp.asarray(x, jnp.complex64 if complex_ else jnp.float32)


def test_conv_matches_explicit_filter_on_a_harmonic():
  # One Y_lm in, one spin-0 channel out: the output is W[l] * Y_lm + bias.
  lmax, l, m = 7, 3, 2
  grid = grids.parse(G)
  theta = np.radians(90 - grid.latitudes)[None, :]
  phi = np.radians(grid.longitudes)[:, None]
  y = scipy.special.sph_harm_y(l, m, theta, phi)  # (nlon, nlat)
  x = jnp.asarray(y[None, :, :, None, None], jnp.complex64)
  conv = snn.SpinSphericalConv(1, input_grid=G, output_grid=G, lmax=lmax)
  v = conv.init(jax.random.key(0), x)
  w = np.zeros((lmax + 1, 1, 1, 1, 1, 2), np.float32)
  w[l, ..., 0], w[l, ..., 1] = 0.5, -2.0
  v = {'params': {'kernel': w, 'bias': np.array([[0.25, 1.0]], np.float32)}}
  out = conv.apply(v, x)[0, :, :, 0, 0]
  np.testing.assert_allclose(out, (0.5 - 2j) * y + (0.25 + 1j), atol=2e-6)


def test_conv_param_shapes_and_localized_filters():
  x = _field((2,) + (16, 8, 2, 3))
  full = snn.SpinSphericalConv(5, spins_in=(0, 1), spins_out=(0, 1, 2), input_grid=G)
  v = full.init(jax.random.key(0), x)
  assert v['params']['kernel'].shape == (8, 2, 3, 3, 5, 2)
  assert v['params']['bias'].shape == (5, 2)
  out = full.apply(v, x)
  assert out.shape == (2, 8, 15, 3, 5)
  # Degrees below |spin| are zero: l = 0, 1 of spin 2.
  np.testing.assert_array_equal(np.asarray(out[:, :2, :, 2]), 0)
  loc = snn.SpinSphericalConv(5, spins_in=(0, 1), spins_out=(0,), input_grid=G,
                              num_filter_params=3, use_bias=False)
  v = loc.init(jax.random.key(0), x)
  assert set(v['params']) == {'kernel'} and v['params']['kernel'].shape == (3, 2, 1, 3, 5, 2)


def test_interpolation_matrix():
  p = snn.conv.interpolation_matrix(8, 3)  # anchors at l = 0, 4, 8
  np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(p[[0, 4, 8]], np.eye(3), atol=1e-6)
  np.testing.assert_allclose(p[2], [0.5, 0.5, 0])
  np.testing.assert_allclose(snn.conv.interpolation_matrix(5, 1), 1)
  with pytest.raises(ValueError, match='num_filter_params'):
    snn.conv.interpolation_matrix(5, 0)


def test_bad_inputs_raise_clear_errors():
  x = _field((2, 16, 8, 1, 3))
  with pytest.raises(ValueError, match='spin axis of size 2'):
    snn.SpinSphericalConv(2, spins_in=(0, 1), input_grid=G).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='on gaussian:32x16 must have shape'):
    snn.SpinSphericalConv(2, input_grid='gaussian:32x16').init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='not resolved by the output grid'):
    snn.SpinSphericalConv(2, input_grid=G, output_grid='gaussian:8x4', lmax=7).init(
        jax.random.key(0), x)
  with pytest.raises(ValueError, match='spin-0 fields only'):
    snn.PointwiseNonlinearity(spins=(0, 1))(_field((2, 16, 8, 2, 3)))
  with pytest.raises(ValueError, match='unknown activation'):
    snn.PointwiseNonlinearity('nope')(x)
  with pytest.raises(ValueError, match='needs spin 0'):
    snn.PhaseCollapse(spins=(1,)).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='give lmax'):
    snn.SpectralPooling(spins=(0,), input_grid=G)(x)
  with pytest.raises(ValueError, match='even nside'):
    snn.pooled_grid('healpix:3')
  with pytest.raises(ValueError, match='odd nlat'):
    snn.pooled_grid('equiangular_with_poles:16x8')
  with pytest.raises(ValueError, match='3 stages'):
    snn.SphericalCNN(input_grid=G, grids=(G, G, G), features=(2, 2)).init(jax.random.key(0), x)


def test_spectral_pooling_truncates_and_pads():
  a = eq.random_coefficients(jax.random.key(0), 7, (0, 1), 2)
  down = snn.SpectralPooling(lmax=3, spins=(0, 1))(a)
  np.testing.assert_array_equal(down, a[:, :4, 4:11])
  up = snn.SpectralPooling(lmax=9, spins=(0, 1))(a)
  np.testing.assert_array_equal(up[:, :8, 2:17], a)
  assert float(jnp.abs(up[:, 8:]).max()) == 0
  # Spatial round trip through another grid kind keeps band-limited content.
  x = snn.to_spatial(a, G, (0, 1))
  hp = snn.SpectralPooling(spins=(0, 1), input_grid=G, output_grid='healpix:4', lmax=7)(x)
  back = snn.to_spectral(hp, 'healpix:4', 7, (0, 1))
  np.testing.assert_allclose(back, a, atol=2e-5)


def test_spherical_pooling_healpix_matches_healpy():
  x = np.random.default_rng(0).normal(size=(1, 768, 1, 2)).astype(np.float32)
  out = snn.SphericalPooling('healpix:8')(jnp.asarray(x))
  for c in range(2):
    ref = healpy.ud_grade(x[0, :, 0, c].astype(np.float64), 4, order_in='RING',
                          order_out='RING')
    np.testing.assert_allclose(out[0, :, 0, c], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('grid', ['gaussian:32x16', 'equiangular:32x16',
                                  'equiangular_with_poles:32x17'])
def test_spherical_pooling_latlon(grid):
  coarse = snn.pooled_grid(grid)
  # Constants are kept; the integral (area-weighted mean) of a smooth field
  # is kept to the accuracy of the coarse quadrature.
  g = grids.parse(grid)
  lat = np.radians(g.latitudes)[None, :]
  lon = np.radians(g.longitudes)[:, None]
  f = 1 + 0.3 * np.sin(lat) + 0.2 * np.cos(lat) * np.cos(lon)
  x = jnp.asarray(np.stack([np.ones_like(f), f], -1)[None, :, :, None, :], jnp.float32)
  out = np.asarray(snn.SphericalPooling(grid)(x))
  assert out.shape == (1,) + coarse.shape + (1, 2)
  np.testing.assert_allclose(out[..., 0], 1, rtol=1e-6)
  mean_fine = np.sum(g.quadrature_weights * f) / (4 * np.pi)
  mean_coarse = np.sum(coarse.quadrature_weights * out[0, :, :, 0, 1]) / (4 * np.pi)
  np.testing.assert_allclose(mean_coarse, mean_fine, rtol=2e-2)


def test_spectral_batch_norm_statistics():
  # Train mode: spin-0 output has zero sphere mean and unit mean square per
  # channel (over the batch); spin 1 has unit mean square. Compared with
  # spatial statistics on an exact grid (Parseval).
  a = eq.random_coefficients(jax.random.key(0), 7, (0, 1), 3, batch=(4,))
  a = a.at[:, 0, 7, 0, :].add(3.0) * 2.5
  bn = snn.SpectralBatchNorm(spins=(0, 1), momentum=0.5)
  v = bn.init(jax.random.key(1), a)
  assert v['batch_stats']['mean'].shape == (3, 2) and v['batch_stats']['var'].shape == (2, 3)
  out, upd = bn.apply(v, a, train=True, mutable=['batch_stats'])
  x = np.asarray(snn.to_spatial(out, 'gaussian:32x16', (0, 1)))
  w = grids.parse('gaussian:32x16').quadrature_weights[None, :, :, None, None] / (4 * np.pi)
  mean = np.sum(x * w, axis=(1, 2)).mean(0)
  power = np.sum(np.abs(x) ** 2 * w, axis=(1, 2)).mean(0)
  np.testing.assert_allclose(mean[0], 0, atol=1e-5)
  np.testing.assert_allclose(power, 1, rtol=1e-3)
  # Running statistics keep their shapes after an update (reference defect).
  stats = upd['batch_stats']
  assert stats['mean'].shape == (3, 2) and stats['var'].shape == (2, 3)
  expected_mean = 0.5 * np.mean(np.asarray(a[:, 0, 7, 0, :]), 0) / np.sqrt(4 * np.pi)
  np.testing.assert_allclose(stats['mean'][:, 0], expected_mean.real, rtol=1e-5)
  # Eval mode uses the running statistics.
  out_eval = bn.apply({**v, 'batch_stats': stats}, a)
  assert not np.allclose(out_eval, out)


def test_spherical_batch_norm_matches_spectral_on_exact_grid():
  a = eq.random_coefficients(jax.random.key(0), 7, (0, 1), 3, batch=(4,))
  a = a.at[:, 0, 7, 0, :].add(2.0)
  grid = 'gaussian:32x16'  # exact quadrature for |x|^2 at lmax 7
  x = snn.to_spatial(a, grid, (0, 1))
  spec = snn.SpectralBatchNorm(spins=(0, 1))
  spat = snn.SphericalBatchNorm(grid=grid, spins=(0, 1))
  vs = spec.init(jax.random.key(0), a)
  vx = spat.init(jax.random.key(0), x)
  ys, st_s = spec.apply(vs, a, train=True, mutable=['batch_stats'])
  yx, st_x = spat.apply(vx, x, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(snn.to_spatial(ys, grid, (0, 1)), yx, atol=1e-5)
  for k in ('mean', 'var'):
    np.testing.assert_allclose(st_s['batch_stats'][k], st_x['batch_stats'][k], rtol=1e-5,
                               atol=1e-6)


def test_magnitude_and_phase_collapse_keep_phases():
  x = _field((2, 16, 8, 2, 3))
  mag = snn.MagnitudeNonlinearity(spins=(0, 1), bias_init=-0.5)
  y = mag.apply(mag.init(jax.random.key(0), x), x)
  r = np.abs(np.asarray(x))
  expected = np.asarray(x) * np.maximum(r - 0.5, 0) / r
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
  pc = snn.PhaseCollapse(spins=(0, 1))
  y = pc.apply(pc.init(jax.random.key(0), x), x)
  np.testing.assert_array_equal(y[..., 1, :], x[..., 1, :])  # spin 1 unchanged
  # Spin-0 output depends on spin-1 input only through |x|.
  x2 = x.at[..., 1, :].multiply(jnp.exp(0.7j))
  y2 = pc.apply(pc.init(jax.random.key(0), x), x2)
  np.testing.assert_allclose(y2[..., 0, :], y[..., 0, :], atol=1e-5)


def test_invariants_are_rotation_invariant():
  a = eq.random_coefficients(jax.random.key(0), 7, (0, 1), 3)
  grid = 'gaussian:64x32'
  f = snn.invariants(snn.to_spatial(a, grid, (0, 1)), grid, (0, 1))
  fr = snn.invariants(snn.to_spatial(eq.rotate_spectral(a, (0.4, 1.3, 2.2)), grid, (0, 1)),
                      grid, (0, 1))
  assert f.shape == (2, 6)
  np.testing.assert_allclose(f[:, :3], fr[:, :3], rtol=1e-4)  # spin-0 mean: exact
  np.testing.assert_allclose(f[:, 3:], fr[:, 3:], rtol=2e-2)  # mean |x|: aliased


def test_gin_configures_layers_and_backbone():
  with gin.unlock_config():
    gin.parse_config("""
        import sphere_plugin.nn
        sphere_plugin.nn.SphericalCNN.grids = ('gaussian:16x8', 'gaussian:8x4')
        sphere_plugin.nn.SphericalCNN.features = (3, 4)
        sphere_plugin.nn.SphericalCNN.spins = (0, 1)
        sphere_plugin.nn.SpinSphericalResidualBlock.nonlinearity = @sphere_plugin.nn.MagnitudeNonlinearity
        sphere_plugin.nn.MagnitudeNonlinearity.bias_init = -0.25
    """)
  try:
    model = snn.SphericalCNN(input_grid=G)
    x = _field((2, 16, 8, 1, 2), complex_=False)
    v = model.init(jax.random.key(0), x)
    y = model.apply(v, x)
    assert y.shape == (2, 8, 4, 2, 4)
    p = v['params']['SpinSphericalResidualBlock_1']
    np.testing.assert_allclose(p['MagnitudeNonlinearity_0']['bias'], -0.25)
  finally:
    gin.clear_config()


class _PoolingFrontEnd(nn.Module):
  """A stand-in front end: area-weighted pooling of gaussian:16x8 to 8x4."""
  output_grid = 'gaussian:8x4'

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return snn.SphericalPooling(grid=G)(x)


def test_backbone_front_end_feeds_the_stem_its_output_grid():
  model = snn.SphericalCNN(input_grid=G, grids=('gaussian:8x4',), features=(3,), spins=(0,),
                           front_end=_PoolingFrontEnd)
  x = _field((2, 16, 8, 1, 2), complex_=False)
  v = model.init(jax.random.key(0), x)
  assert model.apply(v, x).shape == (2, 8, 4, 1, 3)
  pooled = snn.SphericalPooling(grid=G).apply({}, x)
  plain = snn.SphericalCNN(input_grid='gaussian:8x4', grids=('gaussian:8x4',), features=(3,),
                           spins=(0,))
  np.testing.assert_allclose(model.apply(v, x), plain.apply(v, pooled), rtol=1e-5, atol=1e-6)


def _loss_of(module, x, train=None):
  """A fixed real loss of the module's output, as a function of (params, x)."""
  kwargs = {} if train is None else {'train': train}
  v = module.init(jax.random.key(0), x, **kwargs)
  v = jax.tree.map(lambda t: t.astype(np.float64), v)
  params = v.get('params', {})

  def apply(params, x):
    vv = {**v, 'params': params}
    if train:
      return module.apply(vv, x, train=True, mutable=['batch_stats'])[0]
    return module.apply(vv, x, **kwargs)

  shape = apply(params, x).shape
  rng = np.random.default_rng(1)
  w1, w2 = rng.normal(size=shape), rng.normal(size=shape)

  def loss(params, x):
    out = apply(params, x)
    return jnp.sum(jnp.abs(out) ** 2 * w1) + jnp.sum(out.real * w2)

  return loss, params


@pytest.mark.parametrize('name', ['conv_spatial', 'conv_localized_spectral', 'pool_spectral',
                                  'pool_spatial_healpix', 'magnitude', 'phase_collapse',
                                  'pointwise', 'spectral_bn', 'spherical_bn', 'residual_block'])
def test_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    spins = (0, 1)
    xs = np.asarray(_field((2, 8, 4, 2, 2)), np.complex128)  # gaussian:8x4, lmax 3
    a = np.asarray(eq.random_coefficients(jax.random.key(0), 3, spins, 2,
                                          dtype=jnp.complex128))
    g = 'gaussian:8x4'
    train = None
    if name == 'conv_spatial':
      m, x = snn.SpinSphericalConv(2, spins_in=spins, spins_out=spins, input_grid=g,
                                   output_grid=g), xs
    elif name == 'conv_localized_spectral':
      m, x = snn.SpinSphericalConv(2, spins_in=spins, spins_out=spins, num_filter_params=2), a
    elif name == 'pool_spectral':
      m, x = snn.SpectralPooling(lmax=2, spins=spins, input_grid=g, output_grid='healpix:1'), xs
    elif name == 'pool_spatial_healpix':
      m, x = snn.SphericalPooling('healpix:2'), np.asarray(_field((2, 48, 2, 2)), np.complex128)
    elif name == 'magnitude':
      m, x = snn.MagnitudeNonlinearity(spins=spins), xs
    elif name == 'phase_collapse':
      m, x = snn.PhaseCollapse(spins=spins), xs
    elif name == 'pointwise':
      m, x = snn.PointwiseNonlinearity('gelu', spins=(0,)), xs[..., :1, :]
    elif name == 'spectral_bn':
      m, x, train = snn.SpectralBatchNorm(spins=spins), a, True
    elif name == 'spherical_bn':
      m, x, train = snn.SphericalBatchNorm(grid=g, spins=spins), xs, True
    else:
      m, x, train = snn.SpinSphericalResidualBlock(2, spins_in=spins, spins_out=spins,
                                                   input_grid=g), xs, True
    loss, params = _loss_of(m, x, train)
    jax_test_util.check_grads(loss, (params, x), order=1, modes=['rev'], atol=1e-5, rtol=1e-5)
