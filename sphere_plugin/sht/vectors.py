"""Tangent vector fields as spin-1 fields.

An (eastward, northward) pair such as the wind (u, v) is the spin-1 field

    f = u + i v.

With the McEwen-Wiaux / s2fft harmonics (see `transforms`), this is a spin +1
quantity: for the gradient of a scalar psi, u + i v = i * eth(psi), so its
spin-1 coefficients are i * sqrt(l (l+1)) * psi_lm. (In the theta/phi basis of
healpy and ducc0, f = -i (A_theta + i A_phi), a constant phase.)
"""

from __future__ import annotations

import jax.numpy as jnp


def vector_to_spin(u, v):
  """(eastward u, northward v), each (..., *grid.shape) -> spin-1 field u + i v."""
  return jnp.asarray(u) + 1j * jnp.asarray(v)


def spin_to_vector(f):
  """Spin-1 field (..., *grid.shape) -> (eastward, northward) = (Re f, Im f)."""
  f = jnp.asarray(f)
  return f.real, f.imag
