"""The bump classifier as a Task on the shared training loop (`sphere_plugin.train`).

`ClassifierTask` trains `SphericalClassifier` on synthetic bump fields
(`bumps`, 4 classes) with softmax cross-entropy. `final_evaluation` reports
the test accuracy and how often a prediction stays the same when its test
field is rotated by a random rotation (spectrally, so rotated inputs are
exact), and writes them to `workdir/test_metrics.json`.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sphere_plugin import nn as snn
from sphere_plugin.examples import bumps
from sphere_plugin.examples import classifier
from sphere_plugin.io import atomic
from sphere_plugin.testing import equivariance
from sphere_plugin.train import batching

TEST_METRICS_FILE = 'test_metrics.json'


def rotate_fields(x: np.ndarray, grid, key) -> np.ndarray:
  """Rotates spin-0 fields (n, *grid.shape, 1, 1) by one random rotation each."""
  lmax = snn.default_lmax(grid)
  a = snn.to_spectral(jnp.asarray(x), grid, lmax, (0,))
  out = [equivariance.rotate_spectral(a[i], equivariance.random_rotation(k))
         for i, k in enumerate(jax.random.split(key, len(x)))]
  return np.asarray(snn.to_spatial(jnp.stack(out), grid, (0,)).real)


@gin.configurable(module='sphere_plugin.examples')
class ClassifierTask:
  """Bump-field classification (a `sphere_plugin.train.Task`).

  Args:
    num_train, num_valid, num_test: fields per split (seeds seed, seed+1, seed+2).
    seed: the data's seed (the run's seed drives batches and initialisation).
  """

  def __init__(self, num_train: int = 2048, num_valid: int = 256, num_test: int = 512,
               seed: int = 0):
    self.model = classifier.SphericalClassifier()
    self.x_train, self.y_train = bumps.bumps(num_train, seed=seed)
    self.x_valid, self.y_valid = bumps.bumps(num_valid, seed=seed + 1)
    self.x_test, self.y_test = bumps.bumps(num_test, seed=seed + 2)
    self.seed = seed
    self._predict = jax.jit(lambda v, x: jnp.argmax(self.model.apply(v, x), -1))

  @property
  def grid(self):
    return self.model.backbone().input_grid

  def init_variables(self, rng) -> dict:
    """Variables of the classifier, from two training fields."""
    return dict(self.model.init(rng, self.x_train[:2], train=True))

  def loss(self, variables, batch, rng, train: bool):
    """Mean softmax cross-entropy; metrics: batch accuracy."""
    del rng
    state = {k: v for k, v in variables.items() if k != 'params'}
    if train:
      logits, new_state = self.model.apply(variables, batch['x'], train=True,
                                           mutable=list(state))
    else:
      logits, new_state = self.model.apply(variables, batch['x']), state
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y']).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['y'])
    return loss, (dict(new_state), {'accuracy': accuracy})

  def train_batches(self, batch_size: int, *, seed: int, start_step: int,
                    process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Shuffled batches of training fields, a pure function of (seed, step)."""
    n = len(self.x_train)
    per_epoch = n // batch_size
    if per_epoch < 1:
      raise ValueError(f'batch_size {batch_size} exceeds the {n} training fields')
    local = batch_size // process_count
    step = start_step
    while True:
      rng, offset = batching.epoch_rng(seed, step, per_epoch)
      rows = rng.permutation(n)[offset * batch_size:(offset + 1) * batch_size]
      rows = rows[process_index * local:(process_index + 1) * local]
      yield {'x': self.x_train[rows], 'y': self.y_train[rows]}
      step += 1

  def predict(self, variables, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Predicted classes (n,) of fields (n, *grid.shape, 1, 1)."""
    return np.concatenate([np.asarray(self._predict(variables, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])

  def evaluate(self, variables, *, batch_size: int) -> dict[str, float]:
    """Validation accuracy."""
    pred = self.predict(variables, self.x_valid, batch_size)
    return {'valid_accuracy': float(np.mean(pred == self.y_valid))}

  def save_artifacts(self, workdir: str) -> None:
    """Nothing: the data are regenerated from the seed."""
    del workdir

  def final_evaluation(self, variables, *, workdir: str, batch_size: int) -> dict[str, float]:
    """Test accuracy, rotated-test accuracy and rotation agreement (test_metrics.json)."""
    pred = self.predict(variables, self.x_test, batch_size)
    rotated = rotate_fields(self.x_test, self.grid, jax.random.key(self.seed + 3))
    pred_rot = self.predict(variables, rotated, batch_size)
    out = {'test_accuracy': float(np.mean(pred == self.y_test)),
           'rotated_test_accuracy': float(np.mean(pred_rot == self.y_test)),
           'rotation_agreement': float(np.mean(pred == pred_rot))}
    if jax.process_index() == 0:
      atomic.write_text(os.path.join(workdir, TEST_METRICS_FILE), json.dumps(out, indent=1))
    return out
