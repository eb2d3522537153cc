"""What a regridder would need in memory, estimated from the grid sizes alone.

A target such as `healpix:1000000` (1.2e13 pixels) or `gaussian:10000000x5000000`
used to fail deep inside numpy with a MemoryError traceback (or, for a
Gaussian grid, while computing its latitudes: Gauss-Legendre nodes take an
nlat x nlat eigenproblem). `check` sizes every large array before any is
made and refuses with one line, against the same budget as the transform
tables (`sphere_plugin.sht.set_table_budget`, default 4 GiB):

* per grid: its coordinates (per-pixel latitude and longitude on HEALPix;
  the latitude nodes' computation on lat-lon grids) and one float32 field;
* spectral: the transform tables of the source and the target at lmax
  (`sphere_plugin.sht.table_nbytes`);
* sparse methods: the point coordinates and frames of both grids and the
  weight matrix.

The estimates are lower bounds of what is allocated at once (no temporaries),
so a refused regrid would not fit in the budget anyway.
"""

from __future__ import annotations

from sphere_plugin import grids as grids_lib
from sphere_plugin.sht import tables as tables_lib

# Nonzero weights per target cell (conservative: per source and target cell).
_NNZ_PER_CELL = {'nearest': 1, 'bilinear': 4, 'conservative': 4}


def _size(grid: grids_lib.Grid) -> int:
  if isinstance(grid, grids_lib.HealpixGrid):
    return grid.npix
  return int(grid.nlon) * int(grid.nlat)


def grid_nbytes(grid: grids_lib.Grid) -> int:
  """Bytes of a grid's coordinates, computed without building them.

  HEALPix: per-pixel latitude and longitude (2 float64 per pixel). Lat-lon: Gauss-Legendre nodes come from an
  (nlat, nlat) companion-matrix eigenproblem, Fejer weights from an
  (nlat, nlat/2) cosine table; Clenshaw-Curtis needs O(nlat).
  """
  if isinstance(grid, grids_lib.HealpixGrid):
    return 2 * 8 * grid.npix
  n = int(grid.nlat)
  nodes = {'gaussian': 8 * n * n, 'equiangular': 8 * n * (n // 2 + 1)}.get(grid.kind, 8 * n)
  return nodes + 8 * (int(grid.nlon) + n)


def estimate(source: grids_lib.Grid, target: grids_lib.Grid, method: str) -> dict[str, int]:
  """Bytes per part ('the source grid ...', 'the target grid ...', '<method> weights ...').

  Args:
    source, target: Grids.
    method: a regridding method name. Spectral tables are sized by
      `sphere_plugin.sht.table_nbytes` (see `check`).
  """
  parts = {f'the {name} grid {grid} (coordinates and one float32 field)':
           grid_nbytes(grid) + 4 * _size(grid)
           for name, grid in (('source', source), ('target', target))}
  if method != 'spectral':
    nnz = _NNZ_PER_CELL.get(method, 4) * (
        _size(target) + (_size(source) if method == 'conservative' else 0))
    parts[f'{method} weights and points'] = 16 * nnz + 72 * (_size(source) + _size(target))
  return parts


def _human(nbytes: float) -> str:
  for unit in ('GiB', 'TiB', 'PiB', 'EiB'):
    nbytes /= 1024 if unit != 'GiB' else 2**30
    if nbytes < 1024 or unit == 'EiB':
      return f'{nbytes:.2f} {unit}'
  raise AssertionError('unreachable')


def check(source: grids_lib.Grid, target: grids_lib.Grid, method: str,
          lmax: int | None = None) -> None:
  """Raises MemoryError, in one line, when a part of the regridder exceeds the budget.

  Spectral regridders also have their transform tables checked (the message
  then names the largest lmax that fits).
  """
  budget = tables_lib.get_table_budget()
  for what, need in estimate(source, target, method).items():
    if need > budget:
      raise MemoryError(
          f'regridding {source} -> {target} ({method}): {what} would need {_human(need)} '
          f'(budget {_human(budget)}); use a smaller grid, or raise '
          'sphere_plugin.sht.set_table_budget() (tools/regrid.py: --memory_budget_gib).')
  if method == 'spectral' and lmax is not None:
    for grid in (source, target):
      tables_lib.check_budget(grid, lmax)
