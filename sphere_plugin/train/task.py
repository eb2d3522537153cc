"""The protocol a training task implements for `sphere_plugin.train.train`.

A task bundles a model, its loss and its data. The loop owns everything else:
devices and sharding, the optimizer, checkpoints, metrics, signals. A task
never sees a mesh: its `loss` is traced inside a `jax.jit` whose batch argument
is sharded over all devices along axis 0, so a `jnp.mean` over the batch axis
in `loss` (and in a BatchNorm inside the model) is already the mean over the
global batch, across devices and hosts.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

import jax
import numpy as np

Variables = dict[str, Any]  # flax variables: {'params': ..., 'batch_stats': ..., ...}
Batch = dict[str, np.ndarray]  # arrays with the batch on axis 0
Metrics = dict[str, Any]  # name -> scalar (jax array inside jit, float outside)


@runtime_checkable
class Task(Protocol):
  """A model, its loss and its data, as the training loop sees them."""

  def init_variables(self, rng: jax.Array) -> Variables:
    """Initial flax variables.

    Args:
      rng: a typed PRNG key (`jax.random.key`).

    Returns:
      `{'params': ..., 'batch_stats': ... (optional), ...}`. Called inside
      `jax.jit` / `jax.eval_shape`, so it must be traceable (the usual
      `model.init(rng, example_input)` is).
    """
    ...

  def loss(self, variables: Variables, batch: Batch, rng: jax.Array,
           train: bool) -> tuple[jax.Array, tuple[Variables, Metrics]]:
    """The scalar loss of one global batch; pure and jittable.

    Args:
      variables: `{'params': ..., **model_state}` as returned by
        `init_variables` (with the current values).
      batch: the global batch, each array (batch_size, ...).
      rng: a typed PRNG key for dropout etc., different at every step.
      train: True in the training step (BatchNorm uses batch statistics and
        updates its running averages).

    Returns:
      `(loss, (new_model_state, metrics))`: loss a float32 scalar;
      new_model_state the non-'params' collections after the step (e.g.
      `{'batch_stats': ...}`, `{}` if the model has none), with the same tree
      structure as in `variables`; metrics a dict of scalars averaged over the
      global batch (the loop adds 'loss' itself).
    """
    ...

  def train_batches(self, batch_size: int, *, seed: int, start_step: int,
                    process_index: int, process_count: int) -> Iterator[Batch]:
    """This process's rows of the global training batches.

    Args:
      batch_size: the global batch size (divisible by process_count).
      seed: the run's seed.
      start_step: the first batch to yield is the one for this step (0 on a
        fresh run, the checkpoint's step on resume).
      process_index, process_count: `jax.process_index()`, `jax.process_count()`.

    Yields:
      Dicts of numpy arrays with batch_size // process_count rows each (process
      p holds rows [p * n, (p + 1) * n) of the global batch), for steps
      start_step, start_step + 1, ..., at least until the run's num_steps. The
      batch of step s must depend only on (seed, s), so a resumed run sees the
      same data as an uninterrupted one.
    """
    ...

  def evaluate(self, variables: Variables, *, batch_size: int) -> dict[str, float]:
    """Validation metrics of `variables` (host floats); may call jitted code.

    Called on every process with variables replicated over all devices.
    """
    ...

  def save_artifacts(self, workdir: str) -> None:
    """Writes what inference needs besides the weights (e.g. normalisation
    statistics) into `workdir`; called on process 0 before the first step of
    a new run (not on resume: the stored artifacts are kept). May do nothing."""
    ...

  # Optional, not part of the protocol check: a task may also define
  #   final_evaluation(variables, *, workdir, batch_size) -> dict[str, float]
  # which the loop calls once, on every process, when a run reaches num_steps
  # (e.g. scoring the test split and writing a metrics file on process 0); its
  # metrics are logged as a "test" event; and
  #   load_artifacts(workdir) -> None
  # which the loop calls on resume, so the task uses the artifacts stored with
  # the checkpoints (e.g. ForecastTask reads normalization.json back).


def as_task(obj: Any) -> Task:
  """Returns `obj` if it is a Task; calls it first if it is a class/factory.

  This lets gin bind either `train.task = @MyTask()` or `train.task = @MyTask`.
  """
  if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Task)):
    obj = obj()
  if not isinstance(obj, Task):
    missing = [name for name in ('init_variables', 'loss', 'train_batches', 'evaluate',
                                 'save_artifacts') if not callable(getattr(obj, name, None))]
    raise TypeError(f'{type(obj).__name__} is not a sphere_plugin.train.Task: it lacks '
                    f'{", ".join(missing)}')
  return obj
