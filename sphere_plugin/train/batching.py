"""Seeded, resumable batching and background prefetching, shared by every task.

`batch_rows` makes batch `step` a pure function of (seed, step), so a resumed run
sees the batches an uninterrupted one would; `BatchIterator` prepares batches on
a background thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np



# ----------------------------------------------------------------------------
# Background prefetching.


class BatchIterator:
  """An iterator fed by a background thread (`prefetch` items ahead).

  Exceptions raised while producing re-raise in the consumer; `close()` (also
  on garbage collection or leaving a `with` block) stops the thread.
  """

  _ITEM, _END, _ERROR = 0, 1, 2

  def __init__(self, source: Iterator, prefetch: int):
    self._source = source
    self._done = False
    self._thread = None
    if prefetch <= 0:
      return
    self._queue = queue.Queue(maxsize=prefetch)
    self._stop = threading.Event()
    # The thread must not hold `self`, so that dropping the iterator closes it.
    self._thread = threading.Thread(target=_produce,
                                    args=(source, self._queue, self._stop),
                                    name='weather-prefetch', daemon=True)
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._done:
      raise StopIteration
    if self._thread is None:
      try:
        return next(self._source)
      except BaseException:
        self._done = True
        raise
    kind, value = self._queue.get()
    if kind == self._ITEM:
      return value
    self.close()
    if kind == self._ERROR:
      raise value
    raise StopIteration

  def close(self) -> None:
    """Stops the background thread (after the batch it is reading, if any)."""
    self._done = True
    if self._thread is not None:
      self._stop.set()
      if self._thread is not threading.current_thread():
        self._thread.join(timeout=60)
    elif hasattr(self._source, 'close'):
      self._source.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


def _produce(source: Iterator, out: queue.Queue, stop: threading.Event) -> None:
  """Prefetch thread body: moves items of `source` into `out` until `stop`."""

  def put(item) -> bool:
    while not stop.is_set():
      try:
        out.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in source:
      if not put((BatchIterator._ITEM, item)):  # pylint: disable=protected-access
        return
    put((BatchIterator._END, None))  # pylint: disable=protected-access
  except BaseException as e:  # pylint: disable=broad-except
    put((BatchIterator._ERROR, e))  # pylint: disable=protected-access
  finally:
    if hasattr(source, 'close'):
      source.close()


def epoch_rng(seed: int, step: int, per_epoch: int) -> tuple[np.random.Generator, int]:
  """The shuffling rule every task shares: epoch e = step // per_epoch, seeded by (seed, e).

  Returns:
    (the epoch's generator, the step's offset within the epoch). A task draws
    its epoch's batch order from the generator and takes batch `offset`, so
    batch `step` is a pure function of (seed, step) and a resumed run sees the
    batches an uninterrupted one would.
  """
  epoch, offset = divmod(int(step), int(per_epoch))
  return np.random.default_rng([int(seed), epoch]), offset


def batch_rows(num_windows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Window rows of training batch `step`: a pure function of its arguments.

  Epoch e = step // R (R = num_windows // batch_size) permutes the windows with
  a generator seeded by (seed, e) (`epoch_rng`); batch `step` takes rows
  [r*B, (r+1)*B) of that permutation, r = step % R.

  Returns:
    (batch_size,) int64 indices into the split's window list.
  """
  per_epoch = num_windows // batch_size
  if per_epoch < 1:
    raise ValueError(f'{num_windows} windows make no batch of {batch_size}')
  rng, r = epoch_rng(seed, step, per_epoch)
  perm = rng.permutation(num_windows)
  return perm[r * batch_size:(r + 1) * batch_size].astype(np.int64)
