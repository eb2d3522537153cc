"""The physics baseline of the forecasting study: dinosaur at a coarser truncation.

The analogue of "IFS T63" / "IFS T42" in WeatherBench 1: the same equations
that made the data (dinosaur's dry primitive equations with the Held-Suarez
forcing, SIL3 time stepping and the scale-selective spectral filter of
`held_suarez`), run at a coarser triangular truncation (e.g. T15 or T10 where
the data are T21), on the data's own nodal grid, started from each test
initial state.

The initial states are the data's own model states: the embedded dataset is
simulated again with the same configuration (`true_states`, deterministic, so
the states are those the data were diagnosed from; checked by the test that a
forecast at the data's own truncation and time step reproduces the data) and
the modal states at 00 UTC of every sampled day are kept (cached next to the
dataset). A forecast truncates the T21 state to the coarse truncation
(coefficients of degree > T dropped), integrates it, and diagnoses the WB2
variables on pressure levels on the data grid exactly as the data are made
(`held_suarez._Model.diagnose`).

This baseline therefore starts from the full 20-sigma-level state, which the
learned models never see (they get 3 pressure levels): it is a "perfect model,
perfect initial state, lower resolution" reference.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import xarray as xr

from sphere_plugin.io import atomic
from sphere_plugin.io import cache
from sphere_plugin.weather import held_suarez

_FIELDS = ('vorticity', 'divergence', 'temperature_variation', 'log_surface_pressure')


def _states_path(cfg: held_suarez.Config) -> str:
  return os.fspath(cache.data_path(f'held_suarez_states_{cfg.hash()}.npz'))


def true_states(config: held_suarez.Config | None = None, *, progress: bool = True):
  """The modal model states at 00 UTC of every sampled day of a Held-Suarez dataset.

  Simulates the dataset's configuration again (`held_suarez._integrate`) and
  keeps the states; cached in the data cache per configuration hash.

  Args:
    config: the dataset's `held_suarez.Config` (default: the embedded one; use
      `held_suarez.config_from_dataset(ds)` for a given dataset).

  Returns:
    (dict field -> (days, trajectories, ...) float32 arrays of the modal
     state, times (days, trajectories) datetime64[ns]).
  """
  cfg = (config or held_suarez.Config()).resolved()
  path = _states_path(cfg)
  if os.path.exists(path):
    with np.load(path) as f:
      return {k: f[k] for k in _FIELDS}, f['times']
  model = held_suarez._model(cfg.grid, cfg.truncation, cfg.layers, cfg.dt_minutes,  # pylint: disable=protected-access
                             cfg.levels, cfg.sample_hours)
  *_, kept = held_suarez._integrate(cfg, model, progress, keep_states=True)  # pylint: disable=protected-access
  states = {k: np.stack([np.asarray(getattr(s, k), np.float32) for s in kept]) for k in _FIELDS}
  starts = np.array([np.datetime64(f'{cfg.start_year + k * cfg.years_per_trajectory:04d}'
                                   '-01-01T00', 'ns') for k in range(cfg.trajectories)])
  times = starts[None, :] + np.arange(cfg.days)[:, None] * np.timedelta64(1, 'D')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with atomic.atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, times=times.astype('datetime64[ns]'), **states)
  return states, times.astype('datetime64[ns]')


def _truncate(state: dict[str, np.ndarray], horizontal) -> dict[str, np.ndarray]:
  """Modal arrays cut to the (smaller) modal shape of `horizontal`, degrees > T zeroed.

  dinosaur orders the modal axes as m = 0, 1, -1, 2, -2, ... and l = 0, 1, ...,
  so a lower truncation's coefficients are a leading block.
  """
  m, l = horizontal.modal_axes
  t = len(m) // 2  # longitude_wavenumbers - 1 = T
  keep = ((np.abs(m)[:, None] <= l[None, :]) & (l[None, :] <= t)).astype(np.float32)
  out = {}
  for k, v in state.items():
    if v.shape[-2] < len(m) or v.shape[-1] < len(l):
      raise ValueError(f'cannot truncate a modal state of shape {v.shape[-2:]} to the larger '
                       f'{horizontal.modal_shape}')
    out[k] = v[..., :len(m), :len(l)] * keep
  return out


def state_error(config: held_suarez.Config, init_times, truth: xr.Dataset,
                progress: bool = True) -> dict[str, float]:
  """Largest |diagnosed true state - data| per variable at `init_times` (lead 0).

  The true states are diagnosed at the data's own truncation exactly as the
  data were made, so this is 0 (or float32 round-off) when `true_states`
  reproduced the dataset's simulation.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from dinosaur import primitive_equations  # pylint: disable=g-import-not-at-top
  cfg = config.resolved()
  states, times = true_states(cfg, progress=progress)
  index = {t: (d, k) for (d, k), t in np.ndenumerate(times)}
  init_times = np.asarray(init_times, 'datetime64[ns]').reshape(-1)
  model = held_suarez._model(cfg.grid, cfg.truncation, cfg.layers, cfg.dt_minutes,  # pylint: disable=protected-access
                             cfg.levels, cfg.sample_hours)
  diagnose = jax.jit(jax.vmap(model.diagnose))
  sel = [index[t] for t in init_times]
  out = jax.device_get(diagnose(primitive_equations.State(
      **{k: np.stack([v[d, k2] for d, k2 in sel]) for k, v in states.items()})))
  err = {}
  for name, v in out.items():
    t = truth[name].sel(time=init_times)
    t = t.transpose('time', *(['level'] if 'level' in t.dims else []), 'longitude', 'latitude')
    err[name] = float(np.max(np.abs(np.asarray(v) - t.values)))
  return err


