"""Spectral regridding: analysis on the source grid, synthesis on the target.

Exact for fields band-limited to `lmax` (up to float rounding and, for a
HEALPix source, the iterative analysis). Vector pairs go through the spin-1
transform, so winds stay right at and near the poles. The transforms are JAX
(`sphere_plugin.sht`), jitted once per regridder and input shape.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin import sht
from sphere_plugin.regrid import base


def default_lmax(source: grids_lib.Grid, target: grids_lib.Grid) -> int:
  """min(source.lmax, target.lmax): what both grids resolve."""
  return min(source.lmax, target.lmax)


def taper_window(lmax: int, taper: float | None) -> np.ndarray:
  """Weights per degree, shape (lmax+1,).

  None: all ones (sharp truncation at lmax). A fraction `taper` in (0, 1]:
  ones up to l0 = (1 - taper) * lmax, then a cos^2 roll-off that reaches 0 at
  lmax + 1 (so l = lmax keeps a little weight). It damps the Gibbs ringing
  of sharp features at the price of some resolution.
  """
  l = np.arange(lmax + 1, dtype=np.float64)
  if taper is None:
    return np.ones_like(l)
  taper = float(taper)
  if not 0 < taper <= 1:
    raise ValueError(f'taper must be in (0, 1], got {taper}')
  l0 = (1 - taper) * lmax
  x = np.clip((l - l0) / (lmax + 1 - l0), 0, 1)
  return np.cos(0.5 * np.pi * x) ** 2


class SpectralRegridder(base.Regridder):
  """Spectral regridding (see the module docstring).

  Args:
    source, target: Grids.
    lmax: band limit, default `default_lmax(source, target)`; at most the
      source's and the target's lmax.
    taper: None or the fraction of the top degrees to roll off (`taper_window`).
  """

  method = 'spectral'

  def __init__(self, source: grids_lib.Grid, target: grids_lib.Grid,
               lmax: int | None = None, taper: float | None = None):
    self.source, self.target = source, target
    self.lmax = default_lmax(source, target) if lmax is None else int(lmax)
    if not 0 <= self.lmax <= default_lmax(source, target):
      raise ValueError(f'lmax {self.lmax} is beyond what {source} and {target} '
                       f'resolve (at most {default_lmax(source, target)})')
    self.taper = taper
    window = taper_window(self.lmax, taper)[:, None]

    def scalar(x):
      a = sht.forward(x, source, self.lmax)
      return sht.inverse(a * window.astype(a.real.dtype), target)

    def vector(u, v):
      a = sht.forward(sht.vector_to_spin(u, v), source, self.lmax, spin=1)
      return sht.spin_to_vector(sht.inverse(a * window.astype(a.real.dtype), target, spin=1))

    self._scalar = jax.jit(scalar)
    self._vector = jax.jit(vector)

  def _check(self, *xs):
    for x in xs:
      self._split(x)
      if not isinstance(x, jax.Array) and np.isnan(np.asarray(x)).any():
        raise ValueError('the field has missing values (NaN); spectral regridding needs '
                         "complete fields: use method='conservative', which renormalises "
                         'over the valid cells')

  @staticmethod
  def _out(y, like):
    if isinstance(like, jax.Array):
      return y
    dtype = np.asarray(like).dtype
    return np.asarray(y).astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)

  def __call__(self, x):
    self._check(x)
    if np.iscomplexobj(x):
      raise ValueError('spectral regridding takes real fields; regrid the real and '
                       'imaginary parts separately')
    y = self._out(self._scalar(jnp.asarray(x)), x)
    if not isinstance(x, jax.Array) and np.size(x) and np.min(x) >= 0 and np.min(y) < 0:
      warnings.warn(
          'a non-negative field got negative values from spectral regridding (Gibbs '
          "ringing at sharp features); use method='conservative' for precipitation-like "
          'fields, or a taper', stacklevel=2)
    return y

  def vector(self, u, v):
    self._check(u, v)
    uo, vo = self._vector(jnp.asarray(u), jnp.asarray(v))
    return self._out(uo, u), self._out(vo, v)

  def __repr__(self) -> str:
    return (f'SpectralRegridder({self.source} -> {self.target}, lmax={self.lmax}, '
            f'taper={self.taper})')
