"""Constant tables of the transforms, built once in float64 and cached.

For a grid, a degree limit lmax and a spin s, the transform needs per order m
and ring theta_r:

* the synthesis table  lambda^s_{lm}(theta_r) = (-1)^s sqrt((2l+1)/4pi) d^l_{m,-s}(theta_r)
  (sY_lm = lambda^s_lm(theta) e^{i m phi}, McEwen-Wiaux / s2fft convention);
* the analysis table, which is the synthesis table times the ring quadrature
  weights when the grid's quadrature is exact at this lmax, and otherwise the
  weighted least-squares inverse of the synthesis per order m (exact for
  band-limited data; equal to the quadrature when that is exact).

Layout: m is the leading (batch) axis so that the latitude step is one batched
matmul with no transpose: tables are (M, rings, L) with L the degree axis.
Two layouts exist:

* 'real' (spin 0, real fields): m = 0..lmax only, and the grid's north/south
  symmetry is used: rings of the northern half only, degrees split by parity
  of l. Tables `even` (M, nh, lmax//2+1) and `odd` (M, nh, (lmax+1)//2).
* 'complex' (any spin, complex fields): m = -lmax..lmax, all rings, all degrees:
  (2 lmax + 1, nrings, lmax + 1).

HEALPix analysis also needs, for its conjugate-gradient refinement
(`healpix_preconditioner`), per order m the inverse Gram matrix
(S_m^T W S_m)^{-1} of the ring synthesis with the ring weights (the real
path's preconditioner) or its inverse square root (the complex path's change
of variables), (2 lmax + 1, lmax + 1, lmax + 1) in the complex m layout.

Tables are never flax parameters and never go into checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

import numpy as np
import threadpoolctl

from sphere_plugin import grids as grids_lib
from sphere_plugin.sht import wigner

_DEFAULT_BUDGET = 4 * 2**30
_budget = _DEFAULT_BUDGET
_lock = threading.Lock()


def set_table_budget(nbytes: int | None) -> None:
  """Sets the largest size in bytes one transform's float32 tables may take.

  None restores the default (4 GiB).
  """
  global _budget
  _budget = _DEFAULT_BUDGET if nbytes is None else int(nbytes)


def get_table_budget() -> int:
  """The current table budget in bytes (see set_table_budget)."""
  return _budget


def _needs_projection(grid: grids_lib.Grid, lmax: int) -> bool:
  return (isinstance(grid, grids_lib.LatLonGrid)
          and grid.exact_quadrature_lmax < lmax <= grid.lmax)


def _ring_count(grid: grids_lib.Grid) -> int:
  """len(grid.rings.theta), without computing the rings (absurd grids stay cheap)."""
  if isinstance(grid, grids_lib.HealpixGrid):
    return 4 * int(grid.nside) - 1
  return int(grid.nlat)


def table_nbytes(grid: grids_lib.Grid, lmax: int, spin: int = 0,
                 real: bool | None = None, itemsize: int = 4) -> int:
  """Bytes the tables of one transform take on device.

  Args:
    grid: the grid.
    lmax: degree limit.
    spin: spin weight.
    real: the real spin-0 layout (default: spin == 0).
    itemsize: 4 for float32, 8 for float64.
  """
  grid = grids_lib.parse(grid)
  nrings = _ring_count(grid)
  real = (spin == 0) if real is None else real
  n_tables = 2  # synthesis and analysis
  if real:
    entries = (lmax + 1) * ((nrings + 1) // 2) * (lmax + 2)  # even + odd degrees
  else:
    entries = (2 * lmax + 1) * nrings * (lmax + 1)
  return entries * itemsize * n_tables


def _check_budget(grid, lmax, spin, real):
  need = table_nbytes(grid, lmax, spin, real)
  if need > _budget:
    # Largest lmax that would fit, for the message.
    lo = 0
    hi = lmax
    while lo < hi:
      mid = (lo + hi + 1) // 2
      if table_nbytes(grid, mid, spin, real) <= _budget:
        lo = mid
      else:
        hi = mid - 1
    raise MemoryError(
        f'transform tables for {grid} at lmax {lmax}, spin {spin} need '
        f'{need / 2**30:.2f} GiB (budget {_budget / 2**30:.2f} GiB); raise '
        f'sphere_plugin.sht.set_table_budget() or use lmax <= {lo}.')


def check_budget(grid: grids_lib.Grid, lmax: int, spin: int = 0,
                 real: bool | None = None) -> None:
  """Raises MemoryError (one line, naming the lmax that fits) if the tables exceed the budget."""
  _check_budget(grids_lib.parse(grid), int(lmax), int(spin), (spin == 0) if real is None else real)


@dataclasses.dataclass(frozen=True)
class Tables:
  """Float64 tables of one transform (see module docstring for layouts).

  Attributes:
    real: whether this is the real spin-0 symmetric layout.
    synth: synthesis tables: for 'real' a pair (even, odd), each
      (M, nh, Lpar); for 'complex' one array (M, nrings, lmax+1).
    analysis: analysis tables of the same layout: `synth` times the ring
      weights when the quadrature is exact, else the least-squares inverse.
  """
  real: bool
  synth: tuple[np.ndarray, ...]
  analysis: tuple[np.ndarray, ...]

  @property
  def nbytes(self) -> int:
    """Bytes of all tables at float64."""
    return sum(t.nbytes for t in self.synth + self.analysis)


def synthesis_matrix(grid: grids_lib.Grid, lmax: int, spin: int, ms) -> np.ndarray:
  """lambda^s_{lm}(theta_r) for the grid's rings.

  Returns:
    float64 array (len(ms), nrings, lmax+1), zero where l < max(|m|, |s|).
  """
  theta = grid.rings.theta
  d = wigner.wigner_d(lmax, ms, [-spin], theta)[:, :, 0, :]  # (M, L, R)
  ell = np.arange(lmax + 1)
  norm = (-1.0) ** spin * np.sqrt((2 * ell + 1) / (4 * np.pi))
  return np.ascontiguousarray(np.transpose(d * norm[None, :, None], (0, 2, 1)))


def _projection(synth: np.ndarray, weight: np.ndarray, ms, spin: int) -> np.ndarray:
  """Weighted least-squares analysis operator per order m.

  For each m, with S (R, L) the synthesis restricted to valid degrees, returns
  A (R, L) such that a = F @ A solves min ||sqrt(w) (S a - F)||, i.e.
  A = diag(w) S (S^T diag(w) S)^{-1}. When the quadrature is exact,
  S^T diag(w) S = I and A = diag(w) S.
  """
  out = np.zeros_like(synth)
  sw = np.sqrt(weight)[:, None]
  # Many small QRs: OpenBLAS threads only slow these down (100x when the
  # cores are busy), so run them single-threaded.
  with threadpoolctl.threadpool_limits(1, user_api='blas'):
    _projection_loop(synth, sw, ms, spin, out)
  return out


def _projection_loop(synth, sw, ms, spin, out):
  for i, m in enumerate(ms):
    l0 = max(abs(int(m)), abs(spin))
    if l0 >= synth.shape[2]:
      continue
    s = synth[i, :, l0:]
    q, r = np.linalg.qr(sw * s)
    # A = diag(sqrt w) Q R^{-T}.
    out[i, :, l0:] = sw * np.linalg.solve(r, q.T).T


@functools.lru_cache(maxsize=64)
def _build(grid: grids_lib.Grid, lmax: int, spin: int, real: bool) -> Tables:
  rings = grid.rings
  nrings = len(rings.theta)
  weight = rings.weight
  # Beyond grid.lmax only synthesis is defined (forward refuses such lmax).
  project = _needs_projection(grid, lmax) and lmax <= grid.lmax
  if real:
    ms = np.arange(lmax + 1)
    nh = (nrings + 1) // 2
    synth_full = synthesis_matrix(grid, lmax, 0, ms)  # (M, R, L)
    analysis_full = _projection(synth_full, weight, ms, 0) if project else None
    # Northern half rings; the equator ring (odd nrings) is counted once.
    def split(t):
      half = t[:, :nh, :]
      return (np.ascontiguousarray(half[:, :, 0::2]),
              np.ascontiguousarray(half[:, :, 1::2]))
    synth = split(synth_full)
    analysis = split(analysis_full if project else synth_full * weight[None, :, None])
  else:
    ms = np.arange(-lmax, lmax + 1)
    synth_full = synthesis_matrix(grid, lmax, spin, ms)
    synth = (synth_full,)
    analysis = ((_projection(synth_full, weight, ms, spin),) if project
                else (synth_full * weight[None, :, None],))
  return Tables(real=real, synth=synth, analysis=analysis)


def _refine_inverse_sqrt(gram, y):
  """One Newton step y <- y + y (I - y G y) / 2 towards G^{-1/2}, residual in long double.

  The whitened solver takes y G y = I as exact, so the error of y sets the
  float64 floor of the HEALPix analysis: from eigh alone it is ~2e-15
  (relative round trip, nside 16-64). The step squares that error; the
  residual I - y G y is the only part that needs more than float64.
  """
  yl = y.astype(np.longdouble)
  residual = np.eye(len(y)) - yl @ (gram.astype(np.longdouble) @ yl)
  y = y + 0.5 * (y @ residual.astype(np.float64))
  return 0.5 * (y + y.T)


@functools.lru_cache(maxsize=64)
def _build_preconditioner(grid: grids_lib.HealpixGrid, lmax: int, spin: int,
                          power: float, refine: bool) -> np.ndarray:
  ms = np.arange(-lmax, lmax + 1)
  synth = synthesis_matrix(grid, lmax, spin, ms)  # (M, R, L)
  weight = grid.rings.weight
  out = np.zeros((len(ms), lmax + 1, lmax + 1))
  for i, m in enumerate(ms):
    l0 = max(abs(int(m)), abs(spin))
    if l0 > lmax:
      continue
    s = synth[i, :, l0:]
    # SPD and close to the identity (HEALPix quadrature errs by a few %):
    # well conditioned; symmetrise away rounding.
    gram = (s.T * weight) @ s
    w, v = np.linalg.eigh(0.5 * (gram + gram.T))
    y = (v * w ** power) @ v.T
    if refine:
      y = _refine_inverse_sqrt(gram, y)
    out[i, l0:, l0:] = y
  return out


def healpix_preconditioner(grid: grids_lib.HealpixGrid, lmax: int, spin: int,
                           power: float = -1.0, refine: bool = False) -> np.ndarray:
  """Per-order powers of the Gram matrices of the HEALPix ring synthesis (float64, cached).

  The normal operator of HEALPix analysis, N = Q A (A the synthesis, Q the
  equal-weight quadrature analysis), is block diagonal in m apart from the
  aliasing of orders on short polar rings. Its block for order m without
  aliasing is G_m = S_m^T W S_m, with S_m (rings, degrees) the synthesis
  matrix and W the ring weights (nphi * 4 pi / npix). G_m^{-1} (power -1,
  the default) is a preconditioner that removes the latitude quadrature
  error exactly, leaving only the aliasing for the iterations: the spectrum
  of P N is about twice as tight as that of N (eigenvalues 1 +- 0.06
  instead of 0.85..1.06 at nside 8, lmax 16). Its symmetric square root
  G_m^{-1/2} (power -0.5) whitens the degrees instead: in the coefficients
  u = G^{1/2} a the normal operator becomes the identity plus the aliasing
  alone (the complex path of the solver, `transforms._complex_solver`).

  `refine` (power -0.5 only) adds a Newton step whose residual is computed
  in long double (`_refine_inverse_sqrt`): float64 solves need it for their
  ~4-9e-16 floor (1.5-2.7e-15 without); float32 ones do not (it costs ~1 s at nside 64, lmax 128).

  G_m is real symmetric, so G_m^p acts alike on real and imaginary parts and
  is self-adjoint; for spin 0 G_{-m} = G_m, so it keeps the symmetry
  a_{l,-m} = (-1)^m conj(a_lm) of real fields.

  Returns:
    float64 (2 lmax + 1, lmax + 1, lmax + 1): [lmax + m, l, l'], G_m^power
    on the degrees l, l' >= max(|m|, |spin|), zero elsewhere.
  """
  grid = grids_lib.parse(grid)
  if not isinstance(grid, grids_lib.HealpixGrid):
    raise ValueError(f'the preconditioner is for HEALPix grids, got {grid}')
  with _lock:
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
      if refine and power != -0.5:
        raise ValueError(f'refine applies to power -0.5 only, got power {power}')
      return _build_preconditioner(grid, int(lmax), int(spin), float(power), bool(refine))


def get_tables(grid: grids_lib.Grid, lmax: int, spin: int, real: bool) -> Tables:
  """Cached float64 tables for (grid, lmax, spin, layout); checks the budget."""
  grid = grids_lib.parse(grid)
  if real and spin != 0:
    raise ValueError('the real layout exists for spin 0 only')
  _check_budget(grid, lmax, spin, real)
  with _lock:
    return _build(grid, int(lmax), int(spin), bool(real))
