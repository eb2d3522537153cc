"""A tiny regression task for exercising the training loop (tests, smoke runs).

    python tools/train.py --gin_file=gin/toy.gin --workdir=/tmp/toy

Data: x ~ N(0, 1) in R^input_dim, y = sum_i sin(a_i x_i) + 0.1 noise, a fixed.
Model: Dense -> BatchNorm -> tanh -> Dense(1), so cross-device batch-norm
statistics are part of what the loop is tested on. Batches are a pure function
of (seed, step), as the Task protocol asks.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterator

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

_EVAL_SEED = 987654321


class ToyModel(nn.Module):
  """Dense(hidden, no bias) -> BatchNorm -> tanh -> Dense(1); (batch, d) -> (batch,)."""
  hidden: int = 16

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = nn.Dense(self.hidden, use_bias=False)(x)  # BatchNorm has the shift
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(1)(jnp.tanh(h))[:, 0]


@gin.configurable(module='sphere_plugin.train')
class ToyTask:
  """Random-feature regression with a BatchNorm MLP (see the module docstring).

  Attributes:
    hidden: width of the hidden layer.
    input_dim: dimension of x.
    num_eval: size of the fixed validation set.
    nan_at_step: if set, the inputs of that step's batch are NaN (for testing
      the loop's divergence check).
    step_delay: seconds slept per training batch (lets tests catch a running
      process between checkpoints).
  """

  def __init__(self, hidden: int = 16, input_dim: int = 4, num_eval: int = 64,
               nan_at_step: int | None = None, step_delay: float = 0.0):
    self.hidden, self.input_dim, self.num_eval = hidden, input_dim, num_eval
    self.nan_at_step, self.step_delay = nan_at_step, step_delay
    self.model = ToyModel(hidden)
    self._frequencies = np.linspace(0.5, 1.5, input_dim)
    self._predict = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def _data(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    x = rng.standard_normal((n, self.input_dim))
    y = np.sin(x * self._frequencies).sum(-1) + 0.1 * rng.standard_normal(n)
    return {'x': x.astype(np.float32), 'y': y.astype(np.float32)}

  def init_variables(self, rng: jax.Array) -> dict:
    """{'params', 'batch_stats'} of the model for inputs (batch, input_dim)."""
    return dict(self.model.init(rng, jnp.zeros((2, self.input_dim)), train=False))

  def loss(self, variables, batch, rng, train: bool):
    """Mean squared error over the global batch; metrics {'mse'}."""
    del rng  # no dropout
    model_state = {k: v for k, v in variables.items() if k != 'params'}
    if train:
      pred, model_state = self.model.apply(variables, batch['x'], train=True,
                                           mutable=['batch_stats'])
    else:
      pred = self.model.apply(variables, batch['x'], train=False)
    mse = jnp.mean((pred - batch['y']) ** 2)
    return mse, (dict(model_state), {'mse': mse})

  def train_batches(self, batch_size: int, *, seed: int, start_step: int,
                    process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Yields this process's rows {'x': (n, input_dim), 'y': (n,)} per step."""
    if batch_size % process_count:
      raise ValueError(f'batch_size {batch_size} is not divisible by {process_count} processes')
    n = batch_size // process_count
    step = start_step
    while True:
      batch = self._data(np.random.default_rng([seed, step]), batch_size)
      if step == self.nan_at_step:
        batch['x'][:] = np.nan
      if self.step_delay:
        time.sleep(self.step_delay)
      yield {k: v[process_index * n:(process_index + 1) * n] for k, v in batch.items()}
      step += 1

  def evaluate(self, variables, *, batch_size: int) -> dict[str, float]:
    """{'mse': mean squared error on the fixed validation set}."""
    data = self._data(np.random.default_rng(_EVAL_SEED), self.num_eval)
    err = 0.0
    for i in range(0, self.num_eval, batch_size):
      pred = np.asarray(self._predict(variables, data['x'][i:i + batch_size]))
      err += float(np.sum((pred - data['y'][i:i + batch_size]) ** 2))
    return {'mse': err / self.num_eval}

  def save_artifacts(self, workdir: str) -> None:
    """Writes workdir/toy_task.json (the data settings)."""
    with open(os.path.join(workdir, 'toy_task.json'), 'w') as f:
      json.dump({'input_dim': self.input_dim, 'frequencies': self._frequencies.tolist()}, f)
