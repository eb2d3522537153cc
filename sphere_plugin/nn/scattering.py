"""Spherical scattering transform (fixed directional wavelets) and its front end.

After McEwen, Wallis & Mavor-Parker, "Scattering networks on the sphere"
(ICLR 2022), with the wavelets of `scattering_wavelets` (scale-discretised,
directional, tiling the harmonic line). For a spin-0 field f, with
U[j](g) = |g * psi_j| (pooled over orientations, below) and phi the scaling
function,

    S0          = phi * f
    S1[j]       = phi * U[j] f
    S2[j1, j2]  = phi * U[j2] U[j1] f,   j2 > j1 (frequency-decreasing paths)

with j = 0 the finest wavelet. Every S is band-limited by phi (degrees
l < lambda^J0), so it is returned on a coarse grid: by default the input's
grid kind at the smallest resolution that holds that band (HEALPix: the
smallest power-of-two nside with 2 nside >= its lmax).

**Orientations.** f * psi_j is a function on SO(3); per point its dependence
on the third angle gamma is a trigonometric polynomial with the N orders of
the wavelet. Two poolings over gamma make U a spin-0 field:

* 'rms' (default): U = sqrt(mean_gamma |f * psi_j|^2) = sqrt(sum_n |V_n|^2)
  (Parseval in gamma; exact with the N orientations gamma_k = k pi / N).
  Pointwise rotation invariant, and energy preserving:
  ||phi * f||^2 + sum_j ||U[j] f||^2 = ||f||^2 exactly.
* 'mean': U = mean_k |(f * psi_j)(., gamma_k)| over `n_directions`
  orientations gamma_k = k pi / n_directions in [0, pi) (|.| has period pi
  in gamma). Only approximately invariant: |.| is not band-limited in gamma,
  so a finite set of orientations aliases; more orientations, less error.

Keeping the orientations as separate channels is not offered: at fixed gamma
the outputs are components of a field on SO(3), not spin-0 fields.

**Modulus and aliasing.** U is not band-limited. For each wavelet j (band
limit L_j) U is computed on a Gauss-Legendre grid with
ceil(oversampling * (L_j + 1)) rings and twice as many longitudes, then
analysed up to the band the next step needs (exact quadrature for degrees
below 2 * rings - L). oversampling = 1 just resolves the wavelet coefficients;
oversampling = 2 integrates |f * psi|^2 exactly; larger values reduce the
aliasing of the modulus's high degrees (the only source of equivariance
error with 'rms' pooling). Measured (tools/scattering_study.py, float64,
gaussian:64x32 -> 16x8, J = 3, white band-limited input), relative rotation
error at depth 2: N = 2: 1.6e-2 / 2.0e-3 / 6.6e-4 / 2.6e-4 at oversampling
2 / 4 / 6 / 8; N = 1 needs 8 (9.4e-4; |.| of a real field has kinks along
lines, of a complex one only at points). Hence the defaults N = 2,
oversampling = 6 (depth 2 <= 1e-3); the cost grows about linearly with it.

Tensors: fields (..., *grid.shape); layer tensors (*batch, *grid.shape, 1, C)
in, (*batch, *coarse.shape, 1, C * P) out, channel c * P + p for path p
(`path_labels`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import gin
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin import sht
from sphere_plugin.nn import scattering_wavelets as wavelets
from sphere_plugin.nn import spectral

POOLINGS = ('rms', 'mean')


def coarse_grid_for(input_grid, lmax: int) -> grids_lib.Grid:
  """Smallest grid of `input_grid`'s kind whose layers resolve degree `lmax`.

  gaussian / equiangular: (2(lmax+1)) x (lmax+1); equiangular_with_poles:
  (2(lmax+1)) x (lmax+2); healpix: the smallest power-of-two nside with
  2 nside >= lmax.
  """
  grid = grids_lib.parse(input_grid)
  if isinstance(grid, grids_lib.HealpixGrid):
    nside = 1
    while 2 * nside < lmax:
      nside *= 2
    return grids_lib.healpix(nside)
  nlat = lmax + 2 if grid.kind == 'equiangular_with_poles' else lmax + 1
  return grids_lib.LatLonGrid(grid.kind, 2 * (lmax + 1), nlat)


def work_grid(lmax: int, oversampling: float) -> grids_lib.Grid:
  """Gauss-Legendre grid on which the modulus of a band-`lmax` field is taken."""
  nlat = max(2, int(math.ceil(oversampling * (lmax + 1) - 1e-9)))
  return grids_lib.gaussian(2 * nlat, nlat)


def _analyse(fields, grid, lmax):
  """Coefficients (..., lmax+1, 2lmax+1) of real or complex spin-0 fields, projected."""
  full = spectral.default_lmax(grid)
  la = lmax if (grid.kind == 'gaussian' or lmax >= full) else full
  if jnp.iscomplexobj(fields):
    a = sht.forward(fields.real, grid, la) + 1j * sht.forward(fields.imag, grid, la)
  else:
    a = sht.forward(fields, grid, la)
  return wavelets._pad_lmax(a, lmax)  # pylint: disable=protected-access


def _safe_sqrt(x):
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class ScatteringTransform:
  """A scattering transform on one input grid (hashable; tables cached).

  Attributes:
    input_grid: grid of the input fields (Grid or text).
    J: number of wavelet scales (1 .. Jmax + 1, `scattering_wavelets`).
    N: azimuthal band-limit of the wavelets (1 = axisymmetric).
    depth: 0, 1 or 2.
    lmax: band limit of the input analysis; default `spectral.default_lmax`.
    dilation: lambda, the wavelet dilation factor.
    oversampling: modulus grid rings per (band limit + 1) of each wavelet.
    pooling: 'rms' or 'mean' over orientations (module docstring).
    n_directions: orientations for 'mean' pooling (default 2 N; >= N).
    coarse_grid: output grid; default `coarse_grid_for(input_grid, phi band)`.
  """
  input_grid: Any
  J: int = 3
  N: int = 2
  depth: int = 2
  lmax: int | None = None
  dilation: float = 2.0
  oversampling: float = 6.0
  pooling: str = 'rms'
  n_directions: int | None = None
  coarse_grid: Any = None

  def __post_init__(self):
    grid = grids_lib.parse(self.input_grid)
    object.__setattr__(self, 'input_grid', grid)
    full = spectral.default_lmax(grid)
    lmax = full if self.lmax is None else int(self.lmax)
    if not 2 <= lmax <= full:
      raise ValueError(f'scattering lmax {lmax} on {grid}: allowed 2 .. {full}')
    object.__setattr__(self, 'lmax', lmax)
    if self.depth not in (0, 1, 2):
      raise ValueError(f'scattering depth must be 0, 1 or 2, got {self.depth}')
    if self.N < 1:
      raise ValueError(f'azimuthal band-limit N must be >= 1, got {self.N}')
    if self.oversampling < 1:
      raise ValueError(f'oversampling must be >= 1, got {self.oversampling}')
    if self.pooling not in POOLINGS:
      raise ValueError(f'pooling {self.pooling!r}: allowed {POOLINGS}')
    nd = 2 * self.N if self.n_directions is None else int(self.n_directions)
    if nd < self.N:
      raise ValueError(f'n_directions {nd} < N = {self.N}: too few orientations')
    object.__setattr__(self, 'n_directions', nd)
    wavelets.scale_profiles(lmax, self.J, self.dilation)  # validates J
    lc = self.phi_lmax
    out = (coarse_grid_for(grid, lc) if self.coarse_grid is None
           else grids_lib.parse(self.coarse_grid))
    if spectral.default_lmax(out) < lc or (
        isinstance(out, grids_lib.LatLonGrid) and out.nlon < 2 * lc + 1):
      raise ValueError(f'coarse grid {out} does not resolve the scaling function band '
                       f'(lmax {lc}); use at least {coarse_grid_for(grid, lc)}')
    object.__setattr__(self, 'coarse_grid', out)

  @property
  def output_grid(self) -> grids_lib.Grid:
    """The grid of the scattering coefficients."""
    return self.coarse_grid

  @property
  def phi_lmax(self) -> int:
    """Band limit of the scaling function (and of every output)."""
    return wavelets.band_limits(self.lmax, self.J, self.dilation)[0]

  @property
  def wavelet_lmax(self) -> tuple[int, ...]:
    """Band limit of each wavelet, finest (j = 0) first."""
    return wavelets.band_limits(self.lmax, self.J, self.dilation)[1]

  @property
  def paths(self) -> tuple[tuple[int, ...], ...]:
    """() for S0, (j,) for S1, (j1, j2) for S2, in output order."""
    p = [()]
    if self.depth >= 1:
      p += [(j,) for j in range(self.J)]
    if self.depth >= 2:
      p += [(j1, j2) for j1 in range(self.J) for j2 in range(j1 + 1, self.J)]
    return tuple(p)

  @property
  def path_labels(self) -> tuple[str, ...]:
    """'S0', 'S1[j=0]', 'S2[j1=0,j2=1]', ... in output order."""
    def label(p):
      if not p:
        return 'S0'
      if len(p) == 1:
        return f'S1[j={p[0]}]'
      return f'S2[j1={p[0]},j2={p[1]}]'
    return tuple(label(p) for p in self.paths)

  @property
  def num_paths(self) -> int:
    """P, the number of scattering paths (output channels per input channel)."""
    return len(self.paths)

  def config(self) -> dict:
    """Parameters as plain values (stored as dataset attrs by the cache)."""
    return dict(input_grid=str(self.input_grid), J=self.J, N=self.N, depth=self.depth,
                lmax=self.lmax, dilation=float(self.dilation),
                oversampling=float(self.oversampling), pooling=self.pooling,
                n_directions=self.n_directions, coarse_grid=str(self.coarse_grid))

  def _modulus(self, alm, j):
    """U[j] on the work grid of wavelet j: real (..., *work.shape)."""
    _, kappa = wavelets.scale_profiles(self.lmax, self.J, self.dilation)
    weights = wavelets.directional_weights(self.lmax, self.N)
    lj = self.wavelet_lmax[j]
    grid = work_grid(lj, self.oversampling)
    v = wavelets.spin_components(alm, kappa[j], weights, grid, lj)  # (..., N, *grid)
    nd = len(grid.shape)
    if self.pooling == 'rms':
      return _safe_sqrt(jnp.sum(v.real ** 2 + v.imag ** 2, axis=-1 - nd)), grid
    gammas = np.pi * np.arange(self.n_directions) / self.n_directions
    phases = jnp.asarray(wavelets.orientation_phases(self.N, gammas)).astype(v.dtype)
    w = jnp.einsum('gn,...n->...g', phases, jnp.moveaxis(v, -1 - nd, -1))
    return jnp.mean(jnp.abs(w), axis=-1), grid

  def input_coefficients(self, fields):
    """Coefficients of the input fields at `lmax`: complex (..., lmax+1, 2lmax+1)."""
    return _analyse(jnp.asarray(fields), self.input_grid, self.lmax)

  def coefficients(self, fields):
    """Spectral scattering coefficients.

    Args:
      fields: real or complex (..., *input_grid.shape) spin-0 fields.

    Returns:
      complex (..., P, phi_lmax+1, 2*phi_lmax+1), paths in `paths` order.
    """
    fields = jnp.asarray(fields)
    gshape = self.input_grid.shape
    if fields.shape[fields.ndim - len(gshape):] != gshape:
      raise ValueError(f'scattering input on {self.input_grid} must have shape '
                       f'(..., {", ".join(map(str, gshape))}); got {fields.shape}')
    phi, _ = wavelets.scale_profiles(self.lmax, self.J, self.dilation)
    lc = self.phi_lmax
    flm = self.input_coefficients(fields)
    rdtype = jnp.finfo(flm.dtype).dtype
    phic = jnp.asarray(phi[:lc + 1], rdtype)[:, None]

    def project(alm):
      return wavelets._pad_lmax(alm, lc) * phic  # pylint: disable=protected-access

    out = [project(flm)]
    second = []
    limits = self.wavelet_lmax
    for j1 in range(self.J if self.depth >= 1 else 0):
      u1, g1 = self._modulus(flm, j1)
      need = lc
      if self.depth >= 2 and j1 + 1 < self.J:
        need = max(lc, limits[j1 + 1])
      u1lm = sht.forward(u1, g1, need)
      out.append(project(u1lm))
      if self.depth >= 2:
        for j2 in range(j1 + 1, self.J):
          u2, g2 = self._modulus(u1lm, j2)
          second.append(project(sht.forward(u2, g2, lc)))
    return jnp.stack(out + second, axis=-3)

  def __call__(self, fields):
    """Scattering coefficients on the coarse grid.

    Args:
      fields: real or complex (..., *input_grid.shape).

    Returns:
      (..., P, *coarse_grid.shape); real for real input.
    """
    c = self.coefficients(fields)
    real = not jnp.iscomplexobj(jnp.asarray(fields))
    return sht.inverse(c, self.coarse_grid, spin=0, real=real)

  def apply_layer(self, x):
    """Layer-tensor form: (*batch, *input_grid.shape, 1, C) -> (*batch, *coarse.shape, 1, C*P)."""
    spectral.check_spins(x, (0,), 'ScatteringTransform')
    spectral.check_spatial(x, self.input_grid, 'ScatteringTransform')
    nd_in, nd_out = len(self.input_grid.shape), len(self.coarse_grid.shape)
    fields = jnp.moveaxis(x[..., 0, :], -1, -1 - nd_in)  # (*batch, C, *grid)
    s = self(fields)  # (*batch, C, P, *coarse)
    s = s.reshape(s.shape[:-2 - nd_out] + (-1,) + s.shape[s.ndim - nd_out:])
    return jnp.moveaxis(s, -1 - nd_out, -1)[..., None, :]

  def energies(self, fields):
    """Energy (squared L2 norm) per depth and of the input, by Parseval.

    Returns:
      dict with 'input' and 'S0', 'S1', 'S2' (those up to `depth`), each
      (...,) for fields (..., *input_grid.shape).
    """
    flm = self.input_coefficients(fields)
    c = self.coefficients(fields)
    e = jnp.sum(jnp.abs(c) ** 2, axis=(-2, -1))  # (..., P)
    depths = np.array([len(p) for p in self.paths])
    out = {'input': jnp.sum(jnp.abs(flm) ** 2, axis=(-2, -1))}
    for d in range(self.depth + 1):
      out[f'S{d}'] = jnp.sum(e[..., depths == d], axis=-1)
    return out


@gin.configurable(module='sphere_plugin.nn')
class ScatteringFrontEnd(nn.Module):
  """Scattering transform as a parameter-free first layer (`SphericalCNN(front_end=...)`).

  Attributes: as `ScatteringTransform` (input_grid, J, N, depth, lmax,
  dilation, oversampling, pooling, n_directions, coarse_grid). The wavelet
  tables are NumPy constants cached per configuration, never parameters.

  Call:
    x: real or complex (*batch, *input_grid.shape, 1, C_in) spin-0 fields;
      train: ignored.
    Returns (*batch, *output_grid().shape, 1, C_in * P): channel c * P + p is
    path p of input channel c (`path_labels()`).
  """
  input_grid: Any = None
  J: int = 3
  N: int = 2
  depth: int = 2
  lmax: int | None = None
  dilation: float = 2.0
  oversampling: float = 6.0
  pooling: str = 'rms'
  n_directions: int | None = None
  coarse_grid: Any = None

  def transform(self) -> ScatteringTransform:
    """The underlying `ScatteringTransform`."""
    if self.input_grid is None:
      raise ValueError('ScatteringFrontEnd needs input_grid')
    return ScatteringTransform(
        self.input_grid, J=self.J, N=self.N, depth=self.depth, lmax=self.lmax,
        dilation=self.dilation, oversampling=self.oversampling, pooling=self.pooling,
        n_directions=self.n_directions, coarse_grid=self.coarse_grid)

  def output_grid(self) -> grids_lib.Grid:
    """Grid of the output (what `SphericalCNN`'s stem reads)."""
    return self.transform().output_grid

  def path_labels(self) -> tuple[str, ...]:
    """The P path names ('S0', 'S1[j=0]', 'S2[j1=0,j2=1]', ...), in channel order."""
    return self.transform().path_labels

  def __call__(self, x, train: bool = False):
    del train
    return self.transform().apply_layer(x)