@dataclasses.dataclass(frozen=True)
class PhysicsBaseline:
  """dinosaur's Held-Suarez model at `truncation`, as a forecaster of the embedded data.

  Attributes:
    truncation: the coarse triangular truncation T (the data are T21).
    dt_minutes: its time step; None: `held_suarez.Config`'s rule for T
      (30 min * 21 / T, rounded down to a divisor of the sampling interval).
    config: the dataset's configuration (default: the embedded dataset's).
  """
  truncation: int = 15
  dt_minutes: float | None = None
  config: held_suarez.Config = held_suarez.Config()

  def resolved_config(self) -> held_suarez.Config:
    """The data's config with this model's truncation and time step."""
    return dataclasses.replace(self.config, truncation=self.truncation,
                               dt_minutes=self.dt_minutes).resolved()

  def forecast(self, init_times: Sequence[Any], steps: int, *, batch_size: int = 16,
               progress: bool = True) -> xr.Dataset:
    """Forecasts from the true states at `init_times` (00 UTC of sampled days).

    Returns:
      a WB2 forecast Dataset: geopotential, temperature, u/v_component_of_wind
      (time, prediction_timedelta, level, longitude, latitude) and
      surface_pressure (time, prediction_timedelta, longitude, latitude), leads
      1..steps sampling intervals.
    """
    import jax  # pylint: disable=g-import-not-at-top
    import tqdm  # pylint: disable=g-import-not-at-top
    from dinosaur import primitive_equations  # pylint: disable=g-import-not-at-top
    data_cfg = self.config.resolved()
    cfg = self.resolved_config()
    if cfg.truncation > data_cfg.truncation:
      raise ValueError(f'the physics baseline runs at or below the data truncation '
                       f'T{data_cfg.truncation}, got T{cfg.truncation}')
    states, times = true_states(data_cfg, progress=progress)
    index = {t: (d, k) for (d, k), t in np.ndenumerate(times)}
    init_times = np.asarray(init_times, 'datetime64[ns]').reshape(-1)
    missing = [str(t) for t in init_times if t not in index]
    if missing:
      raise ValueError(f'no true state at {missing[:3]}: the physics baseline starts at '
                       '00 UTC of sampled days (init_every a multiple of 24h)')
    model = held_suarez._model(cfg.grid, cfg.truncation, cfg.layers, cfg.dt_minutes,  # pylint: disable=protected-access
                               cfg.levels, cfg.sample_hours)
    per_day = model.samples_per_day
    days = steps // per_day + 1
    chunks = []
    for i in tqdm.trange(0, len(init_times), batch_size, disable=not progress,
                         desc=f'physics T{cfg.truncation}', unit='batch'):
      sel = [index[t] for t in init_times[i:i + batch_size]]
      full = {k: np.stack([v[d, k2] for d, k2 in sel]) for k, v in states.items()}
      batch = primitive_equations.State(**_truncate(full, model.coords.horizontal))
      outs = []
      for _ in range(days):
        batch, out = model.sample_day(batch)
        outs.append(jax.device_get(out))
      held_suarez._check_finite(outs, 'in the physics baseline')  # pylint: disable=protected-access
      chunks.append({k: np.concatenate([o[k] for o in outs], axis=1)[:, 1:steps + 1]
                     for k in outs[0]})
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    grid = model.grid
    leads = (np.arange(1, steps + 1) * np.timedelta64(cfg.sample_hours, 'h')
             ).astype('timedelta64[ns]')
    coords = {'time': init_times, 'prediction_timedelta': leads,
              'level': np.array(cfg.levels, np.int64),
              'longitude': grid.longitudes.astype(np.float64),
              'latitude': grid.latitudes.astype(np.float64)}
    dims = ('time', 'prediction_timedelta', 'level', 'longitude', 'latitude')
    out = {}
    for name, v in data.items():
      d = dims if v.ndim == 5 else dims[:2] + dims[3:]
      out[name] = xr.Variable(d, v, {'units': held_suarez.UNITS[name]})
    return xr.Dataset(out, coords=coords,
                      attrs={'model': f'dinosaur Held-Suarez T{cfg.truncation}, dt '
                                      f'{cfg.dt_minutes} min'})
