"""The training loop's messages: `train: ...` lines on stderr (process 0) and in absl logs."""

from __future__ import annotations

import sys

from absl import logging
import jax
import tqdm


def say(message: str) -> None:
  """An informational line, `train: <message>`, that does not break a progress bar."""
  logging.info(message)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f'train: {message}', file=sys.stderr)


def warn(message: str) -> None:
  """A warning line, `train: warning: <message>`."""
  logging.warning(message)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f'train: warning: {message}', file=sys.stderr)
