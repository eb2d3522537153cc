"""Waiting for in-flight writes, so a clean-up never races a writer still running.

When a write fails (a full disk) or a signal interrupts the main thread, the
threads that write zarr chunks keep going: zarr runs chunk writes as asyncio
tasks on its own I/O thread (a failed `gather` does not stop its siblings,
and each chunk write recreates its parent directories), and dask's threaded
scheduler keeps its workers running. Removing a partial output then leaves a
chunk behind. `settled()` runs dask on a pool of our own and, on leaving the
block (success or not), joins that pool and waits until zarr's I/O loop has no
task left; only then may the partial be removed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os

import dask


async def _no_tasks_left() -> None:
  me = asyncio.current_task()
  while True:
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if not pending:
      return
    await asyncio.wait(pending)


def wait_for_zarr() -> None:
  """Blocks until zarr's I/O loop has finished every task (no-op if it never ran)."""
  try:
    from zarr.core import sync as zarr_sync  # pylint: disable=g-import-not-at-top
  except ImportError:  # zarr 2 writes synchronously in the calling thread
    return
  loop = getattr(zarr_sync, 'loop', [None])[0]
  if loop is None or loop.is_closed() or not loop.is_running():
    return
  asyncio.run_coroutine_threadsafe(_no_tasks_left(), loop).result()


def _uninterrupted(fn) -> None:
  """Runs fn to the end even if a signal's exception arrives meanwhile; re-raises it."""
  stopped = None
  while True:
    try:
      fn()
      break
    except KeyboardInterrupt as e:  # interrupts.Interrupted: wait again, then stop
      stopped = stopped or e
  if stopped is not None:
    raise stopped


@contextlib.contextmanager
def settled():
  """Within the block dask computes on our pool; on exit every writer has stopped."""
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                               thread_name_prefix='regrid-dask')
  try:
    with dask.config.set(pool=pool):
      yield
  finally:
    _uninterrupted(lambda: pool.shutdown(wait=True, cancel_futures=True))
    _uninterrupted(wait_for_zarr)
