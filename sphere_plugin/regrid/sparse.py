"""Regridding by a sparse weight matrix (conservative, bilinear, nearest).

The weights W have shape (target.size, source.size) with rows summing to 1, so
a constant stays constant. Missing values (NaN) are handled by renormalising
each target value over its valid sources:

    y_t = sum_s W_ts x_s [x_s valid] / sum_s W_ts [x_s valid],

and y_t is NaN where no valid source contributes. Vectors are regridded as
3-D Cartesian vectors and projected back on the target's (east, north) frames,
which is right at the poles too. Runs in numpy/scipy (float64 internally);
the output has the input's float dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from sphere_plugin import grids as grids_lib
from sphere_plugin.regrid import base
from sphere_plugin.regrid import points


class SparseRegridder(base.Regridder):
  """Applies a fixed sparse weight matrix.

  Args:
    source, target: Grids.
    method: the name of the method that made the weights.
    weights: scipy sparse matrix (target.size, source.size), rows summing to 1.
  """

  def __init__(self, source: grids_lib.Grid, target: grids_lib.Grid, method: str,
               weights: scipy.sparse.spmatrix):
    self.source, self.target, self.method = source, target, method
    self.weights = scipy.sparse.csr_matrix(weights, dtype=np.float64)
    expected = (int(np.prod(target.shape)), int(np.prod(source.shape)))
    if self.weights.shape != expected:
      raise ValueError(f'weights have shape {self.weights.shape}, expected {expected}')

  def _apply(self, columns: np.ndarray) -> np.ndarray:
    """(source.size, n) float64 -> (target.size, n), NaN-aware."""
    missing = np.isnan(columns)
    if not missing.any():
      return self.weights @ columns
    valid = (~missing).astype(np.float64)
    total = self.weights @ np.where(missing, 0.0, columns)
    coverage = self.weights @ valid
    with np.errstate(invalid='ignore', divide='ignore'):
      return np.where(coverage > 0, total / coverage, np.nan)

  def __call__(self, x):
    x = np.asarray(x)
    lead, size = self._split(x)
    dtype = base.result_dtype(x.dtype)
    columns = x.reshape(-1, size).T.astype(np.float64)
    y = self._apply(columns).T.reshape(lead + self.target.shape)
    return y.astype(dtype)

  def vector(self, u, v):
    u, v = np.asarray(u), np.asarray(v)
    if u.shape != v.shape:
      raise ValueError(f'u and v shapes differ: {u.shape} vs {v.shape}')
    lead, size = self._split(u)
    dtype = base.result_dtype(u.dtype)
    u2, v2 = u.reshape(-1, size).T, v.reshape(-1, size).T  # (size, n)
    # A vector with one component missing is missing.
    u2 = np.where(np.isnan(v2), np.nan, u2)
    east, north = points.east_north(self.source)
    cart = [self._apply(u2 * east[:, i:i + 1] + v2 * north[:, i:i + 1]) for i in range(3)]
    east_t, north_t = points.east_north(self.target)
    uo = sum(c * east_t[:, i:i + 1] for i, c in enumerate(cart))
    vo = sum(c * north_t[:, i:i + 1] for i, c in enumerate(cart))
    shape = lead + self.target.shape
    return uo.T.reshape(shape).astype(dtype), vo.T.reshape(shape).astype(dtype)
