"""The forecasting study: the spherical CNN against a planar CNN, a graph network and dinosaur.

`run(StudyConfig(), output_dir)` (tools/forecast_study.py) does, on one dataset:

1. **Train** every learned model (`StudyConfig.models`: a name and a training
   gin file each, e.g. gin/forecaster_small.gin, _planar.gin, _graph.gin) for
   every seed, in `output_dir/runs/<name>_seed<k>` with the same training loop
   (`sphere_plugin.train.train`), data, normalisation, loss, optimizer and
   number of steps. A finished run is not trained again (resume-safe: a
   killed run continues from its last checkpoint).
2. **Forecast** the held-out split from every `init_every` to `max_lead`
   (`inference.forecast_split`); forecasts on another grid (the graph model's
   HEALPix) are regridded spectrally to the truth grid. Add persistence,
   climatology (time mean of the training period) and the physics baseline
   (`physics_baseline.PhysicsBaseline`, dinosaur at `physics_truncations`) when
   the truth is a Held-Suarez dataset made here.
3. **Score** with `evaluation`: RMSE and ACC globally, RMSE over the polar
   caps |lat| >= `polar_latitude`, per seed, then mean and spread (standard
   deviation) over seeds.
4. **Roll out** `rollout_days` from `rollout_inits` initial times: every model
   must stay finite and keep a sane kinetic energy (`rollout.csv`), and the
   kinetic-energy spectrum against degree at `spectrum_day` (spin-1 transform
   of u + i v at `spectrum_level`) is compared with the truth's.

Files in `output_dir`: `study.md` (the tables, the wall times, the parameter
counts), `table.csv` (every number of the tables), `scores.nc` (all scores per
model and seed), `rollout.csv`, `ke_spectrum.csv`, `rmse_vs_lead.png`,
`rmse_polar_vs_lead.png`, `ke_spectrum.png` and `study.json` (timings, counts,
configuration).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import gin
import jax
import numpy as np
import pandas as pd
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin import weather
from sphere_plugin.io import atomic
from sphere_plugin.nn import spectral
from sphere_plugin.train import checkpoints
from sphere_plugin.train import loop
from sphere_plugin.weather import baselines
from sphere_plugin.weather import conventions
from sphere_plugin.weather import evaluation
from sphere_plugin.weather import held_suarez
from sphere_plugin.weather import inference
from sphere_plugin.weather import physics_baseline
from sphere_plugin.weather import plots

HEADLINE = (('geopotential', 500), ('temperature', 850), ('u_component_of_wind', 850),
            ('v_component_of_wind', 850))
SHORT = {'geopotential': 'z', 'temperature': 't', 'u_component_of_wind': 'u',
         'v_component_of_wind': 'v'}
TIMING_FILE = 'study_timing.json'


@gin.configurable(module='sphere_plugin.weather.study')
@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """What the study runs (gin: gin/forecast_study.gin).

  Attributes:
    models: (name, training gin file) per learned model; the first one's
      dataset is the truth (a lat-lon grid).
    seeds: training seeds (`sphere_plugin.train.train.seed`).
    num_steps: training steps of every model.
    bindings: extra gin bindings for every model's training.
    physics_truncations: truncations of the dinosaur baseline (needs the truth
      to be a Held-Suarez dataset made by `held_suarez`; () for none).
    split: the held-out split ('test' or 'valid').
    max_lead, init_every: forecasts to `max_lead` from every `init_every`
      (24h: the physics baseline starts at 00 UTC).
    leads: leads of the tables.
    polar_latitude: polar caps are |latitude| >= this (degrees).
    rollout_days, rollout_inits: the long-rollout check.
    spectrum_day, spectrum_level: lead (days) and pressure level of the
      kinetic-energy spectrum.
  """
  models: tuple[tuple[str, str], ...] = (
      ('spherical', 'gin/forecaster_small.gin'),
      ('planar', 'gin/forecaster_small_planar.gin'),
      ('graph', 'gin/forecaster_small_graph.gin'))
  seeds: tuple[int, ...] = (0, 1, 2)
  num_steps: int = 400
  bindings: tuple[str, ...] = ()
  physics_truncations: tuple[int, ...] = (15,)
  split: str = 'test'
  max_lead: str = '120h'
  init_every: str = '24h'
  leads: tuple[str, ...] = ('6h', '24h', '72h', '120h')
  polar_latitude: float = 60.0
  rollout_days: float = 10.0
  rollout_inits: int = 4
  spectrum_day: float = 5.0
  spectrum_level: int = 500


def _resolve(path: str) -> str:
  """A gin file relative to the working directory, else to the checkout root."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return os.path.join(root, path)


