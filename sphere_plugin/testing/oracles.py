"""Reference helpers shared by tests: random coefficients, ducc0 layouts, errors.

Coefficients use our layout (..., lmax+1, 2*lmax+1), [l, lmax+m].
"""

import numpy as np


def rel(a, b) -> float:
  """Relative error ||a - b|| / ||b|| over all entries."""
  a, b = np.asarray(a), np.asarray(b)
  return np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel())


def random_coeffs(lmax, spin=0, real=False, seed=0, batch=()):
  """Random complex coefficients (*batch, lmax+1, 2*lmax+1), zero outside |m| <= l, l >= |spin|.

  real: Hermitian-symmetric (the coefficients of a real field).
  """
  rng = np.random.default_rng(seed)
  shape = batch + (lmax + 1, 2 * lmax + 1)
  a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  ell = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None, :]
  a[..., (np.abs(m) > ell) | (ell < abs(spin))] = 0
  if real:
    a = hermitian(a, lmax)
  return a


def hermitian(a, lmax):
  """Coefficients of a real field: a_{l,-m} = (-1)^m conj(a_lm)."""
  a = a.copy()
  for m in range(1, lmax + 1):
    a[..., lmax - m] = (-1) ** m * np.conj(a[..., lmax + m])
  a[..., lmax] = a[..., lmax].real
  return a


def to_ducc(a, lmax):
  """Our (l, m) layout -> ducc0's packed m >= 0 layout."""
  out = np.zeros(((lmax + 1) * (lmax + 2)) // 2, complex)
  for m in range(lmax + 1):
    start = m * (2 * lmax + 1 - m) // 2
    out[start + m:start + lmax + 1] = a[m:, lmax + m]
  return out
