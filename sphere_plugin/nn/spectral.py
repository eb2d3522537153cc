"""Layer-tensor transforms: spatial <-> spectral for (spin, channel) tensors.

Layer tensors (DESIGN.md):
  spatial  (*batch, *grid.shape, S, C), complex (a real spin-0 input is allowed)
  spectral (*batch, lmax+1, 2*lmax+1, S, C), complex, degree l and order m at
           [l, lmax+m], zero where |m| > l or l < |spin|

where S = len(spins). These helpers apply `sphere_plugin.sht` per spin and
move the (spin, channel) axes into place.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin import sht


SQRT_4PI = float(np.sqrt(4 * np.pi))  # a00 of the constant field 1 (orthonormal harmonics)


def as_grid(grid) -> grids_lib.Grid | None:
  """Parses a grid given as text; passes Grid objects and None through."""
  return None if grid is None else grids_lib.parse(grid)


def default_lmax(grid) -> int:
  """Degree limit layers use on a grid unless told otherwise.

  grid.lmax on lat-lon grids (exact transforms); 2*nside on HEALPix, the
  largest degree its iterative analysis recovers to float32 precision (above
  it, up to 3*nside - 1, the transform is a least-squares fit and layers lose
  exact rotation equivariance).
  """
  grid = grids_lib.parse(grid)
  if isinstance(grid, grids_lib.HealpixGrid):
    return grid.exact_quadrature_lmax
  return grid.lmax


def lmax_of(coeffs) -> int:
  """lmax of a spectral layer tensor (*batch, lmax+1, 2*lmax+1, S, C)."""
  if coeffs.ndim < 4 or coeffs.shape[-3] != 2 * coeffs.shape[-4] - 1:
    raise ValueError('spectral layer tensors have shape (*batch, lmax+1, 2*lmax+1, '
                     f'spin, channel); got {coeffs.shape}')
  return coeffs.shape[-4] - 1


def check_spins(x, spins: Sequence[int], what: str) -> tuple[int, ...]:
  """Checks that the spin axis (-2) of `x` has len(spins) entries."""
  spins = tuple(int(s) for s in spins)
  if len(set(spins)) != len(spins):
    raise ValueError(f'{what}: spins must be distinct, got {spins}')
  if x.ndim < 2 or x.shape[-2] != len(spins):
    raise ValueError(f'{what}: expected a spin axis of size {len(spins)} (spins {spins}) '
                     f'at position -2, got shape {x.shape}')
  return spins


def check_spatial(x, grid: grids_lib.Grid, what: str) -> None:
  """Checks that `x` is (*batch, *grid.shape, S, C)."""
  g = grid.shape
  if x.ndim < len(g) + 2 or x.shape[-2 - len(g):-2] != g:
    raise ValueError(f'{what}: spatial input on {grid} must have shape '
                     f'(*batch, {", ".join(map(str, g))}, spin, channel); got {x.shape}')


def degree_mask(lmax: int, spins: Sequence[int]) -> np.ndarray:
  """(lmax+1, 1, S, 1) float mask, 1 where l >= |spin|."""
  l = np.arange(lmax + 1)[:, None]
  s = np.abs(np.asarray(spins))[None, :]
  return (l >= s).astype(np.float32)[:, None, :, None]


def _split_spins(x):
  """(..., S, C) -> S arrays (..., C).

  A split, not one index per spin: the transpose of an index is a full-size
  pad, so S indexes cost S padded copies and their sum in the backward pass;
  a split's transpose is one concatenate.
  """
  return [jnp.squeeze(p, -2) for p in jnp.split(x, x.shape[-2], axis=-2)]


def spin_coefficients(coeffs, spins: Sequence[int], which: Sequence[int]) -> dict:
  """The channels of some spins of a spectral layer tensor, for `to_spectral(known=...)`.

  Args:
    coeffs: (*batch, L+1, 2L+1, S, C).
    spins: the S spins of its spin axis.
    which: the spins to take (each in `spins`).

  Returns:
    {spin: (*batch, L+1, 2L+1, 1, C)} for the spins in `which`.
  """
  spins = check_spins(coeffs, spins, 'spin_coefficients')
  parts = jnp.split(coeffs, len(spins), axis=-2)  # a split transposes to one concatenate
  return {int(s): parts[spins.index(int(s))] for s in which}


@flax.struct.dataclass
class PartlyKnown:
  """Spin-0 channels known up to a real field: to_spatial(coeffs) + field.

  What a nonlinearity that mixes its spin-0 channels linearly and adds a real
  field (PhaseCollapse: a dense map of the spin-0 channels plus one of the
  magnitudes) hands to `to_spectral(known={0: ...})`: the channels'
  coefficients are `coeffs` plus the analysis of `field` alone, which on
  lat-lon grids takes the real path (half the work of a complex analysis).
  A pytree.

  Attributes:
    coeffs: complex (*batch, L+1, 2L+1, 1, C), the band-limited part.
    field: real (*batch, *grid.shape, 1, C), the rest.
  """
  coeffs: Any
  field: Any


def _known_coeffs(c):
  return c.coeffs if isinstance(c, PartlyKnown) else c


def to_spectral(x, grid, lmax: int, spins: Sequence[int], known: dict | None = None):
  """Forward transform of a spatial layer tensor.

  Truncating to a smaller lmax must equal projecting: on Gaussian grids the
  quadrature does that for any lmax, but where the analysis is a least-squares
  fit (HEALPix, equiangular grids) the field is analysed at
  `default_lmax(grid)` and then truncated, so that the discarded degrees do not
  leak into the kept ones.

  Args:
    x: (*batch, *grid.shape, S, C), real or complex.
    grid: the grid of x.
    lmax: output degree limit (<= grid.lmax).
    spins: the S spin weights.
    known: optional {spin: (*batch, L+1, 2L+1, 1, C)} (`spin_coefficients`):
      coefficients that x's channels of that spin were synthesised from on
      `grid`. Where L <= `default_lmax(grid)` the analysis of such a field is
      exact, so they are used (truncated or zero-padded to lmax) instead of
      analysing those channels: the same result up to rounding (on HEALPix,
      without the solver's error), one transform fewer. Larger L: ignored.
      For spin 0 the value may be a `PartlyKnown`: then only its real field
      is analysed.

  Returns:
    complex (*batch, lmax+1, 2*lmax+1, S, C).
  """
  grid = grids_lib.parse(grid)
  spins = check_spins(x, spins, 'to_spectral')
  check_spatial(x, grid, 'to_spectral')
  if known:
    stray = sorted(set(known) - set(spins))
    if stray:
      raise ValueError(f'to_spectral: known coefficients for spins {stray}, not among {spins}')
    want = x.shape[:x.ndim - 2 - len(grid.shape)], x.shape[-1]
    for s, c in known.items():
      if isinstance(c, PartlyKnown):
        field = x.shape[:-2] + (1, x.shape[-1])
        if s != 0 or c.field.shape != field or jnp.iscomplexobj(c.field):
          raise ValueError(f'to_spectral: a PartlyKnown is for spin 0 with a real field of '
                           f'shape {field}; got spin {s}, {c.field.dtype} {c.field.shape}')
      c = _known_coeffs(c)
      if c.ndim < 4 or (c.shape[:-4], c.shape[-2], c.shape[-1]) != (want[0], 1, want[1]):
        raise ValueError(f'to_spectral: known coefficients of spin {s} must be (*batch, L+1, '
                         f'2L+1, 1, C) with batch {want[0]} and C = {want[1]}; got {c.shape}')
    use = {s: c for s, c in known.items() if lmax_of(_known_coeffs(c)) <= default_lmax(grid)}
    if use:
      rest = tuple(s for s in spins if s not in use)
      analysed = {}
      if rest:
        parts = jnp.split(x, len(spins), axis=-2)
        a = to_spectral(jnp.concatenate([parts[spins.index(s)] for s in rest], axis=-2),
                        grid, lmax, rest)
        analysed = spin_coefficients(a, rest, rest)
      for s, c in use.items():
        if isinstance(c, PartlyKnown):
          # On HEALPix the complex path's solver (whitened, alias rows only)
          # beats the real path's: a training step ran 0.7x as fast with the
          # real one (forecaster_small_healpix).
          f = c.field.astype(jnp.result_type(c.field.dtype, jnp.complex64)) if isinstance(
              grid, grids_lib.HealpixGrid) else c.field
          analysed[s] = resize(c.coeffs, lmax) + to_spectral(f, grid, lmax, (0,))
        else:
          analysed[s] = resize(c, lmax).astype(jnp.result_type(c.dtype, jnp.complex64))
      return jnp.concatenate([analysed[s] for s in spins], axis=-2)
  gnd = len(grid.shape)
  full = default_lmax(grid)
  lmax_a = lmax if (grid.kind == 'gaussian' or lmax >= full) else full
  out = []
  for s, xs in zip(spins, _split_spins(x)):
    xs = jnp.moveaxis(xs, -1, -1 - gnd)  # (*batch, C, *grid)
    # A complex spin-0 field takes the complex path, not two real-path
    # transforms of its parts: twice the Legendre products, but fewer layout
    # copies, and as fast or faster for a block forward+backward on 64x64,
    # gaussian:128x64 and healpix:16.
    out.append(sht.forward(xs, grid, lmax_a, spin=s))  # (*batch, C, L+1, 2L+1)
  a = jnp.stack(out, axis=-1)  # (*batch, C, L+1, 2L+1, S)
  return resize(jnp.moveaxis(a, -4, -1), lmax)


def to_spatial(coeffs, grid, spins: Sequence[int]):
  """Inverse transform of a spectral layer tensor.

  Args:
    coeffs: complex (*batch, lmax+1, 2*lmax+1, S, C).
    grid: target grid (needs nlon >= 2*lmax+1 on lat-lon grids).
    spins: the S spin weights.

  Returns:
    complex (*batch, *grid.shape, S, C).
  """
  grid = grids_lib.parse(grid)
  spins = check_spins(coeffs, spins, 'to_spatial')
  lmax_of(coeffs)
  gnd = len(grid.shape)
  out = []
  for s, a in zip(spins, _split_spins(coeffs)):
    a = jnp.moveaxis(a, -1, -3)  # (*batch, C, L+1, 2L+1)
    out.append(sht.inverse(a, grid, spin=s, real=False))  # (*batch, C, *grid)
  x = jnp.stack(out, axis=-1)  # (*batch, C, *grid, S)
  return jnp.moveaxis(x, -2 - gnd, -1)


def resize(coeffs, lmax: int):
  """Truncates or zero-pads a spectral layer tensor to degree limit `lmax`.

  Args:
    coeffs: (*batch, L+1, 2L+1, S, C).
    lmax: new degree limit.

  Returns:
    (*batch, lmax+1, 2*lmax+1, S, C): degrees above min(L, lmax) are zero.
  """
  old = lmax_of(coeffs)
  if lmax == old:
    return coeffs
  if lmax < old:
    return coeffs[..., :lmax + 1, old - lmax:old + lmax + 1, :, :]
  d = lmax - old
  pad = [(0, 0)] * coeffs.ndim
  pad[-4] = (0, d)
  pad[-3] = (d, d)
  return jnp.pad(coeffs, pad)
