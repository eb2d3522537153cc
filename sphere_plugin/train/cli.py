"""Command line of the training loop (`tools/train.py`).

    python tools/train.py --gin_file=gin/toy.gin --workdir=/tmp/toy \
        [--gin_param='sphere_plugin.train.train.num_steps=500'] [--distributed]

Parses the gin files and bindings, then runs `sphere_plugin.train.train(workdir)`.
Running the same command again resumes from the workdir's last checkpoint.
`--distributed` calls `jax.distributed.initialize()` first (one process per
host; the cluster is found from the environment, e.g. SLURM or Cloud TPU).
Errors (bad config, divergence, a failing task) are one line on stderr, with
where they were raised, and exit status 1;
SIGTERM saves a checkpoint and exits with status 0.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging

from sphere_plugin.io import allocator
from sphere_plugin.io import errors
from sphere_plugin.io import flag_help as help_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines --gin_file, --gin_param, --workdir, --distributed (once per process)."""
  if 'workdir' not in FLAGS:
    flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, config.gin.')
  if 'gin_file' not in FLAGS:
    flags.DEFINE_multi_string('gin_file', [], 'gin config files (may import modules).')
  if 'gin_param' not in FLAGS:
    flags.DEFINE_multi_string('gin_param', [],
                              "gin bindings, e.g. 'sphere_plugin.train.train.num_steps=10'.")
  if 'distributed' not in FLAGS:
    flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host).')


def _error(text: str) -> int:
  return errors.fail('train', text)


def gin_error(e: BaseException) -> str:
  """One line for a gin parse error: its message plus where it is (file and line).

  gin puts the location on later lines ('  In file "x.gin", line 2' and the
  offending text); SyntaxErrors carry it as attributes.
  """
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  first = f'{type(e).__name__}: {lines[0]}' if lines else type(e).__name__
  where = next((i for i, l in enumerate(lines) if l.startswith('In ')), None)
  if where is not None:
    text = f': {lines[where + 1]}' if where + 1 < len(lines) else ''
    return f'{first} ({lines[where][3:]}{text})'
  return first


def main(argv) -> int:
  """absl main: trains; returns the exit status (1 with a one-line error)."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    return _error('--workdir is required')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  import gin  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed:
    jax.distributed.initialize()
  try:
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
  except Exception as e:  # pylint: disable=broad-except  (gin raises many kinds)
    return _error(f'bad gin config: {gin_error(e)}')
  from sphere_plugin.train import loop  # pylint: disable=g-import-not-at-top
  try:
    loop.train(FLAGS.workdir)
  except FloatingPointError as e:
    return _error(str(e).strip().splitlines()[0])  # gin appends its call context below
  except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
    return _error(errors.message(e, where=True))
  return 0


def run() -> None:
  """Entry point of tools/train.py."""
  allocator.retain_freed_memory()  # XLA's buffers page-fault less (see allocator)
  define_flags()
  help_lib.declare_key_flags(__name__)  # --help lists --gin_file, --workdir, ...
  app.run(lambda argv: sys.exit(main(argv)))
