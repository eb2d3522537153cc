"""Evaluate a trained forecaster the WeatherBench way.

    python tools/evaluate.py --workdir=runs/forecaster_small

Rolls the model out from initial times in the test period of the workdir's
dataset and scores it, persistence and climatology (the time mean of the
training period) with area-weighted RMSE and ACC per variable, level and lead
time (`sphere_plugin.evaluation`). Writes to `--output_dir` (default
`<workdir>/evaluation`): `scores.nc` (all scores), `skill.txt` (the table it
prints), `rmse_vs_lead.png` and mollweide maps of truth, forecast and error for
z500 and t850 at the longest lead. Any failure is one line on stderr,
`evaluate: error: <message>`, with exit status 1 (`--verbose` adds the
traceback).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import xarray as xr

from sphere_plugin import weather
from sphere_plugin.io import allocator
from sphere_plugin.io import errors
from sphere_plugin.io import flag_help as help_lib
from sphere_plugin.weather import conventions
from sphere_plugin.weather import evaluation
from sphere_plugin.weather import inference
from sphere_plugin.weather import plots

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags (only when run as a tool, so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Training workdir of the forecaster.')
  flags.DEFINE_string('output_dir', None,
                      'Where to write scores and figures (default <workdir>/evaluation).')
  flags.DEFINE_string('data', None, "Dataset to evaluate on (default: the training config's).")
  flags.DEFINE_enum('split', 'test', ['valid', 'test'], 'Period to evaluate on.')
  flags.DEFINE_list('leads', ['6h', '24h', '72h'], 'Lead times in the skill table.')
  flags.DEFINE_string('max_lead', '72h', 'Longest lead time rolled out.')
  flags.DEFINE_string('init_every', '12h', 'Spacing of initial times.')


HEADLINE = (('geopotential', 500), ('temperature', 850))


# Moved to sphere_plugin.weather.inference (the forecasting study uses them too).
forecast_split = inference.forecast_split


def evaluate(workdir: str, output_dir: str | None = None, *, data_path: str | None = None,
             split: str = 'test', max_lead: str = '72h', init_every: str = '12h',
             leads=('6h', '24h', '72h'), progress: bool = True) -> dict:
  """Scores the workdir's model, persistence and climatology; writes files.

  Returns:
    {'rmse': {model name: Dataset}, 'acc': {...}, 'table': str (RMSE),
     'acc_table': str, 'output_dir': str}. scores.nc holds both metrics
    (dims metric, model, prediction_timedelta, level).
  """
  model = inference.load(workdir)
  spec = dataclasses.replace(model.data.spec, path=data_path) if data_path else None
  if spec is None:
    spec = _training_spec(workdir)
  data = weather.WeatherData(spec, normalizer=model.data.normalizer)
  if data.grid != model.grid:
    raise ValueError(f'the dataset is on {data.grid}, the model on {model.grid}; regrid it '
                     'first (tools/regrid.py)')
  dt = model.time_step
  steps = int(np.timedelta64(conventions.parse_timedelta(max_lead, '--max_lead', positive=True), 'ns') // dt)
  fc = forecast_split(model, data, split, steps, conventions.parse_timedelta(init_every, '--init_every', positive=True), progress=progress)
  variables = list(fc.data_vars)
  truth = data.dataset[variables].sel(time=data.times(split)).load()
  train_truth = data.dataset[variables].sel(time=data.times('train'))
  clim = evaluation.climatology(train_truth.load(), by='mean')
  inits, lead_values = fc['time'].values, fc['prediction_timedelta'].values
  forecasts = {
      'model': fc,
      'persistence': evaluation.persistence_forecast(truth, inits, lead_values),
      'climatology': evaluation.climatology_forecast(clim, inits, lead_values),
  }
  rmse = {k: evaluation.rmse(v, truth) for k, v in forecasts.items()}
  acc = {k: evaluation.acc(v, truth, clim) for k, v in forecasts.items() if k != 'climatology'}
  headline = [h for h in HEADLINE if h[0] in variables]
  table = evaluation.skill_table(rmse, variables=headline, leads=tuple(leads))
  out = output_dir or os.path.join(workdir, 'evaluation')
  os.makedirs(out, exist_ok=True)
  acc_table = evaluation.skill_table(acc, variables=headline, leads=tuple(leads), metric='ACC')

  def stack(per_model, metric):
    names = list(per_model)
    return xr.concat([per_model[k] for k in names], 'model').assign_coords(
        model=names).expand_dims(metric=[metric])

  # ACC has no climatology row (0/0): the outer join leaves it NaN there.
  scores = xr.concat([stack(rmse, 'rmse'), stack(acc, 'acc')], 'metric', join='outer')
  scores.attrs = {'workdir': os.path.abspath(workdir), 'split': split,
                  'checkpoint_step': model.step, 'init_times': len(inits)}
  scores.to_netcdf(os.path.join(out, 'scores.nc'))
  with open(os.path.join(out, 'skill.txt'), 'w', encoding='utf-8') as f:
    f.write(table + '\n\n' + acc_table + '\n')
  plots.plot_rmse_vs_lead(rmse, headline, os.path.join(out, 'rmse_vs_lead.png'))
  last = fc['prediction_timedelta'].values[-1]
  hours = int(last / np.timedelta64(1, 'h'))
  for name, level in headline:
    f0 = fc[name].sel(level=level).isel(time=0).sel(prediction_timedelta=last)
    t0 = truth[name].sel(level=level).sel(time=inits[0] + last)
    short = {'geopotential': 'z', 'temperature': 't'}.get(name, name)
    plots.plot_maps(t0, f0, os.path.join(out, f'map_{short}{level}_{hours}h.png'),
                    title=f'{plots.display_units(name, t0.attrs.get("units", ""))[1]} '
                    f'{level} hPa, +{hours} h from {str(inits[0])[:16]}')
  return {'rmse': rmse, 'acc': acc, 'table': table, 'acc_table': acc_table,
          'output_dir': out}


_training_spec = inference.training_spec


def main(argv):
  """absl main: evaluates --workdir; any error is one line on stderr with exit status 1.

  `--verbose` adds the traceback.
  """
  del argv
  allocator.retain_freed_memory()
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads at INFO
  if not FLAGS.workdir:
    print('evaluate: error: --workdir is required', file=sys.stderr)
    sys.exit(1)

  def work():
    result = evaluate(FLAGS.workdir, FLAGS.output_dir, data_path=FLAGS.data,
                      split=FLAGS.split, max_lead=FLAGS.max_lead,
                      init_every=FLAGS.init_every, leads=tuple(FLAGS.leads))
    print(result['table'])
    print()
    print(result['acc_table'])
    print(f'scores and figures written to {result["output_dir"]}')

  sys.exit(errors.run_main('evaluate', work))


def run():
  """Entry point of tools/evaluate.py."""
  define_flags()
  help_lib.declare_key_flags(__name__)  # --help lists --workdir, --output_dir, ...
  app.run(main)