# ----------------------------------------------------------------------------
# 1. Training.

def train_one(gin_file: str, workdir: str, *, seed: int, num_steps: int,
              bindings: Sequence[str] = ()) -> dict:
  """Trains one model (or finds it trained); returns its timing and parameter count.

  The gin state is cleared before and after: the model's gin file and the
  bindings are all that configure it.
  """
  timing_path = os.path.join(workdir, TIMING_FILE)
  if os.path.exists(timing_path) and num_steps in checkpoints.checkpoint_steps(workdir):
    with open(timing_path, encoding='utf-8') as f:
      return json.load(f)
  params = list(bindings) + [f'sphere_plugin.train.train.seed = {int(seed)}',
                             f'sphere_plugin.train.train.num_steps = {int(num_steps)}']
  with gin.unlock_config():
    gin.clear_config()
    try:
      gin.parse_config_files_and_bindings([_resolve(gin_file)], params)
      t0 = time.perf_counter()
      state = loop.train(workdir)
      seconds = time.perf_counter() - t0
    finally:
      gin.clear_config()
  step = int(jax.device_get(state.step))
  if step != num_steps:  # SIGTERM: the loop saved a checkpoint and returned early
    raise InterruptedError(f'training in {workdir} stopped at step {step} of {num_steps} '
                           '(run the study again to resume it)')
  info = {'gin_file': gin_file, 'seed': int(seed), 'num_steps': int(num_steps),
          'train_seconds': round(seconds, 1),
          'params': baselines.parameter_count({'params': jax.device_get(state.params)})}
  with atomic.atomic_path(timing_path) as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(info, f, indent=1)
  return info


def train_all(cfg: StudyConfig, output_dir: str, progress: bool = True) -> dict:
  """Trains every (model, seed); returns {(name, seed): info with 'workdir'}."""
  runs = {}
  for seed in cfg.seeds:  # seed-major: every model has a run before any has two
    for name, gin_file in cfg.models:
      workdir = os.path.join(output_dir, 'runs', f'{name}_seed{seed}')
      if progress:
        print(f'study: training {name} seed {seed} -> {workdir}', flush=True)
      info = train_one(gin_file, workdir, seed=seed, num_steps=cfg.num_steps,
                       bindings=cfg.bindings)
      runs[name, seed] = dict(info, workdir=workdir)
  return {(n, s): runs[n, s] for n, _ in cfg.models for s in cfg.seeds}


# ----------------------------------------------------------------------------
# 2.-4. Forecasts, scores, rollouts.

