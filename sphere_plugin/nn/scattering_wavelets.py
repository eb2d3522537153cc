"""Scale-discretised directional wavelets on the sphere and their convolution.

The construction follows the definitions of scale-discretised wavelets
(Wiaux et al. 2008; Leistedt et al. 2013, S2LET; McEwen et al. 2015,
"Directional spin wavelets on the sphere"); the formulas below are written
out from those definitions.

**Radial (degree) part.** With the C-infinity bump s(x) = exp(-1 / (1 - x^2))
on |x| < 1 and a dilation factor lambda > 1,

    s_lam(t) = s(2 lam / (lam - 1) (t - 1/lam) - 1)        (support 1/lam < t < 1)
    k(t)     = int_t^1 s_lam(u)^2 du/u / int_{1/lam}^1 s_lam(u)^2 du/u,

so k = 1 for t <= 1/lam, k = 0 for t >= 1, smooth in between. The scaling
function and the wavelet of S2LET scale index i have degree profiles

    Phi_l     = sqrt(k(l / lam^J0)),                 support l < lam^J0
    kappa_i_l = sqrt(k(l / lam^(i+1)) - k(l / lam^i)), support lam^(i-1) < l < lam^(i+1)

for i = J0 .. Jmax, where Jmax is the smallest integer with lam^Jmax >= lmax.
The squares telescope: Phi_l^2 + sum_i kappa_i_l^2 = k(l / lam^(Jmax+1)) = 1
for every l <= lmax (the tiling of the harmonic line). We count wavelet
scales the other way, as scattering papers do: j = Jmax - i, so j = 0 is the
finest scale (highest degrees) and larger j is coarser. J scales means
J0 = Jmax - J + 1.

**Directional (order) part**, azimuthal band-limit N: only orders n with
|n| < N and n = N - 1 (mod 2) are used (N of them), so the directional
convolution is exactly sampled by N orientations gamma_k = k pi / N. With
g_l the largest such |n| <= l,

    |s_ln|^2 = C(g_l, (g_l - n) / 2) / 2^g_l    (binomial weights, sum over n = 1),

s_ln real and >= 0 (N = 1: s_l0 = 1, axisymmetric wavelets). The wavelets are
real for N odd and i times a real function for N even.

**Harmonic coefficients** (the S2LET normalisation):
phi_l0 = sqrt((2l+1) / 4pi) Phi_l and psi^j_ln = sqrt((2l+1) / 8pi^2) kappa_j_l s_ln,
so the admissibility identity reads, for every l,

    4pi/(2l+1) |phi_l0|^2 + 8pi^2/(2l+1) sum_j sum_n |psi^j_ln|^2 = 1.

**Directional convolution.** For rho = (alpha, beta, gamma) (ZYZ, as
`sht.rotate`), (f * psi)(rho) = <R_rho psi, f> = sum_lmn f_lm conj(D^l_mn(rho))
conj(psi_ln). Since conj(D^l_mn) = e^{i m alpha} d^l_mn(beta) e^{i n gamma} and
our spin harmonics are sY_lm = (-1)^s sqrt((2l+1)/4pi) d^l_{m,-s} e^{i m phi},

    sqrt(2 pi) (f * psi_j)(omega, gamma) = sum_n (-1)^n e^{i n gamma} V_n(omega),
    V_n = spin-(-n) synthesis of  kappa_j_l s_ln f_lm,

with omega = (theta = beta, phi = alpha): one spin-weighted inverse transform
per order n. We carry the factor sqrt(2 pi) so that the mean over the N
orientations of |.|^2 equals sum_n |V_n|^2 (Parseval in gamma) and energies
need no extra constants: sum_n ||V_n||^2 = sum_lm kappa_j_l^2 |f_lm|^2.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import scipy.special

from sphere_plugin import grids as grids_lib
from sphere_plugin import sht

_GL_NODES = 200  # Gauss-Legendre nodes for k(t); the integrand is C-infinity.


def _bump(x):
  x = np.asarray(x, np.float64)
  out = np.zeros_like(x)
  inside = np.abs(x) < 1
  out[inside] = np.exp(-1.0 / (1.0 - x[inside] ** 2))
  return out


def _s_lam_sq_over_u(u, dilation):
  x = 2 * dilation / (dilation - 1) * (u - 1 / dilation) - 1
  return _bump(x) ** 2 / u


def kernel_k(t, dilation: float = 2.0) -> np.ndarray:
  """The smooth step k(t): 1 for t <= 1/lambda, 0 for t >= 1 (see module doc).

  Args:
    t: array of non-negative reals.
    dilation: lambda > 1.

  Returns:
    float64 array shaped like t.
  """
  t = np.asarray(t, np.float64)
  x, w = np.polynomial.legendre.leggauss(_GL_NODES)
  lo = 1.0 / dilation

  def integral(a):  # int_a^1 s_lam(u)^2 / u du, a in [lo, 1]
    a = np.asarray(a, np.float64)[..., None]
    u = a + (1 - a) * (x + 1) / 2
    return np.sum(w * _s_lam_sq_over_u(u, dilation), -1) * (1 - a[..., 0]) / 2

  total = integral(lo)
  mid = np.clip(t, lo, 1.0)
  out = integral(mid) / total
  return np.where(t <= lo, 1.0, np.where(t >= 1.0, 0.0, out))


def _check(lmax: int, J: int, dilation: float) -> int:
  if dilation <= 1:
    raise ValueError(f'dilation must be > 1, got {dilation}')
  if lmax < 2:
    raise ValueError(f'wavelets need lmax >= 2, got {lmax}')
  jmax = 0
  while dilation ** jmax < lmax:
    jmax += 1
  if not 1 <= J <= jmax + 1:
    raise ValueError(f'J = {J} scales: at lmax {lmax} with dilation {dilation} there are '
                     f'1 to {jmax + 1} scales (lambda^{jmax} >= lmax)')
  return jmax


@functools.lru_cache(maxsize=64)
def scale_profiles(lmax: int, J: int, dilation: float = 2.0):
  """Degree profiles of the scaling function and the J wavelets.

  Args:
    lmax: band limit.
    J: number of wavelet scales (1 .. Jmax + 1).
    dilation: lambda.

  Returns:
    (phi, kappa): float64 (lmax+1,) and (J, lmax+1); kappa[0] is the finest
    scale. phi^2 + sum_j kappa_j^2 = 1 for every l (to rounding).
  """
  jmax = _check(lmax, J, dilation)
  j0 = jmax - J + 1
  l = np.arange(lmax + 1, dtype=np.float64)
  phi = np.sqrt(kernel_k(l / dilation ** j0, dilation))
  kappa = []
  for i in range(jmax, j0 - 1, -1):  # finest first
    k2 = kernel_k(l / dilation ** (i + 1), dilation) - kernel_k(l / dilation ** i, dilation)
    kappa.append(np.sqrt(np.clip(k2, 0.0, None)))
  out = (phi, np.stack(kappa))
  for a in out:
    a.setflags(write=False)
  return out


def band_limits(lmax: int, J: int, dilation: float = 2.0) -> tuple[int, tuple[int, ...]]:
  """(largest l with phi_l > 0, per wavelet the largest l with kappa_j_l > 0)."""
  phi, kappa = scale_profiles(lmax, J, dilation)
  last = lambda a: int(np.nonzero(a > 0)[0].max())
  return last(phi), tuple(last(k) for k in kappa)


def directional_orders(N: int) -> np.ndarray:
  """The N orders n used at azimuthal band-limit N: -(N-1), -(N-3), ..., N-1."""
  if N < 1:
    raise ValueError(f'azimuthal band-limit N must be >= 1, got {N}')
  return np.arange(-(N - 1), N, 2)


@functools.lru_cache(maxsize=64)
def directional_weights(lmax: int, N: int) -> np.ndarray:
  """s_ln for n in `directional_orders(N)`.

  Returns:
    float64 (lmax+1, N), zero where |n| > l; each row with any allowed n has
    unit sum of squares.
  """
  orders = directional_orders(N)
  s = np.zeros((lmax + 1, N))
  for l in range(lmax + 1):
    g = min(N - 1, l)
    if (g - (N - 1)) % 2:
      g -= 1
    if g < 0:
      continue
    for k, n in enumerate(orders):
      if abs(n) <= g:
        s[l, k] = np.sqrt(scipy.special.comb(g, (g - n) // 2, exact=True) / 2.0 ** g)
  s.setflags(write=False)
  return s


def wavelet_coefficients(lmax: int, J: int, N: int = 1, dilation: float = 2.0):
  """Harmonic coefficients of the scaling function and the wavelets.

  Returns:
    (phi_lm, psi_lm): complex128 (lmax+1, 2*lmax+1) (only m = 0 non-zero) and
    (J, lmax+1, 2*lmax+1) with psi^j_ln at [j, l, lmax+n]; S2LET normalisation
    (module docstring).
  """
  phi, kappa = scale_profiles(lmax, J, dilation)
  s = directional_weights(lmax, N)
  l = np.arange(lmax + 1)
  phi_lm = np.zeros((lmax + 1, 2 * lmax + 1), np.complex128)
  phi_lm[:, lmax] = np.sqrt((2 * l + 1) / (4 * np.pi)) * phi
  psi = np.zeros((J, lmax + 1, 2 * lmax + 1), np.complex128)
  norm = np.sqrt((2 * l + 1) / (8 * np.pi ** 2))
  for k, n in enumerate(directional_orders(N)):
    if abs(n) <= lmax:
      psi[:, :, lmax + n] = norm * kappa * s[:, k]
  return phi_lm, psi


def tiling(lmax: int, J: int, N: int = 1, dilation: float = 2.0) -> np.ndarray:
  """The admissibility sum per degree from `wavelet_coefficients`; (lmax+1,), ideally 1."""
  phi_lm, psi = wavelet_coefficients(lmax, J, N, dilation)
  l = np.arange(lmax + 1)
  return (4 * np.pi / (2 * l + 1) * np.abs(phi_lm[:, lmax]) ** 2
          + 8 * np.pi ** 2 / (2 * l + 1) * np.sum(np.abs(psi) ** 2, axis=(0, 2)))


def _pad_lmax(coeffs, lmax):
  """Truncates (…, L+1, 2L+1) coefficients to lmax (or zero-pads)."""
  old = coeffs.shape[-2] - 1
  if lmax <= old:
    return coeffs[..., :lmax + 1, old - lmax:old + lmax + 1]
  d = lmax - old
  pad = [(0, 0)] * (coeffs.ndim - 2) + [(0, d), (d, d)]
  return jnp.pad(coeffs, pad)


def spin_components(flm, kappa_j, weights, grid, lmax: int):
  """The N spin fields V_n of one wavelet scale (module docstring).

  Args:
    flm: complex (..., L+1, 2L+1) coefficients of f (truncated to `lmax`).
    kappa_j: (lmax'+1,) degree profile of the wavelet (lmax' >= lmax).
    weights: (lmax'+1, N) directional weights s_ln.
    grid: grid to synthesise on.
    lmax: band limit of the wavelet (largest l with kappa_j_l > 0).

  Returns:
    complex (..., N, *grid.shape): V_n for n in `directional_orders(N)`.
  """
  grid = grids_lib.parse(grid)
  a = _pad_lmax(flm, lmax)
  rdtype = jnp.finfo(a.dtype).dtype
  orders = directional_orders(weights.shape[1])
  out = []
  for k, n in enumerate(orders):
    if abs(n) > lmax:
      out.append(jnp.zeros(a.shape[:-2] + grid.shape, a.dtype))
      continue
    mult = jnp.asarray(np.asarray(kappa_j)[:lmax + 1] * np.asarray(weights)[:lmax + 1, k],
                       rdtype)
    out.append(sht.inverse(a * mult[:, None], grid, spin=-int(n), real=False))
  return jnp.stack(out, axis=-1 - len(grid.shape))


def orientation_phases(N: int, gammas) -> np.ndarray:
  """(n_gamma, N) matrix (-1)^n e^{i n gamma_k}: V_n -> sqrt(2 pi) (f * psi)(., gamma_k)."""
  orders = directional_orders(N)
  gammas = np.asarray(gammas, np.float64)
  return (-1.0) ** orders[None, :] * np.exp(1j * np.outer(gammas, orders))


def directional_convolution(flm, grid, gammas, *, J: int, N: int = 1, dilation: float = 2.0):
  """sqrt(2 pi) (f * psi_j)(omega, gamma) for every wavelet j, grid point, gamma.

  Args:
    flm: complex (..., lmax+1, 2*lmax+1) coefficients of f.
    grid: grid of the points omega = (colatitude, longitude) = (beta, alpha).
    gammas: (G,) third Euler angles.
    J, N, dilation: the wavelets (`scale_profiles`, `directional_weights`).

  Returns:
    complex (..., J, G, *grid.shape).
  """
  grid = grids_lib.parse(grid)
  lmax = flm.shape[-2] - 1
  _, kappa = scale_profiles(lmax, J, dilation)
  weights = directional_weights(lmax, N)
  _, limits = band_limits(lmax, J, dilation)
  phases = jnp.asarray(orientation_phases(N, gammas))
  nd = len(grid.shape)
  res = []
  for j in range(J):
    v = spin_components(flm, kappa[j], weights, grid, limits[j])  # (..., N, *grid)
    v = jnp.moveaxis(v, -1 - nd, -1)
    res.append(jnp.moveaxis(jnp.einsum('...n,gn->...g', v, phases.astype(v.dtype)), -1, -1 - nd))
  return jnp.stack(res, axis=-2 - nd)
