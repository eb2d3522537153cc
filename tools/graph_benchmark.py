"""Benchmark: a ChebConv graph layer beside a spectral SpinSphericalConv on HEALPix.

Run from the repository root:

  .venv/bin/python tools/graph_benchmark.py                  # nside 32, 64
  .venv/bin/python tools/graph_benchmark.py --nsides=32 --repeats=3

What is timed: one forward + backward pass, i.e. `jax.grad` of
sum(|y|^2) with respect to the layer's parameters and its input, under
`jax.jit`, with `jax.block_until_ready`, after one warm-up call (compilation,
graph construction and transform tables excluded); the minimum over
--repeats runs, in milliseconds. float32, batch --batch (4), --channels (16)
in and out, spin 0, input real (*batch, 12 nside^2, 1, C) in RING order,
output on the same grid:

* ChebConv: K = --cheb_terms (4) Chebyshev terms (3 applications of the
  Laplacian), combinatorial Laplacian, k = 8, 20, 40 neighbours.
* SpinSphericalConv: spins (0,) -> (0,), input_grid = output_grid = the
  HEALPix grid, lmax = 2 nside (the layers' default on HEALPix), full
  filters: one forward transform (with HEALPix iterative refinement) and one
  inverse transform per call.

The table's last column is the spectral time divided by the ChebConv time
(> 1: the graph layer is faster).
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import nn as snn
from sphere_plugin.nn import graph_layers

_NSIDES = flags.DEFINE_list('nsides', ['32', '64'], 'HEALPix nsides.')
_KS = flags.DEFINE_list('ks', ['8', '20', '40'], 'Graph neighbour counts.')
_BATCH = flags.DEFINE_integer('batch', 4, 'Batch size.')
_CHANNELS = flags.DEFINE_integer('channels', 16, 'Input and output channels.')
_TERMS = flags.DEFINE_integer('cheb_terms', 4, 'Chebyshev terms K.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs (minimum reported).')


def _time(module, x):
  v = module.init(jax.random.key(0), x)

  @jax.jit
  def step(params, x):
    def loss(p, x):
      return jnp.sum(jnp.abs(module.apply({'params': p}, x)) ** 2)
    return jax.grad(loss, argnums=(0, 1))(params, x)

  jax.block_until_ready(step(v['params'], x))
  best = np.inf
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(step(v['params'], x))
    best = min(best, time.perf_counter() - start)
  return best * 1e3


def main(argv):
  del argv
  c, b = _CHANNELS.value, _BATCH.value
  print(f'device: {jax.devices()[0].device_kind}; batch {b}, {c} -> {c} channels, float32, '
        f'forward + backward, min of {_REPEATS.value}\n')
  print('| nside | pixels | layer | ms | spectral / this |')
  print('|---|---|---|---|---|')
  for nside in map(int, _NSIDES.value):
    grid = f'healpix:{nside}'
    x = jnp.asarray(np.random.default_rng(0).normal(size=(b, 12 * nside**2, 1, c)), jnp.float32)
    spec = _time(snn.SpinSphericalConv(c, input_grid=grid, output_grid=grid), x)
    rows = [(f'SpinSphericalConv (lmax {snn.default_lmax(grid)})', spec)]
    for k in map(int, _KS.value):
      conv = graph_layers.ChebConv(c, grid=grid, K=_TERMS.value, k=k)
      rows.append((f'ChebConv K={_TERMS.value}, k={k}', _time(conv, x)))
    for name, ms in rows:
      print(f'| {nside} | {12 * nside**2} | {name} | {ms:.2f} | {spec / ms:.2f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
