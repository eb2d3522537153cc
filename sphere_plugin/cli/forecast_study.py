"""The forecasting study: spherical CNN, planar CNN, graph network and dinosaur, side by side.

    python tools/forecast_study.py --gin_file=gin/forecast_study.gin --output_dir=runs/study

Trains every model of `sphere_plugin.weather.study.StudyConfig` for every seed
(resume-safe: run the same command again after an interruption), scores them
with persistence, climatology and the physics baseline on the held-out split,
and writes study.md, table.csv, scores.nc, rollout.csv, ke_spectrum.csv and the
figures to --output_dir (see sphere_plugin/weather/study.py). Any failure is
one line on stderr, `forecast_study: error: <message>`, with exit status 1
(`--verbose` adds the traceback).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import gin

from sphere_plugin.io import allocator
from sphere_plugin.io import errors
from sphere_plugin.io import flag_help as help_lib
from sphere_plugin.weather import study

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags (only when run as a tool, so importing is free)."""
  flags.DEFINE_multi_string('gin_file', [], 'Study gin files (StudyConfig bindings).')
  flags.DEFINE_multi_string('gin_param', [], 'Extra gin bindings of the study.')
  flags.DEFINE_string('output_dir', None, 'Where the runs, tables and figures go.')


def main(argv):
  """absl main: runs the study; any error is one line on stderr with exit status 1."""
  del argv
  allocator.retain_freed_memory()
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if not FLAGS.output_dir:
    print('forecast_study: error: --output_dir is required', file=sys.stderr)
    sys.exit(1)

  def work():
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    cfg = study.StudyConfig()
    summary = study.run(cfg, FLAGS.output_dir)
    with open(f'{FLAGS.output_dir}/study.md', encoding='utf-8') as f:
      print(f.read())
    print(f'study written to {FLAGS.output_dir} in {summary["wall_seconds"] / 60:.1f} min')

  sys.exit(errors.run_main('forecast_study', work))


def run():
  """Entry point of tools/forecast_study.py."""
  define_flags()
  help_lib.declare_key_flags(__name__)
  app.run(main)
