"""Skipping the analysis of channels whose coefficients a layer already holds.

`spectral.to_spectral(known=...)` (with `spectral.PartlyKnown`),
`PhaseCollapse(coeffs=...)`, `apply_nonlinearity` and the blocks / backbone /
forecaster head that use them. The reference is the plain
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


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'equiangular_with_poles:16x16', 'healpix:4'])
def test_partly_known_spin0_matches_the_analysis(grid):
  lmax = spectral.default_lmax(grid)
  a = eq.random_coefficients(jax.random.key(4), lmax - 1, SPINS, 3)
  x = spectral.to_spatial(a, grid, SPINS)
  field = jax.random.normal(jax.random.key(5), x.shape[:-2] + (1, 3))  # real, not band-limited
  x0 = x[..., :1, :] + field
  y = jnp.concatenate([x0, x[..., 1:, :]], axis=-2)
  known = {0: spectral.PartlyKnown(coeffs=a[..., :1, :], field=field),
           2: spectral.spin_coefficients(a, SPINS, (2,))[2]}
  for out_lmax in (lmax, lmax - 2):
    plain = spectral.to_spectral(y, grid, out_lmax, SPINS)
    assert _rel(spectral.to_spectral(y, grid, out_lmax, SPINS, known=known), plain) < 1e-5


def test_misplaced_partly_known_raises():
  a = eq.random_coefficients(jax.random.key(0), 3, (0, 1), 2)
  x = spectral.to_spatial(a, 'gaussian:8x4', (0, 1))
  field = jnp.zeros(x.shape[:-2] + (1, 2))
  for bad in ({1: spectral.PartlyKnown(a[..., 1:, :], field)},                  # spin 1
              {0: spectral.PartlyKnown(a[..., :1, :], field.astype(jnp.complex64))},  # complex
              {0: spectral.PartlyKnown(a[..., :1, :], field[..., :1])}):          # shape
    with pytest.raises(ValueError, match='PartlyKnown is for spin 0'):
      spectral.to_spectral(x, 'gaussian:8x4', 3, (0, 1), known=bad)


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'equiangular_with_poles:16x16', 'healpix:4'])
def test_phase_collapse_knows_its_output_coefficients(grid):
  # The reference: the plain analysis of PhaseCollapse's output.
  lmax = spectral.default_lmax(grid)
  a = eq.random_coefficients(jax.random.key(6), lmax - 1, SPINS, 3)
  x = spectral.to_spatial(a, grid, SPINS)
  pc = snn.PhaseCollapse(spins=SPINS)
  v = pc.init(jax.random.key(0), x)
  v = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(7), p.shape), v)
  y, known = pc.apply(v, x, coeffs=spectral.spin_coefficients(a, SPINS, SPINS))
  np.testing.assert_array_equal(y, pc.apply(v, x))
  assert set(known) == set(SPINS) and isinstance(known[0], spectral.PartlyKnown)
  np.testing.assert_array_equal(y[..., 1:, :], x[..., 1:, :])  # nonzero spins pass through
  for out_lmax in (lmax, lmax - 2):
    plain = spectral.to_spectral(y, grid, out_lmax, SPINS)
    assert _rel(spectral.to_spectral(y, grid, out_lmax, SPINS, known=known), plain) < 1e-5
  with pytest.raises(ValueError, match='spins \\[3\\]'):
    pc.apply(v, x, coeffs={3: a[..., :1, :]})
  for bad in (a[..., :1, :2],        # channels
              a[:1, ..., :1, :],     # batch
              a[..., :-1, :1, :]):   # not (L+1, 2L+1)
    with pytest.raises(ValueError, match='coeffs of spin 0 must be'):
      pc.apply(v, x, coeffs={0: bad})


def test_apply_nonlinearity_knows_nothing_for_other_nonlinearities():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 4, 2, 2)), jnp.complex64)
  a = eq.random_coefficients(jax.random.key(0), 3, (0, 1), 2)
  mag = snn.MagnitudeNonlinearity(spins=(0, 1))
  bound = mag.bind(mag.init(jax.random.key(0), x))
  y, known = snn.apply_nonlinearity(bound, x, a, (0, 1))
  assert known == {}
  np.testing.assert_array_equal(y, bound(x))
  y, known = snn.apply_nonlinearity(jnp.tanh, x, a, (0, 1))
  assert known == {}
  np.testing.assert_array_equal(y, jnp.tanh(x))


@pytest.mark.parametrize('grid', ['gaussian:16x8', 'healpix:4'])
def test_block_takes_and_returns_coefficients(grid):
  spins = (0, 1)
  a = eq.random_coefficients(jax.random.key(2), spectral.default_lmax(grid), spins, 3)
  x = spectral.to_spatial(a, grid, spins)
  block = snn.SpinSphericalResidualBlock(4, spins_in=spins, spins_out=spins, input_grid=grid)
  v = block.init(jax.random.key(0), x)
  v = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), v)
  plain = block.apply(v, x)
  for which in ((1,), spins):
    out, coeffs = block.apply(v, x, coeffs=spectral.spin_coefficients(a, spins, which),
                              return_coeffs=True)
    assert _rel(out, plain) < 1e-5
    # What the block returns stands for the analysis of its output.
    assert set(coeffs) == {0, 1} and isinstance(coeffs[0], spectral.PartlyKnown)
    lmax = spectral.lmax_of(coeffs[1])
    analysed = spectral.to_spectral(out, grid, lmax, spins)
    assert _rel(coeffs[1], analysed[..., 1:, :]) < 1e-5
    assert _rel(spectral.to_spectral(out, grid, lmax, spins, known=coeffs), analysed) < 1e-5
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
  assert set(coeffs) == {0, 1} and plain.apply(v, x, return_coeffs=True)[1] == {}


def _fft_count(fn, *args):
  """(complex, real) FFT calls in fn's jaxpr, nested jaxprs included."""
  def count(jaxpr):
    n = np.zeros(2, int)
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'fft':
        n[int(eqn.params['fft_type'] in (jax.lax.FftType.RFFT, jax.lax.FftType.IRFFT))] += 1
      for p in eqn.params.values():
        for sub in (p if isinstance(p, (tuple, list)) else (p,)):
          inner = getattr(sub, 'jaxpr', sub)
          if hasattr(inner, 'eqns'):
            n += count(inner)
    return n
  return tuple(int(c) for c in count(jax.make_jaxpr(fn)(*args).jaxpr))


