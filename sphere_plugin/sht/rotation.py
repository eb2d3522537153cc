"""Rotation of spherical harmonic coefficients by Wigner-D matrices.

For R = R_z(alpha) R_y(beta) R_z(gamma) (ZYZ Euler angles, active, right-handed)
and (R f)(x) = f(R^{-1} x), the coefficients of R f are

    b_lm = sum_n D^l_{mn}(alpha, beta, gamma) a_ln,
    D^l_{mn} = e^{-i m alpha} d^l_{mn}(beta) e^{-i n gamma},

for every spin weight (a spin-s field rotates with its local frame, so its
coefficients transform like those of a scalar). The small-d matrix is factored
through Delta = d(pi/2) (Risbo 1996; McEwen & Wiaux 2011, eq. 8):

    d^l_{mn}(beta) = i^{n-m} sum_k Delta^l_{km} Delta^l_{kn} e^{i k beta},

so the angles may be traced JAX values (jit, vmap, grad over them) and the only
table is Delta, shape (lmax+1, 2 lmax+1, 2 lmax+1), built once per lmax in
float64. Cost O(lmax^3) per field.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin.sht import tables as tables_lib
from sphere_plugin.sht import wigner

_device_delta: dict = {}


@functools.lru_cache(maxsize=16)
def _delta(lmax: int) -> np.ndarray:
  return wigner.delta_table(lmax)


def delta_nbytes(lmax: int, itemsize: int = 4) -> int:
  """Bytes of the Delta table for `lmax`."""
  return (lmax + 1) * (2 * lmax + 1) ** 2 * itemsize


def _device(lmax, dtype):
  key = (lmax, np.dtype(dtype).name)
  if key not in _device_delta:
    need = delta_nbytes(lmax, np.dtype(dtype).itemsize)
    if need > tables_lib.get_table_budget():
      raise MemoryError(
          f'Wigner Delta table at lmax {lmax} needs {need / 2**30:.2f} GiB (budget '
          f'{tables_lib.get_table_budget() / 2**30:.2f} GiB); raise '
          'sphere_plugin.sht.set_table_budget() or rotate at a smaller lmax.')
    with jax.ensure_compile_time_eval():
      _device_delta[key] = jax.device_put(_delta(lmax).astype(dtype))
  return _device_delta[key]


def _apply(delta, z, spec):
  zz = jnp.stack([z.real, z.imag])
  out = jnp.einsum(spec, zz, delta, precision=jax.lax.Precision.HIGHEST)
  return jax.lax.complex(out[0], out[1])


def rotate(coeffs, alpha, beta, gamma):
  """Rotates coefficients by ZYZ Euler angles (radians); any spin.

  Args:
    coeffs: complex (..., lmax+1, 2*lmax+1), [l, lmax+m].
    alpha, beta, gamma: scalar angles (Python floats or JAX scalars).

  Returns:
    complex (..., lmax+1, 2*lmax+1), the coefficients of R f.
  """
  coeffs = jnp.asarray(coeffs)
  if coeffs.ndim < 2 or coeffs.shape[-1] != 2 * coeffs.shape[-2] - 1:
    raise ValueError(f'coefficients must have shape (..., lmax+1, 2*lmax+1), got '
                     f'{coeffs.shape}')
  if not jnp.iscomplexobj(coeffs):
    coeffs = coeffs.astype(jnp.complex64)
  lmax = coeffs.shape[-2] - 1
  rdtype = jnp.finfo(coeffs.dtype).dtype
  delta = _device(lmax, rdtype)
  m = jnp.arange(-lmax, lmax + 1, dtype=rdtype)
  alpha, beta, gamma = (jnp.asarray(t, dtype=rdtype) for t in (alpha, beta, gamma))
  # i^n e^{-i n gamma} = e^{i n (pi/2 - gamma)}.
  c = coeffs * jnp.exp(1j * m * (np.pi / 2 - gamma)).astype(coeffs.dtype)
  u = _apply(delta, c, 'c...ln,lkn->c...lk')
  u = u * jnp.exp(1j * m * beta).astype(coeffs.dtype)
  v = _apply(delta, u, 'c...lk,lkm->c...lm')
  # i^{-m} e^{-i m alpha} = e^{-i m (pi/2 + alpha)}.
  return v * jnp.exp(-1j * m * (np.pi / 2 + alpha)).astype(coeffs.dtype)
