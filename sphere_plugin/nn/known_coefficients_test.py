"""Skipping the analysis of channels whose coefficients a layer already holds.

`spectral.to_spectral(known=...)`, `nonlinearities.passthrough_spins` and the
blocks / backbone / forecaster head that use them. The reference is the plain
analysis of the same field (and, for what the blocks return, the analysis of
their output): with the known coefficients the result must be the same up to
float32 rounding (1e-5 relative; HEALPix's iterative analysis adds ~1e-6).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin import nn as snn
from sphere_plugin.nn import nonlinearities
from sphere_plugin.nn import spectral
from sphere_plugin.testing import equivariance as eq

SPINS = (0, 1, 2)


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'equiangular_with_poles:16x16',
                                  'equiangular:16x16', 'healpix:4'])
def test_known_coefficients_match_the_analysis_and_are_used(grid):
  lmax = spectral.default_lmax(grid)
  a = eq.random_coefficients(jax.random.key(0), lmax - 1, SPINS, 3)  # (2, L, 2L-1, 3, 3)
  x = spectral.to_spatial(a, grid, SPINS)
  known = spectral.spin_coefficients(a, SPINS, (1, 2))
  for out_lmax in (lmax, lmax - 2):
    plain = spectral.to_spectral(x, grid, out_lmax, SPINS)
    fast = spectral.to_spectral(x, grid, out_lmax, SPINS, known=known)
    assert _rel(fast, plain) < 1e-5
  # The known coefficients are what the result holds for those spins (a wrong
  # one shows through), and the other spins are still analysed.
  wrong = {1: 2 * known[1]}
  out = spectral.to_spectral(x, grid, lmax, SPINS, known=wrong)
  np.testing.assert_allclose(out[..., 1:2, :], spectral.resize(2 * known[1], lmax), atol=1e-6)
  plain = spectral.to_spectral(x, grid, lmax, SPINS)
  assert _rel(out[..., 0::2, :], plain[..., 0::2, :]) < 1e-5


def test_known_coefficients_above_the_exact_degree_are_ignored():
  grid = 'healpix:2'  # exact analysis up to lmax 4; grid.lmax 5
  a = eq.random_coefficients(jax.random.key(1), 5, (0, 1), 2)
  x = spectral.to_spatial(a, grid, (0, 1))
  known = {1: 2 * spectral.spin_coefficients(a, (0, 1), (1,))[1]}
  plain = spectral.to_spectral(x, grid, 4, (0, 1))
  np.testing.assert_array_equal(spectral.to_spectral(x, grid, 4, (0, 1), known=known), plain)


def test_known_coefficients_of_a_stray_spin_raise():
  a = eq.random_coefficients(jax.random.key(0), 3, (0, 1), 2)
  x = spectral.to_spatial(a, 'gaussian:8x4', (0, 1))
  with pytest.raises(ValueError, match='spins \\[2\\]'):
    spectral.to_spectral(x, 'gaussian:8x4', 3, (0, 1), known={2: a[..., 1:, :]})


def test_misshapen_known_coefficients_and_coeffs_for_spectral_input_raise():
  a = eq.random_coefficients(jax.random.key(0), 3, (0, 1), 2)
  x = spectral.to_spatial(a, 'gaussian:8x4', (0, 1))
  with pytest.raises(ValueError, match='must be \\(\\*batch'):
    spectral.to_spectral(x, 'gaussian:8x4', 3, (0, 1), known={1: a})  # both spins, not one
  with pytest.raises(ValueError, match='must be \\(\\*batch'):
    spectral.to_spectral(x, 'gaussian:8x4', 3, (0, 1), known={1: a[:1, ..., 1:, :]})  # batch
  conv = snn.SpinSphericalConv(2, spins_in=(0, 1), spins_out=(0, 1))
  v = conv.init(jax.random.key(0), a)
  with pytest.raises(ValueError, match='spectral'):
    conv.apply(v, a, coeffs=spectral.spin_coefficients(a, (0, 1), (1,)))


def test_passthrough_spins():
  assert nonlinearities.passthrough_spins(snn.PhaseCollapse, (0, 1, 2)) == (1, 2)
  assert nonlinearities.passthrough_spins(snn.PhaseCollapse, (1, 0)) == (1,)
  assert nonlinearities.passthrough_spins(snn.MagnitudeNonlinearity, (0, 1)) == ()
  assert nonlinearities.passthrough_spins(functools.partial(snn.PhaseCollapse), (0, 1)) == ()
  # What PhaseCollapse declares is what it does.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 4, 3, 2)), jnp.complex64)
  pc = snn.PhaseCollapse(spins=SPINS)
  y = pc.apply(pc.init(jax.random.key(0), x), x)
  np.testing.assert_array_equal(y[..., 1:, :], x[..., 1:, :])


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'healpix:4'])
def test_block_takes_and_returns_coefficients(grid):
  spins = (0, 1)
  a = eq.random_coefficients(jax.random.key(2), spectral.default_lmax(grid), spins, 3)
  x = spectral.to_spatial(a, grid, spins)
  block = snn.SpinSphericalResidualBlock(4, spins_in=spins, spins_out=spins, input_grid=grid)
  v = block.init(jax.random.key(0), x)
  v = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), v)
  plain = block.apply(v, x)
  out, coeffs = block.apply(v, x, coeffs=spectral.spin_coefficients(a, spins, (1,)),
                            return_coeffs=True)
  assert _rel(out, plain) < 1e-5
  # The returned coefficients are those of the output's spin-1 channels.
  assert set(coeffs) == {1}
  lmax = spectral.lmax_of(coeffs[1])
  analysed = spectral.to_spectral(out, grid, lmax, spins)[..., 1:, :]
  assert _rel(coeffs[1], analysed) < 1e-5
  mag = snn.SpinSphericalResidualBlock(4, spins_in=spins, spins_out=spins, input_grid=grid,
                                       nonlinearity=snn.MagnitudeNonlinearity)
  _, none = mag.apply(mag.init(jax.random.key(0), x), x, return_coeffs=True)
  assert none == {}


def test_backbone_and_forecaster_match_the_plain_chain():
  kw = dict(input_grid='gaussian:16x8', grids=('gaussian:16x8', 'gaussian:8x4'), features=(3, 4),
            input_spins=(0, 1), spins=(0, 1), blocks_per_stage=2)
  chained = snn.SphericalCNN(**kw)
  # A partial hides the block's coefficient arguments: every block analyses.
  plain = snn.SphericalCNN(block=functools.partial(snn.SpinSphericalResidualBlock), **kw)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 8, 2, 2)), jnp.complex64)
  v = chained.init(jax.random.key(0), x)
  y, coeffs = chained.apply(v, x, return_coeffs=True)
  assert _rel(y, plain.apply(v, x)) < 1e-5
  assert set(coeffs) == {1} and plain.apply(v, x, return_coeffs=True)[1] == {}


def _fft_count(fn, *args):
  """FFT calls in fn's jaxpr, nested jaxprs included."""
  def count(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
      n += eqn.primitive.name == 'fft'
      for p in eqn.params.values():
        for sub in (p if isinstance(p, (tuple, list)) else (p,)):
          inner = getattr(sub, 'jaxpr', sub)
          if hasattr(inner, 'eqns'):
            n += count(inner)
    return n
  return count(jax.make_jaxpr(fn)(*args).jaxpr)


def test_block_skips_the_transforms():
  # One FFT per spin and transform on lat-lon grids: 2 spins x (analysis,
  # synthesis, analysis, synthesis) = 8; PhaseCollapse passes spin 1 through,
  # so the middle analysis is spin 0 only (7), and given the input's spin-1
  # coefficients the first analysis too (6).
  grid, spins = 'gaussian:16x8', (0, 1)
  a = eq.random_coefficients(jax.random.key(2), 7, spins, 3)
  x = spectral.to_spatial(a, grid, spins)
  known = spectral.spin_coefficients(a, spins, (1,))
  counts = []
  for nonlin, coeffs in ((snn.MagnitudeNonlinearity, None), (snn.PhaseCollapse, None),
                         (snn.PhaseCollapse, known)):
    block = snn.SpinSphericalResidualBlock(4, spins_in=spins, spins_out=spins, input_grid=grid,
                                           nonlinearity=nonlin)
    v = block.init(jax.random.key(0), x)
    counts.append(_fft_count(lambda x, c: block.apply(v, x, coeffs=c), x, coeffs))
  assert counts == [8, 7, 6]