def _steps(lead: str, dt: np.timedelta64, what: str) -> int:
  td = np.timedelta64(conventions.parse_timedelta(lead, what, positive=True), 'ns')
  return int(td // dt)


def ke_spectrum(u: np.ndarray, v: np.ndarray, grid) -> np.ndarray:
  """Kinetic-energy spectrum of winds (..., nlon, nlat) per degree l, averaged over (...).

  E(l) = sum_m |w_lm|^2 / (8 pi) with w_lm the spin-1 coefficients of u + i v,
  so sum_l E(l) is the global-mean kinetic energy 0.5 (u^2 + v^2) (Parseval).

  Returns:
    (lmax + 1,) float64 in m**2 s**-2 for winds in m s**-1.
  """
  grid = grids_lib.parse(grid)
  w = (np.asarray(u, np.float32) + 1j * np.asarray(v, np.float32)).astype(np.complex64)
  lead = w.shape[:-2]
  x = w.reshape((-1,) + grid.shape + (1, 1))
  lmax = spectral.default_lmax(grid)
  a = np.asarray(spectral.to_spectral(x, grid, lmax, (1,)))[..., 0, 0]  # (B, L+1, 2L+1)
  power = np.sum(np.abs(a) ** 2, axis=-1) / (8 * np.pi)
  del lead
  return power.mean(0).astype(np.float64)


def _global_ke(u, v, weights) -> np.ndarray:
  """Area-mean 0.5 (u^2 + v^2) over the last two axes."""
  return np.sum(0.5 * (u ** 2 + v ** 2) * weights, axis=(-2, -1)) / weights.sum()


class _Truth:
  """The held-out truth, climatology and grid of the study's first model."""

  def __init__(self, workdir: str, split: str):
    model = inference.load(workdir)
    spec = inference.training_spec(workdir)
    self.data = weather.WeatherData(spec, normalizer=model.data.normalizer)
    if not isinstance(self.data.grid, grids_lib.LatLonGrid):
      raise ValueError(f'the first model of the study defines the truth and must be on a '
                       f'lat-lon grid, got {self.data.grid}')
    self.grid = self.data.grid
    self.time_step = model.time_step
    ds = self.data.dataset
    self.variables = list(spec.level_variables) + list(spec.surface_variables)
    self.truth = ds[self.variables].sel(time=self.data.times(split)).load()
    self.clim = evaluation.climatology(
        ds[self.variables].sel(time=self.data.times('train')).load(), by='mean')
    self.attrs = dict(ds.attrs)


def _model_forecast(model: inference.TrainedForecaster, data: weather.WeatherData,
                    truth: _Truth, split: str, steps: int, init_every,
                    max_inits: int | None = None) -> xr.Dataset:
  """A trained model's forecasts on the truth grid."""
  from sphere_plugin import accessor  # pylint: disable=g-import-not-at-top
  fc = inference.forecast_split(model, data, split, steps, init_every, progress=False,
                                max_inits=max_inits)
  if data.grid != truth.grid:  # in chunks of initial times: bounded memory
    fc = xr.concat([accessor.regrid_dataset(fc.isel(time=slice(i, i + 8)), truth.grid,
                                            method='spectral')
                    for i in range(0, fc.sizes['time'], 8)], 'time')
  return fc


def _scores(fc: xr.Dataset, truth: _Truth, polar: float, with_acc: bool = True) -> dict:
  out = {'rmse': evaluation.rmse(fc, truth.truth),
         'rmse_polar': evaluation.rmse(fc, truth.truth, min_abs_latitude=polar)}
  if with_acc:
    out['acc'] = evaluation.acc(fc, truth.truth, truth.clim)
  return out


def _rollout_row(name: str, seed, fc: xr.Dataset, truth: _Truth) -> dict:
  """Blow-up check of a long forecast: finite, wind and kinetic energy at the last lead."""
  u = fc['u_component_of_wind'].isel(prediction_timedelta=-1)
  v = fc['v_component_of_wind'].isel(prediction_timedelta=-1)
  valid = fc['time'].values + fc['prediction_timedelta'].values[-1]
  ut = truth.truth['u_component_of_wind'].sel(time=valid)
  vt = truth.truth['v_component_of_wind'].sel(time=valid)
  w = evaluation.area_weights(fc).transpose(*u.dims[-2:]).values
  ke = float(np.mean(_global_ke(u.values, v.values, w)))
  ke_t = float(np.mean(_global_ke(ut.transpose(*u.dims).values,
                                  vt.transpose(*u.dims).values, w)))
  finite = all(bool(np.isfinite(fc[k].values).all()) for k in fc.data_vars)
  wind = float(np.nanmax(np.hypot(u.values, v.values)))
  ratio = ke / ke_t if ke_t > 0 else float('nan')
  return {'model': name, 'seed': seed, 'days': float(fc['prediction_timedelta'].values[-1]
                                                      / np.timedelta64(1, 'D')),
          'inits': int(fc.sizes['time']), 'finite': finite, 'max_wind_m_s': round(wind, 2),
          'ke_ratio_to_truth': round(ratio, 4),
          'blew_up': (not finite) or not (0.1 < ratio < 10.0) or wind > 300.0}


def _spectrum(fc: xr.Dataset, truth: _Truth, lead, level) -> tuple[np.ndarray, np.ndarray]:
  """KE spectra (forecast, truth at the same valid times) at one lead and level."""
  f = fc.sel(prediction_timedelta=lead, level=level)
  valid = f['time'].values + lead
  t = truth.truth.sel(time=valid, level=level)
  lon, lat = grids_lib.spatial_dims(f)
  get = lambda ds, k: ds[k].transpose(..., lon, lat).values
  return (ke_spectrum(get(f, 'u_component_of_wind'), get(f, 'v_component_of_wind'), truth.grid),
          ke_spectrum(get(t, 'u_component_of_wind'), get(t, 'v_component_of_wind'), truth.grid))


def evaluate_all(cfg: StudyConfig, runs: dict, progress: bool = True) -> dict:
  """Forecasts, scores, rollout checks and spectra of every model (see the module doc)."""
  first = runs[cfg.models[0][0], cfg.seeds[0]]['workdir']
  truth = _Truth(first, cfg.split)
  dt = truth.time_step
  steps = _steps(cfg.max_lead, dt, 'max_lead')
  init_every = conventions.parse_timedelta(cfg.init_every, 'init_every', positive=True)
  roll_steps = int(round(cfg.rollout_days * 24 * 3600 * 1e9 / (dt / np.timedelta64(1, 'ns'))))
  spec_lead = np.timedelta64(int(round(cfg.spectrum_day * 24)), 'h').astype('timedelta64[ns]')
  if spec_lead > roll_steps * dt:
    raise ValueError(f'spectrum_day {cfg.spectrum_day} is past rollout_days {cfg.rollout_days}')
  scores, rollouts, spectra = {}, [], {}
  say = (lambda m: print(f'study: {m}', flush=True)) if progress else (lambda m: None)

  inits, model_grids = None, {}
  for (name, seed), info in runs.items():
    say(f'forecasting {name} seed {seed}')
    model = inference.load(info['workdir'])
    data = weather.WeatherData(inference.training_spec(info['workdir']),
                               normalizer=model.data.normalizer)
    model_grids[name] = data.grid
    fc = _model_forecast(model, data, truth, cfg.split, steps, init_every)
    inits = fc['time'].values if inits is None else inits
    scores.setdefault(name, {})[seed] = _scores(fc, truth, cfg.polar_latitude)
    long = _model_forecast(model, data, truth, cfg.split, roll_steps, init_every,
                           max_inits=cfg.rollout_inits)
    rollouts.append(_rollout_row(name, seed, long, truth))
    spectra.setdefault(name, []).append(_spectrum(long, truth, spec_lead, cfg.spectrum_level))
  leads = (np.arange(1, steps + 1) * dt).astype('timedelta64[ns]')
  scores['persistence'] = {None: _scores(
      evaluation.persistence_forecast(truth.truth, inits, leads), truth, cfg.polar_latitude)}
  scores['climatology'] = {None: _scores(
      evaluation.climatology_forecast(truth.clim, inits, leads), truth, cfg.polar_latitude,
      with_acc=False)}
  if cfg.physics_truncations:
    if 'config_json' not in truth.attrs:
      raise ValueError('the physics baseline needs the Held-Suarez dataset made by '
                       'sphere_plugin (its config_json attr); set physics_truncations = ()')
    data_cfg = held_suarez.config_from_dataset(xr.Dataset(attrs=truth.attrs))
    roll_inits = long['time'].values
    state_error = physics_baseline.state_error(data_cfg, inits, truth.truth, progress)
    say(f'physics: largest |true state - data| at the initial times: {state_error}')
    for trunc in cfg.physics_truncations:
      name = f'dinosaur T{trunc}'
      say(f'forecasting {name}')
      pb = physics_baseline.PhysicsBaseline(truncation=trunc, config=data_cfg)
      fc = pb.forecast(inits, steps, progress=progress)
      scores[name] = {None: _scores(fc, truth, cfg.polar_latitude)}
      long = pb.forecast(roll_inits, roll_steps, progress=progress)
      rollouts.append(_rollout_row(name, None, long, truth))
      spectra[name] = [_spectrum(long, truth, spec_lead, cfg.spectrum_level)]
  floors = {name: _regrid_floor(grid, truth, inits) for name, grid in model_grids.items()
            if grid != truth.grid}
  return {'scores': scores, 'rollouts': rollouts, 'spectra': spectra, 'truth': truth,
          'init_times': inits, 'rollout_steps': roll_steps, 'spectrum_lead': spec_lead,
          'regrid_floors': floors,
          'physics_state_error': state_error if cfg.physics_truncations else {}}


def _regrid_floor(grid, truth: _Truth, inits) -> dict:
  """RMSE of the truth at `inits` regridded to a model's grid and back (spectral).

  The error a model on that grid has even with a perfect forecast there.
  """
  from sphere_plugin import accessor  # pylint: disable=g-import-not-at-top
  t = truth.truth.sel(time=inits)
  back = accessor.regrid_dataset(accessor.regrid_dataset(t, grid, method='spectral'),
                                 truth.grid, method='spectral')
  fc = evaluation.persistence_forecast(back, inits, ['0h'])
  r = evaluation.rmse(fc, truth.truth)
  return {f'{SHORT.get(n, n)}{lv}': evaluation.select_score(r, n, lv, '0h')
          for n, lv in HEADLINE} | {'grid': str(grid)}


# ----------------------------------------------------------------------------
# Output files.

def _stats(per_seed: dict, metric: str) -> tuple[xr.Dataset, xr.Dataset, int]:
  """Mean and standard deviation over seeds (ddof 0; 0 for a single run)."""
  sets = [s[metric] for s in per_seed.values() if metric in s]
  stacked = xr.concat(sets, 'seed', coords='minimal', compat='override')
  mean, std = stacked.mean('seed'), stacked.std('seed')
  for k in mean.data_vars:
    mean[k].attrs = dict(sets[0][k].attrs)
  return mean, std, len(sets)


def table_rows(scores: dict, leads: Sequence[str], variables=HEADLINE) -> list[dict]:
  """One row per (model, metric, variable, level, lead): mean, std over seeds, seeds."""
  rows = []
  for model, per_seed in scores.items():
    for metric in ('rmse', 'acc', 'rmse_polar'):
      if not any(metric in s for s in per_seed.values()):
        continue
      mean, std, n = _stats(per_seed, metric)
      for name, level in variables:
        for lead in leads:
          m = evaluation.select_score(mean, name, level, lead)
          s = evaluation.select_score(std, name, level, lead)
          if m is None:
            continue
          rows.append({'model': model, 'metric': metric, 'variable': name, 'level': level,
                       'lead': lead, 'units': mean[name].attrs.get('units', ''),
                       'mean': m, 'std': s, 'seeds': n})
  return rows


def _markdown(rows: list[dict], metric: str, models: Sequence[str],
              leads: Sequence[str]) -> str:
  sel = [r for r in rows if r['metric'] == metric]
  head = '| variable | lead | ' + ' | '.join(models) + ' |'
  lines = [head, '|' + '---|' * (2 + len(models))]
  for name, level in HEADLINE:
    for lead in leads:
      cells = []
      for model in models:
        r = [x for x in sel if x['model'] == model and x['variable'] == name
             and x['level'] == level and x['lead'] == lead]
        if not r:
          cells.append('')
          continue
        fmt = (lambda v: f'{v:.3f}') if metric == 'acc' else (lambda v: f'{v:.4g}')
        r = r[0]
        cells.append(fmt(r['mean']) + (f' ± {fmt(r["std"])}' if r['seeds'] > 1 else ''))
      units = next((x['units'] for x in sel if x['variable'] == name), '')
      label = f'{SHORT.get(name, name)}{level}' + (f' ({units})' if metric != 'acc' else '')
      lines.append(f'| {label} | {lead} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _markdown_records(records: list[dict]) -> str:
  if not records:
    return ''
  keys = list(records[0])
  lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  cell = lambda v: '' if v is None else (f'{v:.4g}' if isinstance(v, float) else str(v))
  lines += ['| ' + ' | '.join(cell(r[k]) for k in keys) + ' |' for r in records]
  return '\n'.join(lines)


def write_outputs(cfg: StudyConfig, runs: dict, result: dict, output_dir: str,
                  wall_seconds: float) -> dict:
  """Writes the tables, figures and data files; returns the summary dict (study.json)."""
  scores, leads = result['scores'], list(cfg.leads)
  models = list(scores)
  rows = table_rows(scores, leads)
  pd.DataFrame(rows).to_csv(os.path.join(output_dir, 'table.csv'), index=False)
  pd.DataFrame(result['rollouts']).to_csv(os.path.join(output_dir, 'rollout.csv'), index=False)

  # All scores per model and seed.
  parts = []
  for model, per_seed in scores.items():
    for seed, s in per_seed.items():
      for metric, ds in s.items():
        parts.append(ds.drop_vars(evaluation.COUNT, errors='ignore').expand_dims(
            run=[f'{model}|{"" if seed is None else seed}|{metric}']))
  xr.concat(parts, 'run', join='outer').to_netcdf(os.path.join(output_dir, 'scores.nc'))

  # Figures: mean over seeds, the spread shaded.
  for metric, fname in (('rmse', 'rmse_vs_lead.png'), ('rmse_polar', 'rmse_polar_vs_lead.png')):
    means, spreads = {}, {}
    for model, per_seed in scores.items():
      means[model], spreads[model], _ = _stats(per_seed, metric)
    title = 'RMSE' if metric == 'rmse' else f'RMSE |lat| >= {cfg.polar_latitude:g}'
    plots.plot_rmse_vs_lead(means, HEADLINE, os.path.join(output_dir, fname), metric=title,
                            spread=spreads)
  truth_spec = None
  spec_rows = []
  for model, pairs in result['spectra'].items():
    f = np.mean([p[0] for p in pairs], axis=0)
    truth_spec = pairs[0][1]
    spec_rows += [{'model': model, 'degree': l, 'energy': float(e)} for l, e in enumerate(f)]
  if truth_spec is not None:
    spec_rows += [{'model': 'truth', 'degree': l, 'energy': float(e)}
                  for l, e in enumerate(truth_spec)]
    spectra = {m: np.mean([p[0] for p in ps], axis=0) for m, ps in result['spectra'].items()}
    plots.plot_spectra(dict(spectra, truth=truth_spec), os.path.join(output_dir, 'ke_spectrum.png'),
                       title=f'kinetic energy {cfg.spectrum_level} hPa, day {cfg.spectrum_day:g}')
  pd.DataFrame(spec_rows).to_csv(os.path.join(output_dir, 'ke_spectrum.csv'), index=False)

  params, train_s = {}, {}
  for (name, seed), info in runs.items():
    params[name] = info['params']
    train_s.setdefault(name, []).append(info['train_seconds'])
  summary = {
      'config': dataclasses.asdict(cfg), 'wall_seconds': round(wall_seconds, 1),
      'parameters': params,
      'train_seconds_mean': {k: round(float(np.mean(v)), 1) for k, v in train_s.items()},
      'train_seconds_total': round(float(sum(map(sum, train_s.values()))), 1),
      'evaluate_seconds': round(float(result.get('evaluate_seconds', 0.0)), 1),
      'init_times': int(len(result['init_times'])),
      'rollout_steps': result['rollout_steps'],
      'blew_up': [r['model'] for r in result['rollouts'] if r['blew_up']],
      'regrid_floors': result.get('regrid_floors', {}),
      'physics_state_error': result.get('physics_state_error', {}),
  }
  with open(os.path.join(output_dir, 'study.json'), 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=1, default=str)

  md = [f'# Forecasting study ({cfg.split} split, {summary["init_times"]} initial times every '
        f'{cfg.init_every}, seeds {list(cfg.seeds)}, {cfg.num_steps} training steps)', '',
        f'Wall time of this invocation: {wall_seconds / 60:.1f} min; training (all runs, '
        f'summed over the invocations that trained them): '
        f'{summary["train_seconds_total"] / 60:.1f} min; evaluation: '
        f'{summary["evaluate_seconds"] / 60:.1f} min.', '',
        '| model | parameters | training time per seed (s) |', '|---|---|---|']
  md += [f'| {k} | {params[k]:,} | {summary["train_seconds_mean"][k]} |' for k in params]
  for metric, title in (('rmse', 'RMSE (global)'), ('acc', 'ACC (global)'),
                        ('rmse_polar', f'RMSE over the polar caps |lat| >= '
                                       f'{cfg.polar_latitude:g}')):
    md += ['', f'## {title}: mean ± standard deviation over seeds', '',
           _markdown(rows, metric, models, leads)]
  if result.get('physics_state_error'):
    md += ['', 'Physics baseline initial states: largest |diagnosed true state - data| at the '
           'initial times (0 when the re-simulation reproduced the data): '
           + ', '.join(f'{k} {v:.3g}' for k, v in result['physics_state_error'].items()) + '.']
  if result.get('regrid_floors'):
    md += ['', '## Regridding floor: RMSE of the truth regridded to the model grid and back '
           '(a perfect forecast there still has this error on the truth grid)', '',
           _markdown_records([dict(model=k, **v) for k, v in result['regrid_floors'].items()])]
  md += ['', f'## {cfg.rollout_days:g}-day rollouts', '', _markdown_records(result['rollouts'])]
  with open(os.path.join(output_dir, 'study.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(md) + '\n')
  return summary


def run(cfg: StudyConfig, output_dir: str, progress: bool = True) -> dict:
  """Trains, evaluates and writes the study (module docstring); returns the summary."""
  os.makedirs(output_dir, exist_ok=True)
  t0 = time.perf_counter()
  runs = train_all(cfg, output_dir, progress)
  t1 = time.perf_counter()
  result = evaluate_all(cfg, runs, progress)
  result['evaluate_seconds'] = time.perf_counter() - t1
  return write_outputs(cfg, runs, result, output_dir, time.perf_counter() - t0)
