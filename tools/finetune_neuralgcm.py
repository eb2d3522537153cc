"""Fine-tune a spherical CNN encoder inside NeuralGCM's toy model, then forecast.

The work is `sphere_plugin.neuralgcm.finetune.finetune_and_forecast`; this is its
command line.

    python tools/finetune_neuralgcm.py --output=runs/neuralgcm/forecast.nc

Loads NeuralGCM's shipped TL63 stochastic 'mini' checkpoint through the
restricted unpickler, replaces the encoder's tower with a `SphericalCNNTower`
by gin (the lines printed at start; `--gin_param` adds more), initialises the
new parameters and keeps all others, trains the new encoder tower for
`--steps` Adam steps to reconstruct NeuralGCM's ERA5 snapshot (1959-01-02T00,
TL63) through encode -> decode, then runs a `--days` forecast with the
modified model and writes it as a WeatherBench2-format netCDF Dataset
(`time` = initialisation, `prediction_timedelta` = lead, (level, longitude,
latitude) on the model's data grid), written to a temporary path and renamed.
Errors are one line on stderr with exit status 1.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging

from sphere_plugin.io import errors
from sphere_plugin.neuralgcm.finetune import finetune_and_forecast  # noqa: F401 (tests call it here)

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags (only when run as a tool, so importing this module
  never collides with flags other modules define)."""
  flags.DEFINE_string('output', None, 'Forecast netCDF path (WB2 format).')
  flags.DEFINE_string('checkpoint', None,
                      "NeuralGCM checkpoint pickle; default NeuralGCM's toy TL63.")
  flags.DEFINE_integer('steps', 20, 'Adam steps on the encoder tower.')
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.')
  flags.DEFINE_float('days', 2.0, 'Forecast length in days.')
  flags.DEFINE_integer('output_hours', 6, 'Hours between forecast outputs.')
  flags.DEFINE_list('features', ['8'], 'Backbone channels per stage.')
  flags.DEFINE_integer('lmax', 31, 'Degree limit of the backbone stages.')
  flags.DEFINE_bool('physics_tower', False,
                    'Also put an (untrained) SphericalCNNTower in the learned physics.')
  flags.DEFINE_integer('seed', 0, 'Random seed (initialisation and encoder noise).')
  flags.DEFINE_multi_string('gin_param', [], 'Extra gin bindings for the model.')


def main(argv) -> int:
  """absl main; one-line errors, exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # NeuralGCM logs every module construction at INFO
  if not FLAGS.output:
    return errors.fail('finetune_neuralgcm', '--output is required')
  try:
    features = tuple(int(f) for f in FLAGS.features)
    finetune_and_forecast(
        FLAGS.output, FLAGS.checkpoint, FLAGS.steps, FLAGS.learning_rate, FLAGS.days,
        FLAGS.output_hours, dict(features=features, lmaxes=(FLAGS.lmax,) * len(features)),
        FLAGS.physics_tower, FLAGS.seed, FLAGS.gin_param)
  except Exception as e:  # pylint: disable=broad-except
    return errors.fail('finetune_neuralgcm', errors.message(e, where=True))
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
