"""Tests of the molecule featurisation, MoleculeEncoder and the QM9 heads."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.transform

from sphere_plugin import grids
from sphere_plugin.molecules import encoder as me
from sphere_plugin.molecules import heads as qm9_models
from sphere_plugin.nn import SphericalCNN

GRID = 'gaussian:16x8'
# Water and methanol, zero-padded to 7 atoms (Angstrom).
Z = np.array([[8, 1, 1, 0, 0, 0, 0], [6, 8, 1, 1, 1, 1, 0]])
X = np.array([
    [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]] + [[0, 0, 0]] * 4,
    [[-0.0467, 0.6641, 0], [-0.0467, -0.7581, 0], [-1.0858, 0.9753, 0], [0.4373, 1.0797, 0.8903],
     [0.4373, 1.0797, -0.8903], [0.8658, -1.0853, 0]] + [[0, 0, 0]]], np.float64)


def _reference_spheres(z, x, points, powers, cutoff):
  """Loops over atoms, neighbours and points (numpy float64)."""
  sigma2 = (1 - math.cos(cutoff)) ** 2 / math.log(20)
  out = np.zeros(z.shape + (len(points), 5 * len(powers)))
  for b in range(z.shape[0]):
    for i in range(z.shape[1]):
      for j in range(z.shape[1]):
        if i == j or z[b, i] == 0 or z[b, j] == 0:
          continue
        d = x[b, j] - x[b, i]
        r = np.linalg.norm(d)
        bump = np.exp(-((points @ (d / r)) - 1) ** 2 / sigma2)
        e = me.ELEMENTS.index(z[b, j])
        for k, p in enumerate(powers):
          out[b, i, :, e * len(powers) + k] += z[b, i] * z[b, j] / r ** p / 81 * bump
  return out


def test_spheres_match_a_loop_reference():
  points = me.grid_points(GRID).reshape(-1, 3)
  got = me.molecule_spheres(Z, X, points, powers=(2.0, 6.0), cutoff_angle=math.pi / 4)
  want = _reference_spheres(Z, X, points, (2.0, 6.0), math.pi / 4)
  assert got.shape == (2, 7, 128, 10)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32 vs float64
  assert np.all(np.asarray(got)[0, 3:] == 0)  # padding atoms see nothing
  # The bump: 1 towards the neighbour, 5 % at the cutoff angle.
  c = np.array([1.0, math.cos(math.pi / 4)])
  np.testing.assert_allclose(np.exp(-(c - 1) ** 2 / me.kernel_width(math.pi / 4)), [1, 0.05])


def test_grid_points_are_unit_vectors_at_the_grid_coordinates():
  g = grids.parse(GRID)
  p = me.grid_points(g)
  assert p.shape == (16, 8, 3)
  np.testing.assert_allclose(np.linalg.norm(p, axis=-1), 1, rtol=1e-12)
  np.testing.assert_allclose(np.rad2deg(np.arcsin(p[0, :, 2])), g.latitudes, atol=1e-9)
  hp = me.grid_points('healpix:4')
  assert hp.shape == (192, 3)


def test_rotating_the_molecule_rotates_the_signals_and_translation_changes_nothing():
  rot = scipy.spatial.transform.Rotation.random(random_state=3).as_matrix()
  points = me.grid_points(GRID).reshape(-1, 3)
  mask = (Z > 0)[..., None]
  rotated = np.einsum('ij,baj->bai', rot, X) * mask
  # Signal of the rotated molecule at R g == signal of the molecule at g (pointwise, exact).
  a = me.molecule_spheres(Z, X, points)
  b = me.molecule_spheres(Z, rotated, points @ rot.T)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  moved = (X + np.array([3.0, -7.0, 11.0])) * mask
  np.testing.assert_allclose(me.molecule_spheres(Z, moved, points), a, rtol=1e-4, atol=1e-6)
  perm = np.array([2, 0, 5, 1, 4, 3, 6])
  c = me.molecule_spheres(Z[1:, perm], X[1:, perm], points)
  np.testing.assert_allclose(c[0], np.asarray(a)[1, perm], rtol=1e-6, atol=1e-7)


def _encoder(features=8):
  backbone = SphericalCNN(input_grid=GRID, grids=(GRID,), features=(4,), spins=(0, 1),
                          num_filter_params=(3,))
  return me.MoleculeEncoder(backbone=backbone, features=features)


def test_encoder_shapes_padding_and_invariances():
  enc = _encoder()
  v = enc.init(jax.random.key(0), Z, X)
  out = enc.apply(v, Z, X)
  assert out['atoms'].shape == (2, 7, 8) and out['molecule'].shape == (2, 8)
  assert np.all(np.asarray(out['atoms'])[0, 3:] == 0)
  np.testing.assert_array_equal(out['mask'], Z > 0)
  # More padding changes nothing (eval mode: running batch-norm statistics).
  z9, x9 = np.pad(Z, ((0, 0), (0, 2))), np.pad(X, ((0, 0), (0, 2), (0, 0)))
  np.testing.assert_allclose(enc.apply(v, z9, x9)['molecule'], out['molecule'], rtol=1e-5,
                             atol=1e-6)
  # Translations: exact; permutations: exact up to float32 summation order.
  mask = (Z > 0)[..., None]
  moved = enc.apply(v, Z, (X + np.array([5.0, 1.0, -2.0])) * mask)['molecule']
  np.testing.assert_allclose(moved, out['molecule'], rtol=1e-4, atol=1e-5)
  perm = np.array([4, 2, 0, 1, 5, 3, 6])
  permuted = enc.apply(v, Z[:, perm], X[:, perm])['molecule']
  np.testing.assert_allclose(permuted, out['molecule'], rtol=1e-5, atol=1e-6)
  # Rotations: invariant up to the aliasing of the nonlinearities on a coarse grid.
  rot = scipy.spatial.transform.Rotation.random(random_state=5).as_matrix()
  turned = enc.apply(v, Z, np.einsum('ij,baj->bai', rot, X) * mask)['molecule']
  rel = np.linalg.norm(turned - out['molecule']) / np.linalg.norm(out['molecule'])
  assert rel < 0.05, rel
  with pytest.raises(ValueError, match='atomic_numbers \\(B, A\\) and positions \\(B, A, 3\\)'):
    enc.apply(v, Z, X[..., :2])


@pytest.mark.parametrize('aggregation', qm9_models.AGGREGATIONS)
def test_heads_are_rotation_and_permutation_invariant(aggregation):
  rng = np.random.default_rng(0)
  atoms = rng.normal(size=(2, 7, 8)).astype(np.float32)
  mask = Z > 0
  element = np.asarray(me.element_index(Z))
  centred = rng.normal(size=(2, 7, 3)) * mask[..., None]
  head = qm9_models.TargetHeads((aggregation, 'element', aggregation), hidden=8)
  v = head.init(jax.random.key(1), atoms, mask, element, centred)
  y = head.apply(v, atoms, mask, element, centred)
  assert y.shape == (2, 3)
  rot = scipy.spatial.transform.Rotation.random(random_state=2).as_matrix()
  np.testing.assert_allclose(head.apply(v, atoms, mask, element, centred @ rot.T), y,
                             rtol=1e-5, atol=1e-6)
  perm = np.array([1, 2, 0, 3, 4, 5, 6])  # within water's 3 atoms and methanol's first 3
  np.testing.assert_allclose(
      head.apply(v, atoms[:, perm], mask[:, perm], element[:, perm], centred[:, perm]), y,
      rtol=1e-5, atol=1e-6)
  # Padding rows must not matter.
  atoms2 = atoms.copy()
  atoms2[~mask] = 100.0
  np.testing.assert_allclose(head.apply(v, atoms2, mask, element, centred), y, rtol=1e-5,
                             atol=1e-6)


def test_regressor_outputs_one_column_per_target_and_checks_names():
  model = qm9_models.QM9Regressor(encoder=_encoder(), targets=('h', 'mu', 'gap'), hidden=8)
  v = model.init(jax.random.key(0), Z, X)
  assert model.apply(v, Z, X).shape == (2, 3)
  assert v['params']['heads']['kernel'].shape == (3, 8, 8)  # (targets, hidden, dipole charges)
  with pytest.raises(ValueError, match='unknown QM9 target'):
    qm9_models.QM9Regressor(encoder=_encoder(), targets=('enthalpy',)).init(
        jax.random.key(0), Z, X)


def test_centre_of_mass_ignores_padding():
  com = me.centre_of_mass(Z, X)
  water = (15.999 * X[0, 0] + 1.008 * (X[0, 1] + X[0, 2])) / (15.999 + 2 * 1.008)
  np.testing.assert_allclose(com[0], water, rtol=1e-5, atol=1e-6)
  assert jnp.all(me.element_index(Z)[0] == jnp.array([3, 0, 0, 5, 5, 5, 5]))
