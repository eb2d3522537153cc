"""Rotation equivariance of every layer, on three grid kinds, spins 0 and 1.

Rotations are arbitrary (Haar-random ZYZ angles), applied to band-limited
inputs through `sht.rotate`, which is tested against ducc0 separately.

Tolerance 1e-5 (normalised, float32) for exactly equivariant layers: a layer
does a few float32 transforms (each ~1e-7..4e-7 relative; HEALPix with 5
refinement steps ~1e-6) and a rotation, and errors add up to ~1e-6. A broken
layer (a bias on l > 0, a spin mix-up, a wrong m) shows errors of order 1.
"""


from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import nn as snn
from sphere_plugin.testing import equivariance as eq

TOL = 1e-5
# (input grid, output grid, lmax): lmax 7 everywhere, HEALPix at 2*nside.
GRIDS = (
    ('gaussian', 'gaussian:16x8', 'gaussian:16x8'),
    ('poles', 'equiangular_with_poles:16x9', 'equiangular_with_poles:16x9'),
    ('healpix', 'healpix:4', 'healpix:4'),
    ('gaussian_to_healpix', 'gaussian:16x8', 'healpix:4'),
)
SPINS = (('spin0_to_01', (0,), (0, 1)), ('spin01_to_01', (0, 1), (0, 1)),
         ('spin01_to_0', (0, 1), (0,)))
LMAX = 7


class Identity(nn.Module):
  """A linear stand-in for the block's nonlinearity."""
  spins: tuple = ()

  def __call__(self, x):
    return x


def _check(test, module, spins_in, spins_out, *, input_grid=None, output_grid=None,
           channels=3, train=None, tol=TOL, seed=0):
  del test  # assert_equivariant raises AssertionError itself
  return eq.assert_equivariant(module, lmax=LMAX, spins_in=spins_in, spins_out=spins_out,
                               input_grid=input_grid, output_grid=output_grid,
                               channels=channels, train=train, tol=tol, seed=seed)


