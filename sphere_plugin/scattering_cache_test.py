"""The scattering cache: dims, values, reuse, parameter checks, the CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from sphere_plugin import grids
from sphere_plugin import scattering_cache
from sphere_plugin import sht
from sphere_plugin.nn import scattering

PARAMS = dict(J=2, N=2, depth=2, oversampling=2)  # small: gaussian:32x16 -> gaussian:16x8


def _dataset(descending=True):
  """gaussian:32x16 data, (time, level, latitude, longitude) with latitude descending."""
  g = grids.parse('gaussian:32x16')
  rng = np.random.default_rng(0)
  lmax = 15
  a = rng.normal(size=(3, 2, lmax + 1, 2 * lmax + 1)) + 1j * rng.normal(size=(3, 2, lmax + 1,
                                                                           2 * lmax + 1))
  l = np.arange(lmax + 1)[:, None]
  m = np.arange(-lmax, lmax + 1)[None]
  a = a * (np.abs(m) <= l) / (1 + l)
  f = np.asarray(sht.inverse(a.astype(np.complex64), g))  # (3, 2, lon, lat), real
  da = xr.DataArray(f, dims=('time', 'level', 'longitude', 'latitude'),
                    coords={'time': np.arange(3), 'level': [500, 850],
                            'longitude': g.longitudes, 'latitude': g.latitudes})
  da = da.transpose('time', 'level', 'latitude', 'longitude')
  if descending:
    da = da.isel(latitude=slice(None, None, -1))
  return xr.Dataset({'z': da, 'orography': da.isel(time=0, level=0, drop=True)}), f


def test_scatter_dataset_dims_and_values():
  ds, f = _dataset()
  out = scattering_cache.scatter_dataset(ds, batch_size=4, **PARAMS)
  assert out['z'].dims == ('time', 'level', 'path', 'longitude', 'latitude')
  assert out['orography'].dims == ('path', 'longitude', 'latitude')
  assert list(out['path'].values) == ['S0', 'S1[j=0]', 'S1[j=1]', 'S2[j1=0,j2=1]']
  assert list(out['depth'].values) == [0, 1, 1, 2] and list(out['j2'].values) == [-1, -1, -1, 1]
  assert grids.from_dataset(out) == grids.parse('gaussian:16x8')
  assert out.attrs['scattering_coarse_grid'] == 'gaussian:16x8'
  # Values: the transform on the data in our axis order (the descending
  # latitude was sorted back).
  direct = scattering.ScatteringTransform('gaussian:32x16', **PARAMS)(f.astype(np.float32))
  np.testing.assert_allclose(out['z'].values, direct, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['orography'].values, direct[0, 0], rtol=1e-4, atol=1e-5)


def test_scatter_file_writes_next_to_the_data_and_reuses_it(tmp_path, monkeypatch):
  ds, _ = _dataset()
  src = str(tmp_path / 'era.nc')
  ds.to_netcdf(src)
  out, computed = scattering_cache.scatter_file(src, progress=False, **PARAMS)
  assert computed and out == str(tmp_path / 'era.scattering.nc')
  with xr.open_dataset(out) as back:
    assert back['z'].dims == ('time', 'level', 'path', 'longitude', 'latitude')
    assert back['z'].shape == (3, 2, 4, 16, 8)
    assert back.attrs['scattering_J'] == 2 and back.attrs['scattering_source'] == 'era.nc'
    first = back['z'].values
  mtime = os.stat(out).st_mtime_ns

  def fail(*args, **kwargs):
    raise AssertionError('recomputed although the cache matches')

  monkeypatch.setattr(scattering_cache, 'scatter_dataset', fail)
  again, computed = scattering_cache.scatter_file(src, progress=False, **PARAMS)
  assert again == out and not computed and os.stat(out).st_mtime_ns == mtime
  # Other parameters: an error naming them, unless overwrite.
  with pytest.raises(FileExistsError, match='scattering_J'):
    scattering_cache.scatter_file(src, progress=False, **{**PARAMS, 'J': 3})
  monkeypatch.undo()
  out3, computed = scattering_cache.scatter_file(src, progress=False, overwrite=True,
                                                 **{**PARAMS, 'depth': 1})
  with xr.open_dataset(out3) as back:
    assert computed and back.sizes['path'] == 3
    np.testing.assert_allclose(back['z'].values, first[:, :, :3], rtol=1e-5, atol=1e-6)
  assert not [p for p in os.listdir(tmp_path) if 'partial' in p]


def test_scatter_zarr_healpix(tmp_path):
  g = grids.parse('healpix:4')
  rng = np.random.default_rng(1)
  ds = xr.Dataset({'t': (('time', 'pixel'), rng.normal(size=(2, g.npix)))},
                  coords={'time': [0, 1], 'pixel': np.arange(g.npix)})
  src = str(tmp_path / 'maps.zarr')
  ds.to_zarr(src, zarr_format=2)
  out, computed = scattering_cache.scatter_file(src, progress=False, J=2, N=1, depth=1,
                                                oversampling=2)
  assert computed and out == str(tmp_path / 'maps.scattering.zarr')
  back = xr.open_zarr(out)
  assert back['t'].dims == ('time', 'path', 'pixel') and back.sizes['pixel'] == 12 * 2 ** 2
  assert grids.from_dataset(back) == grids.parse('healpix:2')


def test_cli_runs_and_reports_reuse(tmp_path):
  ds, _ = _dataset()
  src = str(tmp_path / 'in.nc')
  ds.isel(time=slice(0, 1)).to_netcdf(src)
  tool = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools', 'scatter.py')
  args = [sys.executable, tool, f'--input={src}', '--J=2', '--depth=1', '--oversampling=2']
  first = subprocess.run(args, capture_output=True, text=True, check=False)
  assert first.returncode == 0, first.stderr
  second = subprocess.run(args, capture_output=True, text=True, check=False)
  assert second.returncode == 0 and 'up to date' in second.stderr
  bad = subprocess.run(args[:2] + [f'--input={tmp_path}/missing.nc'], capture_output=True,
                       text=True, check=False)
  assert bad.returncode == 1 and bad.stderr.strip().startswith('scatter: error:')


def test_replaced_source_with_same_size_and_mtime_is_not_reused(tmp_path):
  """The cache is keyed on the source's content, not on what `cp -p` keeps."""
  ds, _ = _dataset()
  src = str(tmp_path / 'era.nc')
  ds.to_netcdf(src)
  out, _ = scattering_cache.scatter_file(src, progress=False, **PARAMS)
  st = os.stat(src)
  changed = ds.copy(deep=True)
  changed['z'] = changed['z'] * 2.0  # same dtype and shape: same file size
  changed.to_netcdf(str(tmp_path / 'new.nc'))
  os.replace(tmp_path / 'new.nc', src)
  os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert os.stat(src).st_size == st.st_size and os.stat(src).st_mtime_ns == st.st_mtime_ns
  with pytest.raises(FileExistsError, match='computed from other data'):
    scattering_cache.scatter_file(src, progress=False, **PARAMS)
  _, computed = scattering_cache.scatter_file(src, progress=False, overwrite=True, **PARAMS)
  with xr.open_dataset(out) as back:
    assert computed
    np.testing.assert_allclose(back['z'].values[:, :, 0],
                               2 * scattering_cache.scatter_dataset(ds, **PARAMS)['z'].values[:, :, 0],
                               rtol=1e-4, atol=1e-5)
