"""Training throughput of gin configs: steps/s, samples/s, peak memory.

    python tools/train_benchmark.py [--configs=gin/forecaster_small.gin,gin/forecaster.gin]
                                    [--steps=10]
    python tools/train_benchmark.py --configs=gin/qm9_small.gin,gin/qm9.gin --steps=20
    python tools/train_benchmark.py --configs=gin/forecaster_small.gin --steps=30 \
        --against=/path/to/other/checkout --rounds=3

Each config runs in its own process (so peak memory is its own): the task is
the gin file's `train.task`, the jitted data-parallel train step of
`sphere_plugin.train` is compiled on the first batch of every distinct batch
shape among the timed ones (QM9 pads molecules to a few size buckets; the
forecaster has one shape), then `--steps` steps are timed (each waited for,
batches drawn beforehand from the task's iterator). Samples are forecast
windows or molecules. Peak memory is the process's maximum resident set size
(data, compiled programs and buffers together). Prints one line per config
and the time per sample relative to the first.

Steps/s is the mean over the timed steps, as before; the median step time is
printed beside it because a shared machine's pauses land in the mean.

`--against=DIR` compares this checkout with another one (a `git worktree` of
an older commit, say) on the same machine in the same run: the two run
alternately, `--rounds` times each (A B A B ...), so that drifts in the
machine's speed fall on both, each config resolved in its own checkout (a
note is printed where the two gin files differ). The other checkout's
`sphere_plugin` is imported through PYTHONPATH, and the child process checks
that it was. Prints every round and the ratio of the pooled median step
times (other / this: >1 means this checkout is faster).
"""

from __future__ import annotations

import copy
import filecmp
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(gin_file: str, steps: int) -> dict:
  """Runs in a child process: build, compile, time `steps` train steps."""
  import gin  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import sphere_plugin  # pylint: disable=g-import-not-at-top
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
  times = []
  for i in range(steps):
    t = time.perf_counter()
    state, metrics, _ = step(state, batch(i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  dt = sum(times)
  if step._cache_size() != len(shapes):  # pylint: disable=protected-access
    raise RuntimeError(f'the train step compiled {step._cache_size()} times for '  # pylint: disable=protected-access
                       f'{len(shapes)} batch shapes')
  rollout = getattr(task, 'rollout_steps', 1)
  return {'config': os.path.relpath(gin_file, REPO), 'params': int(n_params),
          'batch': int(batch_size), 'rollout_steps': int(rollout),
          'compile_s': compile_s, 'shapes': len(shapes), 'steps_per_s': steps / dt,
          'samples_per_s': steps * batch_size / dt,
          'median_step_ms': float(np.median(times)) * 1e3,
          'step_ms': [t * 1e3 for t in times],
          'package': os.path.dirname(os.path.abspath(sphere_plugin.__file__)),
          'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'device': jax.devices()[0].platform, 'devices': jax.device_count()}


def _run(config: str, steps: int, checkout: str) -> dict:
  """One child process timing `config` with the code of `checkout`."""
  path = config if os.path.isabs(config) else os.path.join(checkout, config)
  env = dict(os.environ)
  if checkout != REPO:
    env['PYTHONPATH'] = os.pathsep.join(p for p in (checkout, env.get('PYTHONPATH')) if p)
  out = subprocess.run([sys.executable, __file__, f'--child={path}', f'--steps={steps}'],
                       capture_output=True, text=True, check=False, cwd=checkout, env=env)
  if out.returncode:
    print(f'{config} ({checkout}): failed\n{out.stderr[-2000:]}', file=sys.stderr)
    sys.exit(1)
  r = json.loads(out.stdout.strip().splitlines()[-1])
  want = os.path.join(os.path.realpath(checkout), 'sphere_plugin')
  if checkout != REPO and os.path.realpath(r['package']) != want:
    print(f'{config}: the child imported sphere_plugin from {r["package"]}, not {want}; '
          'does something on sys.path come before PYTHONPATH?', file=sys.stderr)
    sys.exit(1)
  return r


def _compare(configs, steps: int, other: str, rounds: int) -> None:
  """Alternate runs of this checkout and `other`; print rounds and median ratios."""
  other = os.path.realpath(other)
  if not os.path.isdir(os.path.join(other, 'sphere_plugin')):
    print(f'--against={other}: no sphere_plugin package there', file=sys.stderr)
    sys.exit(2)
  print(f'This checkout ({REPO}) against {other}: {rounds} alternating rounds, '
        f'{steps} timed steps each')
  for config in configs:
    if not os.path.isabs(config):
      a, b = os.path.join(REPO, config), os.path.join(other, config)
      if os.path.exists(b) and not filecmp.cmp(a, b, shallow=False):
        print(f'note: {config} differs between the checkouts; each runs its own')
    this, that = [], []
    for k in range(rounds):
      this.append(_run(config, steps, REPO))
      that.append(_run(config, steps, other))
      print(f'  {config} round {k + 1}: steps/s this {this[-1]["steps_per_s"]:.2f} '
            f'(median step {this[-1]["median_step_ms"]:.0f} ms), other '
            f'{that[-1]["steps_per_s"]:.2f} ({that[-1]["median_step_ms"]:.0f} ms), '
            f'other/this median step {that[-1]["median_step_ms"] / this[-1]["median_step_ms"]:.2f}x',
            flush=True)
    med = lambda rs: float(np.median([t for r in rs for t in r['step_ms']]))
    ratios = [b['median_step_ms'] / a['median_step_ms'] for a, b in zip(this, that)]
    means = [a['steps_per_s'] / b['steps_per_s'] for a, b in zip(this, that)]
    print(f'| {config} | median step ms this {med(this):.0f} / other {med(that):.0f} | '
          f'speed-up {med(that) / med(this):.2f}x (per round {min(ratios):.2f}-{max(ratios):.2f}; '
          f'from mean steps/s {min(means):.2f}-{max(means):.2f}) |')


def main() -> None:
  args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:] if '=' in a)
  if 'child' in args:
    print(json.dumps(measure(args['child'], int(args.get('steps', 10)))))
    return
  configs = args.get('configs', 'gin/forecaster_small.gin,gin/forecaster.gin').split(',')
  steps = int(args.get('steps', 10))
  if steps < 1 or int(args.get('rounds', 3)) < 1:
    print('--steps and --rounds must be at least 1', file=sys.stderr)
    sys.exit(2)
  if 'against' in args:
    _compare(configs, steps, args['against'], int(args.get('rounds', 3)))
    return
  results = [_run(config, steps, REPO) for config in configs]
  print(f'Training throughput ({steps} timed steps after compilation, '
        f'{results[0]["devices"]} {results[0]["device"]} device(s))')
  print('| config | params | batch | rollout k | batch shapes | compile s per shape | steps/s | '
        'median step ms | samples/s | peak RSS MiB | time per sample vs first |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  base = results[0]['samples_per_s']
  for r in results:
    print(f'| {r["config"]} | {r["params"]:,} | {r["batch"]} | {r["rollout_steps"]} | '
          f'{r["shapes"]} | {r["compile_s"]:.1f} | {r["steps_per_s"]:.2f} | '
          f'{r["median_step_ms"]:.0f} | {r["samples_per_s"]:.1f} | '
          f'{r["peak_rss_mib"]:.0f} | {base / r["samples_per_s"]:.1f}x |')


if __name__ == '__main__':
  main()
