"""Tests of the QM9 training task (batches, units, loss, evaluation files)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from sphere_plugin.molecules import qm9
from sphere_plugin.molecules import encoder as encoder_lib
from sphere_plugin.molecules import heads as qm9_models
from sphere_plugin.nn import SphericalCNN
from sphere_plugin.molecules import qm9_task

GRID = 'gaussian:8x4'


def _model(targets):
  backbone = SphericalCNN(input_grid=GRID, grids=(GRID,), features=(4,), spins=(0,),
                          num_filter_params=(2,))
  return qm9_models.QM9Regressor(encoder=encoder_lib.MoleculeEncoder(backbone, features=8),
                                 targets=targets, hidden=8)


@pytest.fixture(scope='module')
def task():
  return qm9_task.QM9Task(model=_model, targets=('h', 'mu', 'homo'), train_size=640,
                          valid_size=40, test_size=40, chunk_batches=4, progress=False)


def test_batches_are_a_pure_function_of_seed_and_step(task):
  first = list(zip(range(50), task.train_batches(16, seed=3, start_step=0)))
  resumed = list(zip(range(10), task.train_batches(16, seed=3, start_step=40)))
  for (_, a), (_, b) in zip(first[40:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  # 640 molecules = 40 batches per epoch; epoch 2 is reshuffled.
  epoch1 = np.concatenate([b['targets'][:, 9] for _, b in first[:40]])
  np.testing.assert_array_equal(np.sort(epoch1), np.sort(task.train.targets[:, 9]).astype(
      np.float32))
  assert not np.array_equal(first[0][1]['targets'], first[40][1]['targets'])
  assert {b['atomic_numbers'].shape[1] for _, b in first} <= set(task.size_buckets)
  other = next(task.train_batches(16, seed=4, start_step=0))
  assert not np.array_equal(other['targets'], first[0][1]['targets'])


def test_each_process_gets_its_rows_of_the_global_batch(task):
  whole = next(task.train_batches(16, seed=0, start_step=7))
  halves = [next(task.train_batches(16, seed=0, start_step=7, process_index=p, process_count=2))
            for p in (0, 1)]
  for k in whole:
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), whole[k])


def test_reporting_units_invert_the_normalisation(task):
  batch = next(task.train_batches(16, seed=0, start_step=0))
  norm = task._normalised_targets(batch)
  back = task.to_reporting_units(norm, batch['atomic_numbers'])
  # float32 round trip of values ~1e4 meV: ~1e-3 meV.
  np.testing.assert_allclose(back, batch['targets'][:, [9, 0, 2]], rtol=1e-5, atol=2e-2)
  # The baseline was fitted on the training molecules: residuals have mean 0, std 1 there.
  all_rows = qm9.batch_arrays(task.train, np.arange(len(task.train)), 29)
  norm = np.asarray(task._normalised_targets(all_rows))
  np.testing.assert_allclose(norm.mean(axis=0), 0, atol=1e-4)
  np.testing.assert_allclose(norm.std(axis=0), 1, rtol=1e-4)


def test_loss_metrics_are_maes_in_reporting_units(task):
  variables = jax.jit(task.init_variables)(jax.random.key(0))
  batch = next(task.train_batches(16, seed=0, start_step=0))
  loss, (state, metrics) = task.loss(variables, batch, jax.random.key(1), train=False)
  assert state.keys() == {'batch_stats'}
  pred = task.model.apply(variables, batch['atomic_numbers'], batch['positions'], False)
  y = task.to_reporting_units(pred, batch['atomic_numbers'])
  mae = np.mean(np.abs(np.asarray(y) - batch['targets'][:, [9, 0, 2]]), axis=0)
  np.testing.assert_allclose([metrics['mae_h'], metrics['mae_mu'], metrics['mae_homo']], mae,
                             rtol=1e-3)
  assert np.isfinite(loss)
  _, (new_state, _) = task.loss(variables, batch, jax.random.key(1), train=True)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_random_rotations_are_proper_rotations():
  r = np.asarray(qm9_task.random_rotations(jax.random.key(0), 64), np.float64)
  np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1, atol=1e-5)


def test_final_evaluation_writes_test_metrics(task, tmp_path):
  variables = jax.jit(task.init_variables)(jax.random.key(0))
  out = task.final_evaluation(variables, workdir=str(tmp_path), batch_size=16)
  report = json.load(open(os.path.join(tmp_path, qm9_task.TEST_METRICS_FILENAME)))
  assert report['test_molecules'] == 40 and set(report['targets']) == {'h', 'mu', 'homo'}
  assert report['targets']['h']['unit'] == 'meV'
  base = task.baseline.predict(task.test)[:, 0] - task.test.targets[:, 9]
  assert report['targets']['h']['baseline_mae'] == pytest.approx(np.mean(np.abs(base)))
  assert out['test_mae_h'] == report['targets']['h']['model_mae']
  # Permutations change only the float32 summation order.
  assert report['invariance']['permutation_over_std_max'] < 1e-4
  assert 'baseline MAE' in qm9_task.format_report(report)


def test_bad_settings_raise_clear_errors():
  with pytest.raises(ValueError, match='largest size bucket must be >= 29'):
    qm9_task.QM9Task(model=_model, size_buckets=(16, 20))
  with pytest.raises(ValueError, match="loss must be 'l1' or 'l2'"):
    qm9_task.QM9Task(model=_model, loss='huber')


@pytest.mark.parametrize('name, min_params, max_params', [('qm9_small.gin', 5e4, 2e5),
                                                           ('qm9.gin', 1e7, 2e7)])
def test_gin_configs_build(name, min_params, max_params):
  import gin  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gin.parse_config_files_and_bindings([os.path.join(root, 'gin', name)], [])
  try:
    model = qm9_models.QM9Regressor()
    z = np.zeros((2, 29), np.int32)
    z[:, :3] = [8, 1, 1]
    x = np.zeros((2, 29, 3), np.float32)
    x[:, 1, 0] = x[:, 2, 1] = 1.0
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), z, x))
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes['params']))
    assert min_params <= n <= max_params, n
  finally:
    gin.clear_config()
