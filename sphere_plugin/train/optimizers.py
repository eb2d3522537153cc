"""The gin-configured optimizer (`sphere_plugin.train.optimizer`): optax chains with schedules.
"""

from __future__ import annotations

import inspect
from typing import Any

from absl import logging
import gin
import optax




@gin.configurable(module='sphere_plugin.train', denylist=['num_steps'])
def optimizer(name: str = 'adamw', learning_rate: float = 1e-3, schedule: str = 'cosine',
              warmup_steps: int = 0, total_steps: int | None = None,
              weight_decay: float = 0.0, clip_norm: float | None = None,
              momentum: float = 0.9, *, num_steps: int | None = None
              ) -> optax.GradientTransformation:
  """An optax optimizer with a learning-rate schedule, configured by gin.

  Bind it as `sphere_plugin.train.train.optimizer = @sphere_plugin.train.optimizer`
  (no parentheses) so that the loop calls it with `num_steps`, the default of
  `total_steps`.

  Args:
    name: 'adamw', 'adam', 'sgd' (with `momentum`; 0 for plain SGD) or 'lamb'.
    learning_rate: the peak learning rate.
    schedule: 'constant', 'cosine' (decay to 0 at total_steps) or 'linear'
      (decay to 0 at total_steps), each after a linear warmup from 0 over
      `warmup_steps`.
    warmup_steps: length of the warmup; when it is not below total_steps (a
      short run of a long config), a tenth of total_steps, with a warning.
    total_steps: where the decay ends; defaults to num_steps.
    weight_decay: decoupled weight decay (adamw, lamb, sgd; adam must be 0).
    clip_norm: if set, gradients are clipped to this global norm first.
    momentum: SGD momentum.
    num_steps: the run's length, passed by the loop.

  Returns:
    The optax.GradientTransformation.
  """
  total = total_steps if total_steps is not None else num_steps
  if learning_rate <= 0 or warmup_steps < 0:
    raise ValueError(f'optimizer: need learning_rate > 0 and warmup_steps >= 0, got '
                     f'{learning_rate}, {warmup_steps}')
  if schedule == 'constant':
    lr = optax.constant_schedule(learning_rate)
    if warmup_steps:
      lr = optax.join_schedules(
          [optax.linear_schedule(0.0, learning_rate, warmup_steps), lr], [warmup_steps])
  elif schedule in ('cosine', 'linear'):
    if total is None:
      raise ValueError(
          f"optimizer: schedule '{schedule}' needs total_steps; bind "
          'sphere_plugin.train.optimizer.total_steps, or bind train.optimizer = '
          '@sphere_plugin.train.optimizer without parentheses so the loop passes num_steps')
    if total < 1:
      raise ValueError(f'optimizer: total_steps must be >= 1, got {total}')
    if total <= warmup_steps:  # e.g. a short trial run of a config made for a long one
      short = total // 10
      logging.warning('optimizer: warmup_steps (%d) >= total_steps (%d): warming up over %d '
                      'steps instead; bind sphere_plugin.train.optimizer.warmup_steps to '
                      'choose', warmup_steps, total, short)
      warmup_steps = short
    if schedule == 'cosine':
      lr = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total, 0.0)
    else:
      lr = optax.join_schedules(
          [optax.linear_schedule(0.0, learning_rate, warmup_steps),
           optax.linear_schedule(learning_rate, 0.0, total - warmup_steps)], [warmup_steps])
  else:
    raise ValueError(f"optimizer: unknown schedule {schedule!r}; use 'constant', 'cosine' "
                     "or 'linear'")
  if name == 'adamw':
    tx = optax.adamw(lr, weight_decay=weight_decay)
  elif name == 'lamb':
    tx = optax.lamb(lr, weight_decay=weight_decay)
  elif name == 'adam':
    if weight_decay:
      raise ValueError("optimizer: 'adam' takes no weight_decay; use name='adamw'")
    tx = optax.adam(lr)
  elif name == 'sgd':
    tx = optax.sgd(lr, momentum=momentum or None)
    if weight_decay:
      tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  else:
    raise ValueError(f"optimizer: unknown name {name!r}; use 'adamw', 'adam', 'sgd' or 'lamb'")
  if clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
  return tx


def as_optimizer(opt: Any, num_steps: int) -> optax.GradientTransformation:
  """The optax transformation of a run: `opt` (an optax transformation, the gin
  `optimizer` factory or None for it) built for `num_steps` steps."""
  if opt is None:
    opt = optimizer
  if isinstance(opt, optax.GradientTransformation):
    return opt
  if callable(opt):
    try:
      parameters = inspect.signature(opt).parameters
    except (TypeError, ValueError):
      parameters = {}
    takes_steps = 'num_steps' in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    opt = opt(num_steps=num_steps) if takes_steps else opt()
    if isinstance(opt, optax.GradientTransformation):
      return opt
  raise TypeError(f'train.optimizer must be an optax.GradientTransformation or a factory '
                  f'returning one, got {type(opt).__name__}')


