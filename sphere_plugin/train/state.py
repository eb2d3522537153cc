"""The state a run trains and checkpoints: `TrainState`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax



@flax.struct.dataclass
class TrainState:
  """Everything a step updates; a pytree (replicated over the mesh).

  Attributes:
    step: int32 scalar, the number of completed updates.
    params: the 'params' collection.
    model_state: the other flax collections, e.g. {'batch_stats': ...} ({} if none).
    opt_state: the optax state of `params`.
    rng: uint32 key data (`jax.random.key_data`) of the run's training key.
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array

  @property
  def variables(self) -> dict:
    """The flax variables {'params': ..., **model_state}."""
    return {'params': self.params, **self.model_state}


