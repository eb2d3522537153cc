"""Graph Laplacian equivariance error versus degree (the DeepSphere v2 figure).

Run from the repository root:

  .venv/bin/python tools/graph_equivariance.py            # nside 16 and 32, k 8/20/40
  .venv/bin/python tools/graph_equivariance.py --nsides=8 --output=/tmp/eq.png

For each nside and k it builds the HEALPix k-NN graph with the stored kernel
width (`graph.kernel_width_for`, i.e. `graph.KERNEL_WIDTHS`) and computes, for
every degree l = 1..3*nside-1, the combinatorial Laplacian's equivariance
error E_l (`graph.equivariance_errors`: the fraction of ||L f|| outside degree
l for 16 random signals f of pure degree l, projection by least squares onto
the sampled degree-l harmonics). It also shows k = 8 with the 2018
DeepSphere heuristic width (half the mean squared neighbour distance) for
comparison. Writes the figure (matplotlib, Agg) and prints a markdown table:
E_l at a few degrees, and its mean over l = 1..2*nside (the range the kernel
widths were fitted on) and over l = 1..3*nside-1. About a minute on 2 CPU
cores.
"""

from __future__ import annotations

import os
import time

from absl import app
from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from sphere_plugin.nn import graph  # pylint: disable=g-import-not-at-top,wrong-import-position

_NSIDES = flags.DEFINE_list('nsides', ['16', '32'], 'HEALPix nsides.')
_KS = flags.DEFINE_list('ks', ['8', '20', '40'], 'Neighbour counts k.')
_OUTPUT = flags.DEFINE_string('output', 'docs/graph_laplacian_equivariance.png', 'PNG path.')


def main(argv):
  del argv
  ks = [int(k) for k in _KS.value]
  nsides = [int(n) for n in _NSIDES.value]
  fig, axes = plt.subplots(1, len(nsides), figsize=(5.5 * len(nsides), 4), squeeze=False)
  header = ('| nside | k | t | ' + ' | '.join(f'E_l l={l}' for l in ('1', 'ns/2', 'ns', '2ns',
                                                                       '3ns-1'))
            + ' | mean l<=2ns | mean l<=3ns-1 |')
  rows = []
  for ax, nside in zip(axes[0], nsides):
    start = time.time()
    grid = f'healpix:{nside}'
    degrees = np.arange(1, 3 * nside)
    cases = [(f'k={k}', k, graph.kernel_width_for(grid, k)) for k in ks]
    if 8 in ks:
      cases.append(('k=8, 2018 width', 8, 0.5 * graph.mean_neighbor_distance_squared(grid, 8)))
    errs = graph.equivariance_errors([graph.sphere_graph(grid, k, t) for _, k, t in cases],
                                     degrees)
    for (label, k, t), e in zip(cases, errs):
      style = '--' if '2018' in label else '-'
      ax.semilogy(degrees, e, style, label=f'{label} (t={t:.3g})')
      at = [e[l - 1] for l in (1, max(1, nside // 2), nside, 2 * nside, 3 * nside - 1)]
      rows.append(f'| {nside} | {label[2:]} | {t:.3g} | ' + ' | '.join(f'{v:.4f}' for v in at)
                  + f' | {e[:2 * nside].mean():.4f} | {e.mean():.4f} |')
    ax.axvline(2 * nside, color='gray', lw=0.5)
    ax.set_title(f'HEALPix nside {nside}: combinatorial Laplacian')
    ax.set_xlabel('spherical harmonic degree l')
    ax.set_ylabel('equivariance error E_l')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    print(f'nside {nside}: {time.time() - start:.1f} s', flush=True)
  fig.tight_layout()
  os.makedirs(os.path.dirname(_OUTPUT.value) or '.', exist_ok=True)
  fig.savefig(_OUTPUT.value, dpi=110)
  print(f'wrote {_OUTPUT.value}\n')
  print(header)
  print('|' + '---|' * (header.count('|') - 1))
  print('\n'.join(rows))


if __name__ == '__main__':
  app.run(main)
