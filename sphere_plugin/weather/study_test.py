"""Pieces of the forecasting study: the kinetic-energy spectrum and the tables."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sphere_plugin import grids
from sphere_plugin.weather import study


def test_ke_spectrum_sums_to_the_global_mean_kinetic_energy():
  g = grids.parse('gaussian:32x16')
  lon, lat = np.meshgrid(np.radians(g.longitudes), np.radians(g.latitudes), indexing='ij')
  rng = np.random.default_rng(0)
  # Band-limited winds: low-order trigonometric polynomials on the sphere.
  u = np.stack([10 * np.cos(lat) + a * np.cos(lat) ** 2 * np.sin(2 * lon)
                for a in rng.normal(size=2)])
  v = np.stack([3 * np.sin(lat) * np.cos(lat) * np.cos(lon) + a * np.cos(lat)
                for a in rng.normal(size=2)])
  e = study.ke_spectrum(u, v, g)
  assert e.shape == (g.lmax + 1,)
  w = g.area_weights
  ke = np.mean([np.sum(0.5 * (u[i] ** 2 + v[i] ** 2) * w) / w.sum() for i in range(2)])
  np.testing.assert_allclose(e.sum(), ke, rtol=1e-4)
  assert e[0] == 0  # a spin-1 field has no degree 0
  # A zonal jet u = 10 cos(lat) is pure degree 1.
  e1 = study.ke_spectrum(10 * np.cos(lat)[None], np.zeros_like(lat)[None], g)
  assert e1[1] > 0.999 * e1.sum()


def _scores(value, lead_hours=(6, 24)):
  leads = (np.array(lead_hours) * 3600 * 10**9).astype('timedelta64[ns]')
  da = xr.DataArray(np.full((len(leads), 1), value), dims=('prediction_timedelta', 'level'),
                    coords={'prediction_timedelta': leads, 'level': [500]},
                    attrs={'units': 'm**2 s**-2'})
  return xr.Dataset({'geopotential': da})


def test_table_rows_mean_and_spread_over_seeds():
  scores = {'a': {0: {'rmse': _scores(1.0)}, 1: {'rmse': _scores(3.0)}},
            'persistence': {None: {'rmse': _scores(5.0)}}}
  rows = study.table_rows(scores, ('6h', '24h'))
  a = [r for r in rows if r['model'] == 'a' and r['lead'] == '24h'][0]
  assert (a['mean'], a['std'], a['seeds']) == (2.0, 1.0, 2)
  p = [r for r in rows if r['model'] == 'persistence'][0]
  assert (p['mean'], p['std'], p['seeds']) == (5.0, 0.0, 1)
  md = study._markdown(rows, 'rmse', ['a', 'persistence'], ('6h',))  # pylint: disable=protected-access
  assert '| z500 (m**2 s**-2) | 6h | 2 ± 1 | 5 |' in md
