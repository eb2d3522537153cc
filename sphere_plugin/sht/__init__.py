"""Spin-weighted spherical harmonic transforms and rotations (see README).

Public API:
  forward(x, grid, lmax=None, spin=0)  -> coefficients (..., lmax+1, 2 lmax+1)
  inverse(coeffs, grid, spin=0)        -> field (..., *grid.shape)
  rotate(coeffs, alpha, beta, gamma)   -> rotated coefficients (ZYZ Euler angles)
"""

from sphere_plugin.sht.rings import set_longitude_method
from sphere_plugin.sht.rotation import rotate
from sphere_plugin.sht.tables import get_table_budget
from sphere_plugin.sht.tables import set_table_budget
from sphere_plugin.sht.tables import table_nbytes
from sphere_plugin.sht.transforms import clear_cache
from sphere_plugin.sht.transforms import default_n_iter
from sphere_plugin.sht.transforms import forward
from sphere_plugin.sht.transforms import inverse
from sphere_plugin.sht.vectors import spin_to_vector
from sphere_plugin.sht.vectors import vector_to_spin
