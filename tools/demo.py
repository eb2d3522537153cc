"""The main job (`make demo`): make the data, train the small forecaster, evaluate.

1. Generates the embedded Held-Suarez dataset on first use (about 4 minutes;
   cached under .cache/data/ afterwards).
2. Trains `gin/forecaster_small.gin` in `--workdir` (default runs/forecaster_small).
   Running again resumes; a finished run is not retrained.
3. Evaluates on the held-out test trajectory against persistence and
   climatology, prints the skill table and writes scores and figures to
   `<workdir>/evaluation`.

Flags: --workdir, --gin_file (default gin/forecaster_small.gin), --gin_param.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR = flags.DEFINE_string('workdir', os.path.join(REPO, 'runs', 'forecaster_small'),
                               'Training run directory.')
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [os.path.join(REPO, 'gin',
                                                                'forecaster_small.gin')],
                                      'gin config files.')
_GIN_PARAM = flags.DEFINE_multi_string('gin_param', [], 'Extra gin bindings.')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  import gin  # pylint: disable=g-import-not-at-top
  from sphere_plugin.cli import evaluate  # pylint: disable=g-import-not-at-top
  from sphere_plugin.weather import held_suarez  # pylint: disable=g-import-not-at-top
  from sphere_plugin.train import loop  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  print('[1/3] embedded dataset (Held-Suarez, T21, gaussian:64x32, 6-hourly)', flush=True)
  path = held_suarez.make_dataset(progress=True)
  print(f'      {path} ({time.time() - t0:.0f} s)', flush=True)

  t1 = time.time()
  print(f'[2/3] training {", ".join(_GIN_FILE.value)} in {_WORKDIR.value}', flush=True)
  gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_PARAM.value)
  loop.train(_WORKDIR.value)
  print(f'      trained ({time.time() - t1:.0f} s)', flush=True)

  t2 = time.time()
  print('[3/3] evaluation on the test trajectory (initial times every 12 h)', flush=True)
  result = evaluate.evaluate(_WORKDIR.value)
  print(f'      evaluated ({time.time() - t2:.0f} s)\n')
  print('Latitude-weighted RMSE on the held-out test trajectory:')
  print(result['table'])
  print()
  print(result['acc_table'])
  print(f'\nScores (scores.nc, skill.txt) and figures (rmse_vs_lead.png, maps) written to '
        f'{result["output_dir"]}')
  print(f'Total wall time {time.time() - t0:.0f} s.')


if __name__ == '__main__':
  try:
    app.run(main)
  except KeyboardInterrupt:
    sys.exit(130)
