"""Forecaster: channel layout, rollout, loss, and rotation equivariance of one step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin.weather import forecaster as F
from sphere_plugin.nn import SphericalCNN
from sphere_plugin.testing import equivariance
from sphere_plugin.nn import spectral

GRID = 'gaussian:32x16'
LMAX = 7  # 2x the rings lmax needs: the layers issue measured 6.6e-3 for one block here
PAIRS = ((1, 3), (2, 4))  # state channels: 0 scalar, (1, 3) and (2, 4) wind pairs
C, NF = 5, 2


def _model(**kw):
  net = SphericalCNN(input_grid=GRID, grids=(GRID,), features=(6,), spins=(0, 1),
                     input_spins=(0, 1), lmaxes=(LMAX,), blocks_per_stage=2)
  return F.Forecaster(backbone=net, vector_pairs=PAIRS, **kw)


def _state(coeffs0, coeffs1, coeffsf):
  """Spatial state (B, 32, 16, C) and forcings from spin-0 / spin-1 coefficients."""
  s0 = spectral.to_spatial(coeffs0, GRID, (0,))[..., 0, :].real  # (B, *g, 1)
  w = spectral.to_spatial(coeffs1, GRID, (1,))[..., 0, :]  # (B, *g, 2) u + iv
  f = spectral.to_spatial(coeffsf, GRID, (0,))[..., 0, :].real
  state = jnp.stack([s0[..., 0], w[..., 0].real, w[..., 1].real, w[..., 0].imag,
                     w[..., 1].imag], axis=-1)
  return state, f


def _spectral_output(inc):
  """Increments (B, *g, C) -> spin-0 (B, L+1, 2L+1, 1, 1) and spin-1 (..., 1, 2) coefficients."""
  a0 = spectral.to_spectral(inc[..., None, :1], GRID, LMAX, (0,))
  w = inc[..., 1:3] + 1j * inc[..., 3:5]
  a1 = spectral.to_spectral(w[..., None, :], GRID, LMAX, (1,))
  return a0, a1


def test_split_channels():
  scalar, u, v = F.split_channels(5, PAIRS)
  np.testing.assert_array_equal(scalar, [0])
  np.testing.assert_array_equal(u, [1, 2])
  np.testing.assert_array_equal(v, [3, 4])
  with pytest.raises(ValueError, match='distinct'):
    F.split_channels(5, ((1, 1),))
  with pytest.raises(ValueError, match='distinct'):
    F.split_channels(3, ((1, 5),))


def test_shapes_rollout_and_loss():
  m = _model()
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 16, C))
  f = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 32, 16, NF))
  v = m.init(jax.random.PRNGKey(2), x, f[:, 0])
  scale = np.full(C, 0.5, np.float32)
  preds, ms = F.rollout(m, v, x, f, scale, train=True)
  assert preds.shape == (2, 3, 32, 16, C)
  assert set(ms) == {'batch_stats'}
  # The rollout chains steps: step 2 starts from step 1's prediction.
  again = F.step(m, dict(v, **ms), preds[:, 0], f[:, 1], scale)
  direct, _ = F.rollout(m, v, x, f[:, :2], scale)
  np.testing.assert_allclose(direct[:, 1], F.step(m, v, direct[:, 0], f[:, 1], scale),
                             rtol=1e-5, atol=1e-6)
  assert again.shape == x.shape
  w = F.area_weights(GRID)
  assert w.shape == (32, 16) and abs(w.mean() - 1) < 1e-6
  # Loss of a constant error e (in normalised units) is sum_k (e / scale)^2.
  loss, per_step = F.weighted_mse(preds + 0.1, preds, w, scale)
  np.testing.assert_allclose(per_step, [0.04] * 3, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.12, rtol=1e-5)


def test_bad_backbone_spins():
  net = SphericalCNN(input_grid=GRID, grids=(GRID,), features=(4,), input_spins=(0,))
  m = F.Forecaster(backbone=net, vector_pairs=PAIRS)
  with pytest.raises(ValueError, match='spins'):
    m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 16, C)), jnp.zeros((1, 32, 16, NF)))


def _equivariance_error(swap_wind: bool) -> float:
  key = jax.random.split(jax.random.PRNGKey(3), 5)
  c0 = equivariance.random_coefficients(key[0], LMAX, (0,), 1)
  c1 = equivariance.random_coefficients(key[1], LMAX, (1,), 2)
  cf = equivariance.random_coefficients(key[2], LMAX, (0,), NF)
  angles = equivariance.random_rotation(key[3])
  m = _model(head_scale=1.0)
  x, f = _state(c0, c1, cf)
  v = m.init(key[4], x, f)

  def run(c0, c1, cf):
    x, f = _state(c0, c1, cf)
    if swap_wind:  # negative control: wind components treated as unrelated scalars
      x = x[..., [0, 3, 4, 1, 2]]
    return _spectral_output(m.apply(v, x, f))

  rot = lambda a: equivariance.rotate_spectral(a, angles)
  out = run(c0, c1, cf)
  out_rot = run(rot(c0), rot(c1), rot(cf))
  num = sum(float(jnp.sum(jnp.abs(a - rot(b)) ** 2)) for a, b in zip(out_rot, out))
  den = sum(float(jnp.sum(jnp.abs(b) ** 2)) for b in out)
  return np.sqrt(num / den)


def test_one_step_rotation_equivariance():
  """Rotating state (winds as spin-1) and forcings rotates the predicted increment.

  Not exact: the stem and two residual blocks each alias their pointwise
  nonlinearity. The layers issue measured 6.6e-3 for one block at this
  oversampling (lmax 7 on gaussian 32x16); three nonlinear stages stay within 3x.
  """
  err = _equivariance_error(swap_wind=False)
  print(f'forecaster one-step equivariance error: {err:.2e}')
  assert err < 2e-2
  # Control: the same harness on a model that does not treat (u, v) as spin-1.
  assert _equivariance_error(swap_wind=True) > 0.1
