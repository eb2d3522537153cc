"""Trains the small spherical CNN classifier of gin/classifier_small.gin on the shared loop.

  python tools/classifier_example.py [--workdir=runs/classifier] \
      [--gin_param='sphere_plugin.train.train.num_steps=100']

The task is `sphere_plugin.examples.classifier_task.ClassifierTask` (synthetic
bump fields, 4 classes) on `sphere_plugin.train.train`, so the run has what
every run has: checkpoints, resume, metrics.jsonl. Prints the test accuracy
and how often predictions stay the same when every test field is rotated by a
random rotation (spectrally, so the rotated inputs are exact). Without
--workdir the run goes to a temporary directory, removed at the end.
"""

import json
import os
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging
import gin

from sphere_plugin.examples import classifier_task
from sphere_plugin.io import errors
from sphere_plugin.train import loop

_GIN_FILE = flags.DEFINE_multi_string('gin_file', ['gin/classifier_small.gin'], 'gin files.')
_GIN_PARAM = flags.DEFINE_multi_string(
    'gin_param', [], "gin bindings, e.g. 'sphere_plugin.train.train.num_steps=50'.")
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: a temporary one).')


def _run() -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_PARAM.value)
  with tempfile.TemporaryDirectory(prefix='classifier_') as tmp:
    workdir = _WORKDIR.value or tmp
    loop.train(workdir)
    with open(os.path.join(workdir, classifier_task.TEST_METRICS_FILE)) as f:
      m = json.load(f)
  print(f"test accuracy {m['test_accuracy']:.3f} (chance 0.25); rotated test accuracy "
        f"{m['rotated_test_accuracy']:.3f}; predictions unchanged by rotation: "
        f"{m['rotation_agreement']:.3f}")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return errors.run_main('classifier_example', _run)


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