class LinearLayersTest(parameterized.TestCase):

  @parameterized.named_parameters(
      (f'{g[0]}_{s[0]}_{io}', g[1], g[2], s[1], s[2], io)
      for g in GRIDS for s in SPINS
      for io in ('spatial_spatial', 'spatial_spectral', 'spectral_spatial'))
  def test_conv(self, grid_in, grid_out, spins_in, spins_out, io):
    gin_ = grid_in if io.startswith('spatial') else None
    gout = grid_out if io.endswith('_spatial') else None
    # Full filters on spatial->spatial, localized filters (3 anchors) otherwise.
    nfp = None if io == 'spatial_spatial' else 3
    conv = snn.SpinSphericalConv(4, spins_in=spins_in, spins_out=spins_out, input_grid=gin_,
                                 output_grid=gout, lmax=LMAX, num_filter_params=nfp)
    _check(self, conv, spins_in, spins_out, input_grid=gin_, output_grid=gout)

  def test_conv_changes_lmax(self):
    # lmax 7 -> 4 (pooling inside the convolution) and 7 -> 10 (upsampling).
    for lmax, grid in ((4, 'gaussian:16x8'), (10, 'gaussian:24x12')):
      conv = snn.SpinSphericalConv(2, spins_in=(0, 1), spins_out=(0, 1),
                                   input_grid='gaussian:16x8', output_grid=grid, lmax=lmax)
      key = jax.random.key(0)
      a = eq.random_coefficients(key, LMAX, (0, 1), 2)
      x = snn.to_spatial(a, 'gaussian:16x8', (0, 1))
      v = eq.randomize_params(conv.init(key, x), jax.random.key(1))
      err = eq.equivariance_error(lambda x: conv.apply(v, x), a, (0.3, 1.1, -2.0),
                                  spins_in=(0, 1), spins_out=(0, 1),
                                  input_grid='gaussian:16x8', output_grid=grid,
                                  output_lmax=lmax)
      self.assertLess(err, TOL)

  @parameterized.named_parameters((g[0], g[1], g[2]) for g in GRIDS)
  def test_spectral_pooling(self, grid_in, grid_out):
    pool = snn.SpectralPooling(lmax=4, spins=(0, 1), input_grid=grid_in, output_grid=grid_out)
    a = eq.random_coefficients(jax.random.key(0), LMAX, (0, 1), 2)
    err = eq.equivariance_error(pool, a, (1.0, 2.0, 3.0), spins_in=(0, 1), spins_out=(0, 1),
                                input_grid=grid_in, output_grid=grid_out, output_lmax=4)
    self.assertLess(err, TOL)

  @parameterized.parameters(True, False)
  def test_spectral_batch_norm(self, train):
    bn = snn.SpectralBatchNorm(spins=(0, 1))
    if train:
      _check(self, bn, (0, 1), (0, 1), train=True)
    else:
      # Random running statistics and parameters.
      a = eq.random_coefficients(jax.random.key(0), LMAX, (0, 1), 3)
      v = bn.init(jax.random.key(1), a)
      v = {'params': eq.randomize_params(v, jax.random.key(2))['params'],
           'batch_stats': jax.tree.map(lambda t: jnp.abs(t) + 0.5,
                                       eq.randomize_params({'params': v['batch_stats']},
                                                  jax.random.key(3))['params'])}
      err = eq.equivariance_error(lambda x: bn.apply(v, x), a, (0.5, 0.6, 0.7),
                                  spins_in=(0, 1), spins_out=(0, 1))
      self.assertLess(err, TOL)

  @parameterized.named_parameters(
      (f'{g[0]}_{s[0]}', g[1], g[2], s[1], s[2]) for g in GRIDS for s in SPINS[:2])
  def test_residual_block_with_learned_biases(self, grid_in, grid_out, spins_in, spins_out):
    # The block's only non-linear parts are its pointwise nonlinearities; with
    # an identity in their place, every bias, batch norm (batch statistics)
    # and the skip projection must keep exact equivariance.
    block = snn.SpinSphericalResidualBlock(4, spins_in=spins_in, spins_out=spins_out,
                                           input_grid=grid_in, output_grid=grid_out,
                                           lmax=LMAX, nonlinearity=Identity)
    _check(self, block, spins_in, spins_out, input_grid=grid_in, output_grid=grid_out,
           train=True)


class NonlinearityAliasingTest(parameterized.TestCase):
  """Pointwise nonlinearities alias; the error must fall with oversampling."""

  @parameterized.named_parameters(
      ('magnitude', lambda: snn.MagnitudeNonlinearity(spins=(0, 1), bias_init=-0.5), (0, 1)),
      ('phase_collapse', lambda: snn.PhaseCollapse(spins=(0, 1)), (0, 1)),
      ('relu', lambda: snn.PointwiseNonlinearity('relu', spins=(0,)), (0,)),
      ('residual_block', lambda: None, (0, 1)),
  )
  def test_error_falls_with_oversampling(self, make, spins):
    errs = []
    for nlat in (8, 16, 32, 64):  # oversampling 1, 2, 4, 8 for lmax 7
      grid = f'gaussian:{2 * nlat}x{nlat}'
      layer = make() or snn.SpinSphericalResidualBlock(3, spins_in=spins, spins_out=spins,
                                                       input_grid=grid, lmax=LMAX)
      errs.append(_check(self, layer, spins, spins, input_grid=grid, output_grid=grid,
                         train=True if make() is None else None, tol=1.0))
    print(f'aliasing error vs oversampling 1,2,4,8: {np.array(errs)}')
    self.assertLess(errs[-1], errs[0] / 4)
    self.assertTrue(all(b < a for a, b in zip(errs, errs[1:])), errs)


if __name__ == '__main__':
  absltest.main()