def test_block_skips_the_transforms():
  # One FFT per spin and transform on lat-lon grids: 2 spins x (analysis,
  # synthesis, analysis, synthesis) = 8 complex ones. PhaseCollapse passes
  # spin 1 through and knows its spin-0 output up to a real field, so the
  # middle analysis is one real FFT (6 + 1); given the input's spin-1
  # coefficients the first analysis is spin 0 only (5 + 1), given both, none
  # (4 + 1).
  grid, spins = 'gaussian:16x8', (0, 1)
  a = eq.random_coefficients(jax.random.key(2), 7, spins, 3)
  x = spectral.to_spatial(a, grid, spins)
  counts = []
  for nonlin, coeffs in ((snn.MagnitudeNonlinearity, None), (snn.PhaseCollapse, None),
                         (snn.PhaseCollapse, spectral.spin_coefficients(a, spins, (1,))),
                         (snn.PhaseCollapse, spectral.spin_coefficients(a, spins, spins))):
    block = snn.SpinSphericalResidualBlock(4, spins_in=spins, spins_out=spins, input_grid=grid,
                                           nonlinearity=nonlin)
    v = block.init(jax.random.key(0), x)
    counts.append(_fft_count(lambda x, c: block.apply(v, x, coeffs=c), x, coeffs))
  assert counts == [(8, 0), (6, 1), (5, 1), (4, 1)]
