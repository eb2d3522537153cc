"""Scattering coefficients on Beam (DirectRunner) equal what tools/scatter.py caches."""

import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip('apache_beam')

from sphere_plugin import grids  # pylint: disable=g-import-not-at-top
from sphere_plugin import scattering_cache
from sphere_plugin.beam import scatter as beam_scatter


def make_input(path, times=5):
  grid = grids.gaussian(32, 16)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((times, 2) + grid.shape).astype(np.float32)
  ds = xr.Dataset(
      {'temperature': (('time', 'level', 'longitude', 'latitude'), x),
       'surface_pressure': (('time', 'longitude', 'latitude'), x[:, 0] * 2),
       'orography': (('longitude', 'latitude'), x[0, 1])},
      coords={'time': pd.date_range('2020-01-01', periods=times, freq='6h'),
              'level': [500, 850], 'longitude': grid.longitudes, 'latitude': grid.latitudes})
  ds.to_zarr(path, mode='w', zarr_format=2)


def test_beam_scattering_equals_the_cached_scatter_file(tmp_path):
  src = str(tmp_path / 'in.zarr')
  make_input(src)
  params = dict(J=2, N=1, depth=2)
  local, _ = scattering_cache.scatter_file(src, str(tmp_path / 'local.zarr'), progress=False,
                                           **params)
  beam = beam_scatter.scatter_zarr(
      src, str(tmp_path / 'beam.zarr'), chunks='time=2', progress=False,
      pipeline_args=['--direct_num_workers=2', '--direct_running_mode=multi_threading'],
      **params)
  want, got = xr.open_zarr(local).load(), xr.open_zarr(beam).load()
  assert sorted(got.data_vars) == sorted(want.data_vars)
  assert got.attrs == want.attrs  # scatter_file would reuse it as its cache
  for name in want.data_vars:
    assert got[name].dims == want[name].dims, name
    np.testing.assert_allclose(got[name].values, want[name].values, rtol=1e-6,
                               atol=1e-6 * float(np.abs(want[name].values).max()))
  for name in want.coords:
    np.testing.assert_array_equal(got[name].values, want[name].values)
  assert sorted(os.listdir(tmp_path)) == ['beam.zarr', 'in.zarr', 'local.zarr']
