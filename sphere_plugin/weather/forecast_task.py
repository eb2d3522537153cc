"""The weather-forecasting task for the training loop (`sphere_plugin.train.Task`).

Trains a `sphere_plugin.models.Forecaster` on windows of a WB2-format dataset
(`sphere_plugin.data.weather`): k autoregressive steps from each window start,
loss = area-weighted MSE in units of each channel's time-step difference std,
summed over the k steps. Validation reports the area-weighted RMSE per channel
and lead time in physical units.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import weather
from sphere_plugin.weather import artifacts
from sphere_plugin.weather import forecaster as forecaster_lib
from sphere_plugin.weather import held_suarez


def with_embedded_data(spec: weather.WeatherSpec, embedded_grid: str | None = None,
                       progress: bool = True) -> weather.WeatherSpec:
  """`spec`, or for `spec.path=None` the embedded dataset, made on first use.

  With `embedded_grid`, the embedded dataset regridded to that grid
  (`held_suarez.make_dataset_on`); otherwise the dataset itself
  (`held_suarez.make_dataset`, a no-op when it exists).
  """
  if spec.path is not None:
    return spec
  if embedded_grid is not None:
    path = held_suarez.make_dataset_on(embedded_grid, progress=progress)
  else:
    path = held_suarez.make_dataset(progress=progress)
  return dataclasses.replace(spec, path=path)


@gin.configurable(module='sphere_plugin.train')
class ForecastTask:
  """Weather forecasting on a WB2-format dataset.

  Args:
    spec: what to read (default: gin-configured `WeatherSpec()`); with no
      `path`, the embedded Held-Suarez dataset, simulated here on first use.
    model: Forecaster class or factory, called with `vector_pairs=`.
    rollout_steps: k, the autoregressive steps per training window.
    eval_leads: validation lead times, in time steps.
    eval_max_windows: cap on validation windows (None: all), to keep
      evaluation during training short.
    normalizer: statistics to use (default: computed from the training period).
    progress: show progress while computing statistics.
    embedded_grid: with no `spec.path`, train on the embedded dataset
      regridded (spectrally, cached) to this grid, e.g. 'healpix:16'
      (`held_suarez.make_dataset_on`).
  """

  def __init__(self, spec: weather.WeatherSpec | None = None,
               model: Callable[..., forecaster_lib.Forecaster] = forecaster_lib.Forecaster,
               rollout_steps: int = 1, eval_leads: Sequence[int] = (1, 4),
               eval_max_windows: int | None = 64,
               normalizer: weather.Normalizer | None = None, progress: bool = True,
               embedded_grid: str | None = None):
    if rollout_steps < 1:
      raise ValueError(f'rollout_steps must be >= 1, got {rollout_steps}')
    if not eval_leads or min(eval_leads) < 1:
      raise ValueError(f'eval_leads must be positive step counts, got {eval_leads}')
    spec = with_embedded_data(spec or weather.WeatherSpec(), embedded_grid, progress)
    self.data = weather.WeatherData(spec, normalizer=normalizer, progress=progress)
    self.model = model(vector_pairs=tuple(tuple(int(i) for i in p)
                                          for p in self.data.vector_pairs))
    self.diff_scale = np.asarray(self.data.normalizer.diff_scale, np.float32)
    self.area_weights = forecaster_lib.area_weights(self.data.grid)
    self.rollout_steps = int(rollout_steps)
    self.eval_leads = tuple(sorted(int(k) for k in eval_leads))
    self.eval_max_windows = eval_max_windows
    self._eval_fn = None

  # -- Task protocol --------------------------------------------------------

  def init_variables(self, rng) -> dict:
    """Flax variables of the forecaster, from zero inputs."""
    g = self.data.grid.shape
    state = jnp.zeros((1, *g, len(self.data.channels)), jnp.float32)
    forcings = jnp.zeros((1, *g, len(self.data.forcing_channels)), jnp.float32)
    return dict(self.model.init(rng, state, forcings, False))

  def loss(self, variables, batch, rng, train: bool):
    """k-step rollout loss; metrics: loss and the per-step MSE."""
    del rng
    preds, model_state = forecaster_lib.rollout(self.model, variables, batch['inputs'],
                                                batch['forcings'], self.diff_scale, train)
    loss, per_step = forecaster_lib.weighted_mse(preds, batch['targets'], self.area_weights,
                                                 self.diff_scale)
    metrics = {'loss': loss}
    metrics.update({f'mse_step{j + 1}': per_step[j] for j in range(per_step.shape[0])})
    return loss, (model_state, metrics)

  def train_batches(self, batch_size: int, *, seed: int, start_step: int,
                    process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Training windows of rollout_steps steps (local rows of each global batch)."""
    return self.data.batches('train', batch_size, self.rollout_steps, seed=seed,
                             start_step=start_step, process_index=process_index,
                             process_count=process_count)

  def evaluate(self, variables, *, batch_size: int) -> dict[str, float]:
    """Area-weighted RMSE per channel and lead on the validation split (physical units)."""
    steps = max(self.eval_leads)
    starts = self.data.window_starts('valid', steps)
    if len(starts) == 0:
      raise ValueError(f'the validation period {self.data.spec.valid_period} holds no '
                       f'window of {steps} steps')
    if self.eval_max_windows is not None and len(starts) > self.eval_max_windows:
      idx = np.linspace(0, len(starts) - 1, self.eval_max_windows).round().astype(int)
      starts = starts[idx]
    if self._eval_fn is None:
      # One step compiled once and looped here, not a k-step rollout compiled
      # whole: on HEALPix the unrolled 4-step program took over 10 minutes to
      # compile on a 2-core CPU; one step compiles like a training step's forward.
      step = jax.jit(lambda v, x, f: forecaster_lib.step(self.model, v, x, f, self.diff_scale))

      def run(variables, inputs, forcings):
        preds = []
        for j in range(forcings.shape[1]):
          inputs = step(variables, inputs, forcings[:, j])
          preds.append(inputs)
        return jnp.stack(preds, axis=1)
      self._eval_fn = run
    std = np.asarray(self.data.normalizer.std)
    sq = np.zeros((steps, len(std)))
    for i in range(0, len(starts), batch_size):
      chunk = starts[i:i + batch_size]
      pad = batch_size - len(chunk)
      b = self.data.load(np.concatenate([chunk, np.repeat(chunk[-1:], pad)]), steps)
      preds = np.asarray(self._eval_fn(variables, b['inputs'], b['forcings']))
      err = ((preds - b['targets']) * std)[:len(chunk)]  # physical units
      spatial = tuple(range(2, err.ndim - 1))
      sq += np.sum(err ** 2 * self.area_weights[..., None], axis=(0,) + spatial) / (
          self.area_weights.size)
    rmse = np.sqrt(sq / len(starts))
    hours = self.data.spec.time_step_ns / np.timedelta64(1, 'h')
    out = {}
    for k in self.eval_leads:
      for c, name in enumerate(self.data.channels):
        out[f'valid_rmse/{name}/{k * hours:g}h'] = float(rmse[k - 1, c])
    return out

  def load_artifacts(self, workdir: str) -> None:
    """On resume: use the statistics stored in workdir, not freshly computed ones.

    The checkpoint was trained with workdir/normalization.json; the loop calls
    this before the first resumed step (and keeps the file as it is).
    """
    path = os.path.join(workdir, weather.NORMALIZER_FILENAME)
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} is missing: the statistics this checkpoint was '
                              'trained with are lost; train in a new --workdir')
    normalizer = weather.Normalizer.load(path)
    self.data._check_normalizer(normalizer)  # pylint: disable=protected-access
    self.data.normalizer = normalizer
    self.diff_scale = np.asarray(normalizer.diff_scale, np.float32)

  def save_artifacts(self, workdir: str) -> None:
    """Statistics and a one-time template of the data, next to the checkpoints.

    With these, `sphere_plugin.forecast.load(workdir)` rebuilds the model
    without the training dataset.
    """
    self.data.normalizer.save(os.path.join(workdir, weather.NORMALIZER_FILENAME))
    artifacts.save_template(self.data, workdir)
