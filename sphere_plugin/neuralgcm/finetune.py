"""Fine-tuning a spherical CNN encoder inside a NeuralGCM model, then forecasting.

`finetune_and_forecast` loads a NeuralGCM checkpoint (default: NeuralGCM's
shipped TL63 stochastic 'mini') through the restricted unpickler, replaces the
encoder's tower with a `SphericalCNNTower` by gin, initialises the new
parameters and keeps all others, trains the new tower with Adam to reconstruct
NeuralGCM's ERA5 snapshot (1959-01-02T00, TL63) through encode -> decode, runs
a forecast with the modified model and writes it as a WeatherBench2-format
netCDF Dataset (`time` = initialisation, `prediction_timedelta` = lead,
(level, longitude, latitude) on the model's data grid), written to a
temporary path and renamed. `tools/finetune_neuralgcm.py` is its command line.
"""

from __future__ import annotations

import os
import time


def _log(msg: str) -> None:
  print(msg, flush=True)


def _wb2_dataset(model, outputs, init_time, leads):
  """Decoded trajectory -> WB2 forecast Dataset with netCDF-safe attrs."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  ds = model.data_to_xarray(outputs, times=leads)
  ds = ds.drop_vars('sim_time', errors='ignore').rename({'time': 'prediction_timedelta'})
  ds = ds.expand_dims(time=[np.datetime64(init_time, 'ns')])
  ds = ds.transpose('time', 'prediction_timedelta', 'level', 'longitude', 'latitude', ...)
  ds.attrs = {'source': 'NeuralGCM TL63 stochastic mini with a sphere_plugin SphericalCNNTower '
                        'encoder (tools/finetune_neuralgcm.py)',
              'initial_condition': 'ERA5 1959-01-02T00 (neuralgcm/data), persisted forcings'}
  for v in ds.variables.values():
    v.attrs = {k: (str(a) if a is None or isinstance(a, (dict, list, tuple, bool)) else a)
               for k, a in v.attrs.items()}
  return ds


def finetune_and_forecast(output: str, checkpoint: str | None = None, steps: int = 20,
                          learning_rate: float = 1e-3, days: float = 2.0,
                          output_hours: int = 6, tower_args: dict | None = None,
                          physics_tower: bool = False, seed: int = 0,
                          gin_params=()) -> dict:
  """Runs the whole job; returns losses and timings (see module docstring).

  Args:
    output: forecast netCDF path.
    checkpoint: NeuralGCM checkpoint pickle (default: the toy TL63 one).
    steps, learning_rate: Adam on the encoder tower.
    days, output_hours: forecast length and output interval.
    tower_args: `SphericalCNNTower` bindings (default features=(8,), lmaxes=(31,)).
    physics_tower: also put a (fresh, untrained) tower in the learned physics.
    seed: random seed.
    gin_params: extra gin lines.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  from neuralgcm import demo  # pylint: disable=g-import-not-at-top

  from sphere_plugin import neuralgcm as sng  # pylint: disable=g-import-not-at-top
  from sphere_plugin.io import atomic  # pylint: disable=g-import-not-at-top

  hours = days * 24
  if hours <= 0 or abs(hours / output_hours - round(hours / output_hours)) > 1e-9:
    raise ValueError(f'--days={days} is not a positive multiple of --output_hours='
                     f'{output_hours} hours')
  t0 = time.perf_counter()
  tower_args = dict(features=(8,), lmaxes=(31,)) if tower_args is None else dict(tower_args)
  bindings = sng.tower_bindings(sng.ENCODER, 'sphere_encoder', **tower_args)
  if physics_tower:
    bindings += sng.tower_bindings(sng.PHYSICS, 'sphere_physics', **tower_args)
  bindings += list(gin_params)
  _log('gin bindings added to the checkpoint config:\n  ' + '\n  '.join(bindings))
  ckpt = sng.load_checkpoint(checkpoint, extra_bindings=bindings)
  model = sng.build_model(ckpt)
  ds = demo.load_data(model.data_coords)
  snap = ds.isel(time=0)
  inputs = model.inputs_from_xarray(snap)
  forcings = model.forcings_from_xarray(snap)
  rng_init, rng_enc, rng_fc = jax.random.split(jax.random.key(seed), 3)
  params, new = sng.init_params(model, inputs, forcings, rng_init, with_advance=physics_tower)
  model = sng.with_params(model, params)
  n_new = sum(int(np.size(v)) for m in new for v in params[m].values())
  _log(f'initialised {len(new)} new modules ({n_new} parameters); kept '
       f'{len(params) - len(new)} checkpoint modules [{time.perf_counter() - t0:.0f} s]')

  t1 = time.perf_counter()
  bar = tqdm.tqdm(total=steps, desc='fine-tune encoder tower', unit='step')

  def progress(_, loss):
    bar.update(1)
    bar.set_postfix(loss=f'{loss:.4f}')

  model, losses = sng.fit_tower(model, inputs, forcings, rng_enc, steps, learning_rate,
                                callback=progress)
  bar.close()
  t_train = time.perf_counter() - t1
  _log(f'reconstruction loss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps '
       f'[{t_train:.0f} s]')

  t2 = time.perf_counter()
  state = model.encode(inputs, forcings, rng_fc)
  all_forcings = model.forcings_from_xarray(ds.head(time=1))
  n_out = int(round(hours / output_hours))
  dt = np.timedelta64(output_hours, 'h')
  chunks = []
  for _ in tqdm.tqdm(range(n_out), desc=f'forecast {days:g} days', unit=f'{output_hours}h'):
    state, out = model.unroll(state, all_forcings, steps=1, timedelta=dt)
    chunks.append(jax.tree.map(np.asarray, out))
  outputs = jax.tree.map(lambda *a: np.concatenate(a), *chunks)
  t_fc = time.perf_counter() - t2
  leads = np.arange(1, n_out + 1) * dt
  out_ds = _wb2_dataset(model, outputs, snap.time.values, leads.astype('timedelta64[ns]'))
  bad = [k for k, v in out_ds.data_vars.items() if not np.isfinite(v.values).all()]
  if bad:
    raise ValueError(f'the forecast has non-finite values in {bad}')
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with atomic.atomic_path(output) as tmp:
    out_ds.to_netcdf(tmp)
  total = time.perf_counter() - t0
  _log(f'wrote {output}: {dict(out_ds.sizes)} [forecast {t_fc:.0f} s, total {total:.0f} s]')
  return {'losses': losses, 'train_s': t_train, 'forecast_s': t_fc, 'total_s': total,
          'new_modules': new}
