"""Wigner small-d functions d^l_{mn}(theta) by a stable three-term recursion in l.

Convention: d^l_{mn}(beta) = <l m| exp(-i beta J_y) |l n> (Wikipedia / Edmonds /
s2fft), so that the spin-weighted harmonics of McEwen & Wiaux (2011), used by
s2fft, are

    sY_lm(theta, phi) = (-1)^s sqrt((2l+1)/(4 pi)) d^l_{m,-s}(theta) e^{i m phi},

which for s = 0 is the orthonormal Y_lm with the Condon-Shortley phase.

The recursion (Edmonds 1957, eq. 4.1.x; used by Risbo and by libsharp for the
spin case) starts at l0 = max(|m|, |n|) from the closed form and runs upward:

    sqrt(((l+1)^2 - m^2)((l+1)^2 - n^2)) / ((l+1)(2l+1)) d^{l+1}
        = (cos theta - m n / (l (l+1))) d^l
          - sqrt((l^2 - m^2)(l^2 - n^2)) / (l (2l+1)) d^{l-1}.

Values that underflow float64 near the poles at high m are carried as a scaled
mantissa and a log-scale (the libsharp trick), so the tables are accurate for any
degree. Everything here is NumPy float64: it builds constant tables once.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

_RESCALE = 1e150
_LOG_RESCALE = np.log(_RESCALE)


def _start_values(j, m, n, theta):
  """log|d^j_{mn}(theta)| and its sign for j = max(|m|, |n|).

  Args:
    j, m, n: integer arrays broadcastable against each other, j = max(|m|,|n|).
    theta: float array broadcastable against them, in [0, pi].

  Returns:
    (logmag, sign) arrays of the broadcast shape; logmag is -inf where the value
    is exactly zero.
  """
  # The explicit sum for d^j_{mn} has a single term when j = max(|m|, |n|).
  s = np.maximum(0, n - m)
  log_norm = 0.5 * (gammaln(j + m + 1) + gammaln(j - m + 1) + gammaln(j + n + 1)
                    + gammaln(j - n + 1))
  log_den = (gammaln(j + n - s + 1) + gammaln(s + 1) + gammaln(m - n + s + 1)
             + gammaln(j - m - s + 1))
  p_cos = 2 * j + n - m - 2 * s
  p_sin = m - n + 2 * s
  c = np.cos(theta / 2)
  sn = np.sin(theta / 2)
  with np.errstate(divide='ignore', invalid='ignore'):
    log_c = np.where(p_cos == 0, 0.0, p_cos * np.log(np.abs(c)))
    log_s = np.where(p_sin == 0, 0.0, p_sin * np.log(np.abs(sn)))
  logmag = log_norm - log_den + log_c + log_s
  sign = np.where((m - n + s) % 2 == 0, 1.0, -1.0)
  sign = sign * np.where((p_cos % 2 == 1) & (c < 0), -1.0, 1.0)
  sign = sign * np.where((p_sin % 2 == 1) & (sn < 0), -1.0, 1.0)
  return logmag, sign


def wigner_d(lmax: int, ms, ns, thetas) -> np.ndarray:
  """Wigner small-d d^l_{mn}(theta) for l = 0..lmax.

  Args:
    lmax: largest degree.
    ms: integer orders m, shape (M,), each |m| <= lmax.
    ns: integer orders n, shape (N,), each |n| <= lmax.
    thetas: angles in radians, shape (T,).

  Returns:
    float64 array of shape (M, lmax+1, N, T) with d^l_{m n}(theta); zero where
    l < max(|m|, |n|).
  """
  ms = np.asarray(ms, dtype=np.int64)[:, None, None]
  ns = np.asarray(ns, dtype=np.int64)[None, :, None]
  thetas = np.asarray(thetas, dtype=np.float64)[None, None, :]
  if np.any(np.abs(ms) > lmax) or np.any(np.abs(ns) > lmax):
    raise ValueError(f'orders must satisfy |m|, |n| <= lmax={lmax}')
  shape = np.broadcast_shapes(ms.shape, ns.shape, thetas.shape)
  l0 = np.broadcast_to(np.maximum(np.abs(ms), np.abs(ns)), shape)
  logmag, sign = _start_values(l0, ms, ns, thetas)
  logmag = np.broadcast_to(logmag, shape)
  sign = np.broadcast_to(sign, shape)
  cos_t = np.broadcast_to(np.cos(thetas), shape)
  mf = ms.astype(np.float64)
  nf = ns.astype(np.float64)

  out = np.zeros((shape[0], lmax + 1) + shape[1:], dtype=np.float64)
  prev = np.zeros(shape)
  cur = np.zeros(shape)
  scale = np.zeros(shape)
  for l in range(lmax + 1):
    if l > 0:
      # Advance rows that started before l from (l-1, l-2) to l.
      j = l - 1
      active = l0 <= j
      num = np.sqrt(np.maximum((j + 1.0) ** 2 - mf**2, 0)
                    * np.maximum((j + 1.0) ** 2 - nf**2, 0))
      a = np.divide((j + 1.0) * (2 * j + 1.0), num,
                    out=np.zeros(np.broadcast_shapes(num.shape, shape)), where=num > 0)
      b = mf * nf / (j * (j + 1.0)) if j > 0 else np.zeros_like(mf * nf)
      c = (np.sqrt(np.maximum(j**2 - mf**2, 0) * np.maximum(j**2 - nf**2, 0))
           / (j * (2 * j + 1.0))) if j > 0 else np.zeros_like(mf * nf)
      nxt = a * ((cos_t - b) * cur - c * prev)
      prev = np.where(active, cur, prev)
      cur = np.where(active, nxt, cur)
      big = np.abs(cur) > _RESCALE
      if np.any(big):
        cur = np.where(big, cur / _RESCALE, cur)
        prev = np.where(big, prev / _RESCALE, prev)
        scale = np.where(big, scale + _LOG_RESCALE, scale)
    starting = l0 == l
    if np.any(starting):
      cur = np.where(starting, np.where(np.isfinite(logmag), sign, 0.0), cur)
      prev = np.where(starting, 0.0, prev)
      scale = np.where(starting, np.where(np.isfinite(logmag), logmag, 0.0), scale)
    with np.errstate(under='ignore'):
      out[:, l] = np.where(l0 <= l, cur * np.exp(scale), 0.0)
  return out


def delta_table(lmax: int) -> np.ndarray:
  """Delta^l_{mn} = d^l_{mn}(pi/2) for all l <= lmax, |m|, |n| <= lmax.

  Returns:
    float64 array of shape (lmax+1, 2*lmax+1, 2*lmax+1), [l, lmax+m, lmax+n].
  """
  orders = np.arange(-lmax, lmax + 1)
  d = wigner_d(lmax, orders, orders, np.array([np.pi / 2]))[..., 0]
  return np.transpose(d, (1, 0, 2))
