"""Training throughput of gin configs: steps/s, samples/s, peak memory.

    python tools/train_benchmark.py [--configs=gin/forecaster_small.gin,gin/forecaster.gin]
                                    [--steps=10]
    python tools/train_benchmark.py --configs=gin/qm9_small.gin,gin/qm9.gin --steps=20

Each config runs in its own process (so peak memory is its own): the task is
the gin file's `train.task`, the jitted data-parallel train step of
`sphere_plugin.train` is compiled on the first batch of every distinct batch
shape among the timed ones (QM9 pads molecules to a few size buckets; the
forecaster has one shape), then `--steps` steps are timed (each waited for,
batches drawn beforehand from the task's iterator). Samples are forecast
windows or molecules. Peak memory is the process's maximum resident set size
(data, compiled programs and buffers together). Prints one line per config
and the time per sample relative to the first.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(gin_file: str, steps: int) -> dict:
  """Runs in a child process: build, compile, time `steps` train steps."""
  import gin  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from sphere_plugin.io import allocator  # pylint: disable=g-import-not-at-top
  from sphere_plugin.train import loop  # pylint: disable=g-import-not-at-top
  from sphere_plugin.train import task as task_lib  # pylint: disable=g-import-not-at-top
  if os.environ.get('SPHERE_PLUGIN_RETAIN_FREED_MEMORY', '1') != '0':
    allocator.retain_freed_memory()
  gin.parse_config_files_and_bindings([gin_file], [])
  batch_size = gin.query_parameter('sphere_plugin.train.train.batch_size')
  # deepcopy evaluates the @Task() reference, as loop.task_from_config does.
  task = task_lib.as_task(copy.deepcopy(gin.query_parameter('sphere_plugin.train.train.task')))
  tx = loop.optimizer(num_steps=1000)
  mesh = loop.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.jit(lambda: loop.create_state(task, tx, seed=0), out_shardings=replicated)()
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  step = loop.make_train_step(task, tx, mesh)
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  batches = task.train_batches(batch_size, seed=0, start_step=0, process_index=0,
                               process_count=1)
  drawn = [next(batches) for _ in range(steps)]
  batch = lambda i: loop._global_batch(drawn[i], rows, batch_size, i)  # pylint: disable=protected-access
  shapes = {}
  for i, b in enumerate(drawn):
    shapes.setdefault(tuple(sorted((k, v.shape) for k, v in b.items())), i)
  t = time.perf_counter()
  for i in shapes.values():  # compile each shape once
    state, metrics, _ = step(state, batch(i))
    jax.block_until_ready(metrics)
  compile_s = (time.perf_counter() - t) / len(shapes)
  t = time.perf_counter()
  for i in range(steps):
    state, metrics, _ = step(state, batch(i))
    jax.block_until_ready(metrics)
  dt = time.perf_counter() - t
  if step._cache_size() != len(shapes):  # pylint: disable=protected-access
    raise RuntimeError(f'the train step compiled {step._cache_size()} times for '  # pylint: disable=protected-access
                       f'{len(shapes)} batch shapes')
  rollout = getattr(task, 'rollout_steps', 1)
  return {'config': os.path.relpath(gin_file, REPO), 'params': int(n_params),
          'batch': int(batch_size), 'rollout_steps': int(rollout),
          'compile_s': compile_s, 'shapes': len(shapes), 'steps_per_s': steps / dt,
          'samples_per_s': steps * batch_size / dt,
          'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'device': jax.devices()[0].platform, 'devices': jax.device_count()}


def main() -> None:
  args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:] if '=' in a)
  if 'child' in args:
    print(json.dumps(measure(args['child'], int(args.get('steps', 10)))))
    return
  configs = args.get('configs', 'gin/forecaster_small.gin,gin/forecaster.gin').split(',')
  steps = int(args.get('steps', 10))
  results = []
  for config in configs:
    path = config if os.path.isabs(config) else os.path.join(REPO, config)
    out = subprocess.run([sys.executable, __file__, f'--child={path}', f'--steps={steps}'],
                         capture_output=True, text=True, check=False, cwd=REPO)
    if out.returncode:
      print(f'{config}: failed\n{out.stderr[-2000:]}', file=sys.stderr)
      sys.exit(1)
    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(f'Training throughput ({steps} timed steps after compilation, '
        f'{results[0]["devices"]} {results[0]["device"]} device(s))')
  print('| config | params | batch | rollout k | batch shapes | compile s per shape | steps/s | '
        'samples/s | peak RSS MiB | time per sample vs first |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  base = results[0]['samples_per_s']
  for r in results:
    print(f'| {r["config"]} | {r["params"]:,} | {r["batch"]} | {r["rollout_steps"]} | '
          f'{r["shapes"]} | {r["compile_s"]:.1f} | {r["steps_per_s"]:.2f} | {r["samples_per_s"]:.1f} | '
          f'{r["peak_rss_mib"]:.0f} | {base / r["samples_per_s"]:.1f}x |')


if __name__ == '__main__':
  main()
