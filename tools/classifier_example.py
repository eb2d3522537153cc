"""Trains a small spherical CNN classifier configured by a gin file.

  python tools/classifier_example.py --gin_file=gin/classifier_small.gin \
      [--gin_param='train.steps=100']

Data: synthetic bump fields (sphere_plugin.data.bumps), 4 classes. Prints the
test accuracy, and how often predictions stay the same when every test field
is rotated by a random rotation (spectrally, so the rotated inputs are exact).
"""

import time

from absl import app
from absl import flags
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from sphere_plugin import nn as snn
from sphere_plugin.data import bumps
from sphere_plugin.models import classifier
from sphere_plugin.nn import equivariance

_GIN_FILE = flags.DEFINE_multi_string('gin_file', ['gin/classifier_small.gin'], 'gin files.')
_GIN_PARAM = flags.DEFINE_multi_string('gin_param', [], 'gin bindings, e.g. train.steps=50.')
_SEED = flags.DEFINE_integer('seed', 0, 'random seed')


def _rotate_fields(x, grid, key):
  """Rotates spin-0 fields (n, *grid.shape, 1, 1) by one random rotation each."""
  lmax = snn.default_lmax(grid)
  a = snn.to_spectral(jnp.asarray(x), grid, lmax, (0,))
  out = []
  for i, k in enumerate(jax.random.split(key, len(x))):
    out.append(equivariance.rotate_spectral(a[i], equivariance.random_rotation(k)))
  return np.asarray(snn.to_spatial(jnp.stack(out), grid, (0,)).real)


@gin.configurable
def train(steps: int = 200, batch_size: int = 16, learning_rate: float = 3e-3,
          num_train: int = 2048, num_test: int = 512, seed: int = 0):
  """Trains and evaluates; returns (test accuracy, rotation agreement)."""
  model = classifier.SphericalClassifier()
  x_train, y_train = bumps.bumps(num_train, seed=seed)
  x_test, y_test = bumps.bumps(num_test, seed=seed + 1)
  grid = model.backbone().input_grid
  key = jax.random.key(seed)
  variables = model.init(key, x_train[:2], train=True)
  params, stats = variables['params'], variables['batch_stats']
  n_params = sum(p.size for p in jax.tree.leaves(params))
  print(f'model: {n_params} real parameters; train {num_train}, test {num_test} fields on {grid}')
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state = opt.init(params)

  def loss_fn(params, stats, x, y):
    logits, upd = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                              mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, upd['batch_stats']

  @jax.jit
  def step(params, stats, opt_state, x, y):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  @jax.jit
  def predict(params, stats, x):
    return jnp.argmax(model.apply({'params': params, 'batch_stats': stats}, x), -1)

  rng = np.random.default_rng(seed)
  t0 = time.perf_counter()
  bar = tqdm.trange(steps, desc='train', mininterval=2.0)
  for _ in bar:
    idx = rng.integers(0, num_train, batch_size)
    params, stats, opt_state, loss = step(params, stats, opt_state, x_train[idx], y_train[idx])
    bar.set_postfix(loss=f'{float(loss):.3f}')
  print(f'trained {steps} steps in {time.perf_counter() - t0:.1f} s, last loss {float(loss):.3f}')

  def predict_all(x):
    return np.concatenate([predict(params, stats, x[i:i + 64]) for i in range(0, len(x), 64)])

  pred = predict_all(x_test)
  pred_rot = predict_all(_rotate_fields(x_test, grid, jax.random.key(seed + 2)))
  accuracy = float(np.mean(pred == y_test))
  agreement = float(np.mean(pred == pred_rot))
  print(f'test accuracy {accuracy:.3f} (chance 0.25); rotated test accuracy '
        f'{np.mean(pred_rot == y_test):.3f}; predictions unchanged by rotation: {agreement:.3f}')
  return accuracy, agreement


def main(argv):
  del argv
  gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_PARAM.value)
  train(seed=_SEED.value)


if __name__ == '__main__':
  app.run(main)
