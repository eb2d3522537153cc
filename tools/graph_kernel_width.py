"""Fits the HEALPix graph kernel widths t per (nside, k) (sphere_plugin.nn.graph).

Run from the repository root:

  .venv/bin/python tools/graph_kernel_width.py                    # nside 1..32, k 8/20/40
  .venv/bin/python tools/graph_kernel_width.py --nsides=4,8 --ks=8

For each (nside, k) with k < 12 nside^2 it runs `graph.search_kernel_width`: a
grid search over log2 t of the mean, over degrees l = 1..2*nside, of the
combinatorial Laplacian's equivariance error E_l (defined in
`graph.equivariance_errors`; 16 random degree-l signals per degree). It prints
a markdown table (t, t / mean squared k-neighbour chord distance, the mean
error at t, and the seconds the search took) and the Python dict to paste into
`KERNEL_WIDTHS` in sphere_plugin/nn/graph.py. The default set takes ~5 min on
2 shared CPU cores (nside 32: 15-110 s per k). nside 64 (--nsides=64) works but
took over 15 min for one k on that machine, so it is not in the table (other
nsides use the scaling fallback of `graph.kernel_width_for`).
"""

from __future__ import annotations

import time

from absl import app
from absl import flags

from sphere_plugin.nn import graph

_NSIDES = flags.DEFINE_list('nsides', ['1', '2', '4', '8', '16', '32'], 'HEALPix nsides.')
_KS = flags.DEFINE_list('ks', ['8', '20', '40'], 'Neighbour counts k.')


def main(argv):
  del argv
  rows, table = [], {}
  for nside in map(int, _NSIDES.value):
    for k in map(int, _KS.value):
      if k >= 12 * nside**2:
        continue
      start = time.time()
      t, err = graph.search_kernel_width(nside, k)
      secs = time.time() - start
      ratio = t / graph.mean_neighbor_distance_squared(f'healpix:{nside}', k)
      table[(nside, k)] = t
      rows.append(f'| {nside} | {k} | {t:.6g} | {ratio:.4f} | {err:.4f} | {secs:.1f} |')
      print(rows[-1], flush=True)
  print('\n| nside | k | t | t / mean d^2 | mean E_l (l=1..2 nside) | search s |')
  print('|---|---|---|---|---|---|')
  print('\n'.join(rows))
  print('\nKERNEL_WIDTHS = {')
  for (nside, k), t in table.items():
    print(f'    ({nside}, {k}): {t:.6g},')
  print('}')


if __name__ == '__main__':
  app.run(main)
