"""Spectral regridding: analysis on the source grid, synthesis on the target.

Exact for fields band-limited to `lmax` (up to float rounding and, for a
HEALPix source, the iterative analysis). Runs in float32, or in float64 for
float64 input when JAX x64 is enabled (`jax.config.update('jax_enable_x64',
True)`); the output has the input's float dtype either way. Vector pairs go through the spin-1
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


# numpy input runs in blocks of this many fields (the remainder padded to a
# power of two), so any input shape reuses at most a few compiled programs.
BLOCK = 16


def default_lmax(source: grids_lib.Grid, target: grids_lib.Grid) -> int:
  """What both grids resolve: min of their lmax, with 2*nside for a HEALPix source.

  HEALPix analysis is exact only up to 2*nside (`grid.exact_quadrature_lmax`);
  at healpy's conventional 3*nside - 1 even a degree-1 field comes back with
  1e-3 errors, so a HEALPix source is analysed at 2*nside by default.
  """
  source_lmax = (source.exact_quadrature_lmax if isinstance(source, grids_lib.HealpixGrid)
                 else source.lmax)
  return min(source_lmax, target.lmax)


def max_lmax(source: grids_lib.Grid, target: grids_lib.Grid) -> int:
  """The largest lmax one may ask for: min(source.lmax, target.lmax)."""
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


class RingingWarning(UserWarning):
  """Spectral regridding gave a non-negative field negative values (Gibbs ringing)."""


def _check_finite(x: np.ndarray) -> None:
  """Refuses NaN and +-Inf: one of them spreads over the whole field spectrally."""
  if not np.issubdtype(x.dtype, np.inexact) or np.isfinite(x).all():
    return
  nan = int(np.isnan(x).sum())
  pos, neg = int(np.isposinf(x).sum()), int(np.isneginf(x).sum())
  found = ', '.join(f'{n} {name}' for n, name in ((nan, 'NaN'), (pos, '+Inf'), (neg, '-Inf'))
                    if n)
  raise ValueError(f'the field has non-finite values ({found} of {x.size}); spectral '
                   'regridding needs complete, finite fields (one would spread over the '
                   "whole field): use method='conservative', which skips NaN and "
                   'renormalises over the valid cells (mark Inf as NaN first)')


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
    if not 0 <= self.lmax <= max_lmax(source, target):
      raise ValueError(f'lmax {self.lmax} is beyond what {source} and {target} '
                       f'resolve (at most {max_lmax(source, target)})')
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
      if not isinstance(x, jax.Array):
        _check_finite(np.asarray(x))

  def _blocked(self, fn, *arrays):
    """Applies fn to numpy fields in fixed-size blocks; returns numpy outputs."""
    lead, _ = self._split(arrays[0])
    dtype = base.result_dtype(arrays[0].dtype)
    flat = [np.asarray(a).reshape((-1,) + self.source.shape) for a in arrays]
    n = flat[0].shape[0]
    outs = []
    for start in range(0, n, BLOCK):
      block = [f[start:start + BLOCK] for f in flat]
      m = block[0].shape[0]
      size = BLOCK if m == BLOCK else 1 << (m - 1).bit_length()
      pad = ((0, size - m),) + ((0, 0),) * len(self.source.shape)
      y = fn(*[jnp.asarray(np.pad(b, pad).astype(
          b.dtype if np.issubdtype(b.dtype, np.floating) else np.float32)) for b in block])
      y = y if isinstance(y, tuple) else (y,)
      outs.append([np.asarray(part)[:m] for part in y])
    results = [np.concatenate(parts).reshape(lead + self.target.shape).astype(dtype)
               for parts in zip(*outs)]
    return results if len(results) > 1 else results[0]

  def __call__(self, x, *, warn: bool = True):
    """Regrids scalar fields (see `Regridder.__call__`).

    Args:
      x: (..., *source.shape), real.
      warn: give a `RingingWarning` when a non-negative numpy field gets
        negative values (`ds.sphere.regrid` passes False and warns itself,
        naming the variable).

    Returns:
      (..., *target.shape).
    """
    self._check(x)
    if np.iscomplexobj(x):
      raise ValueError('spectral regridding takes real fields; regrid the real and '
                       'imaginary parts separately')
    if isinstance(x, jax.Array):  # JAX input (also under jit/grad): one traced call
      return self._scalar(x)
    x = np.asarray(x)
    y = self._blocked(self._scalar, x)
    if warn and x.size and np.min(x) >= 0 and np.min(y) < 0:
      warnings.warn(
          'a non-negative field got negative values from spectral regridding (Gibbs '
          f'ringing at sharp features): min {np.min(y):.4g} after regridding vs '
          f"{np.min(x):.4g} before; use method='conservative' for precipitation-like "
          'fields, or a taper', RingingWarning, stacklevel=2)
    return y

  def vector(self, u, v):
    self._check(u, v)
    if isinstance(u, jax.Array) or isinstance(v, jax.Array):
      return self._vector(jnp.asarray(u), jnp.asarray(v))
    u, v = np.asarray(u), np.asarray(v)
    if u.shape != v.shape:
      raise ValueError(f'u and v shapes differ: {u.shape} vs {v.shape}')
    return tuple(self._blocked(self._vector, u, v))

  def __repr__(self) -> str:
    return (f'SpectralRegridder({self.source} -> {self.target}, lmax={self.lmax}, '
            f'taper={self.taper})')
