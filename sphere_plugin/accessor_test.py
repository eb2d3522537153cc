"""The ds.sphere / da.sphere accessor: layout handling, laziness, attrs, errors.

Values are checked against `sphere_plugin.regrid` on arrays put into our axis
conventions by hand (numpy transposes and flips, not the accessor's code).
"""

import dask.array
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sphere_plugin  # registers the accessor
from sphere_plugin import grids
from sphere_plugin import regrid


def wb2_like(nlon=32, nlat=17, times=4):
  """ERA5/WB2-style: (time, level, latitude, longitude), latitude descending, lon -180..180."""
  grid = grids.equiangular_with_poles(nlon, nlat)
  lat = grid.latitudes[::-1]
  lon = np.arange(nlon) * 360.0 / nlon - 180.0
  la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing='ij')
  smooth = (np.cos(la) ** 2 * np.cos(lo) + 0.5 * np.sin(la)).astype(np.float32)
  scale = (1 + np.arange(times))[:, None, None, None] * np.array([1.0, 2.0])[None, :, None, None]
  sst = np.where(np.abs(la) < 0.5, np.nan, smooth)  # NaN over a "land" band
  return xr.Dataset(
      {'temperature': (('time', 'level', 'latitude', 'longitude'),
                       (smooth * scale).astype(np.float32), {'units': 'K'}),
       'sea_surface_temperature': (('time', 'latitude', 'longitude'),
                                   np.repeat(sst[None], times, 0).astype(np.float32)),
       'land_sea_mask': (('latitude', 'longitude'), smooth),
       'co2': (('time',), np.arange(times, dtype=np.float32))},
      coords={'time': pd.date_range('2020-01-01', periods=times, freq='6h'),
              'level': [500, 850], 'latitude': lat, 'longitude': lon},
      attrs={'title': 'test'}), grid


def as_ours(da, lat='latitude', lon='longitude'):
  """Our convention by hand: (..., lon from 0, lat ascending)."""
  x = da.transpose(..., lon, lat).values[..., ::-1]
  return np.roll(x, -np.argmin(np.mod(da[lon].values, 360)), axis=-2)


@pytest.mark.parametrize('method', ['spectral', 'bilinear'])
def test_regrid_to_healpix_from_a_wb2_layout(method):
  ds, grid = wb2_like()
  out = ds.sphere.regrid('healpix:8', method, variables=['temperature', 'land_sea_mask', 'co2'])
  assert out.temperature.dims == ('time', 'level', 'pixel')
  assert out.land_sea_mask.dims == ('pixel',)
  xr.testing.assert_identical(out.co2.drop_vars('crs'), ds.co2)  # crs: the grid mapping
  assert out.pixel.attrs == {'healpix_nside': 8, 'healpix_order': 'ring',
                             'standard_name': 'healpix_index', 'units': '1'}
  assert out.temperature.attrs['grid_mapping'] == 'crs'
  assert out.attrs['title'] == 'test' and out.attrs['grid'] == 'healpix:8'
  assert out.attrs['regrid_method'] == method
  assert out.temperature.attrs['units'] == 'K'
  assert out.sphere.grid == grids.healpix(8)
  np.testing.assert_allclose(out.latitude, grids.healpix(8).latitudes)
  want = regrid.regrid(as_ours(ds.temperature), grid, 'healpix:8', method)
  np.testing.assert_allclose(out.temperature.values, want, rtol=1e-6, atol=1e-6)


def test_latlon_to_latlon_keeps_the_input_layout():
  ds, grid = wb2_like()
  out = ds.sphere.regrid('equiangular_with_poles:64x33', 'bilinear')
  assert out.temperature.dims == ds.temperature.dims
  assert out.latitude.values[0] == 90.0 and out.longitude.values[0] == -180.0
  assert np.all(np.diff(out.longitude.values) > 0)
  assert out.sphere.grid == grids.equiangular_with_poles(64, 33)
  want = regrid.regrid(as_ours(ds.temperature), grid, 'equiangular_with_poles:64x33', 'bilinear')
  np.testing.assert_allclose(as_ours(out.temperature), want, rtol=1e-6)
  # Round trip through a finer grid and back lands on the input coordinates.
  back = out.sphere.regrid(grid, 'bilinear')
  xr.testing.assert_allclose(back.latitude, ds.latitude)
  xr.testing.assert_allclose(back.longitude, ds.longitude)


def test_conservative_skips_nans_and_says_so():
  ds, grid = wb2_like()
  out = ds.sphere.regrid('healpix:8', 'conservative')
  sst = out.sea_surface_temperature
  assert 'valid' in sst.attrs['regrid_missing_values']
  assert 0 < float(sst.isnull().mean()) < 0.6
  assert np.nanmax(sst.values) <= np.nanmax(ds.sea_surface_temperature.values) + 1e-6


def test_dask_input_stays_lazy_and_matches():
  ds, _ = wb2_like(times=6)
  lazy = ds.chunk(time=2).sphere.regrid('gaussian:32x16', 'spectral',
                                         variables=['temperature'])
  assert isinstance(lazy.temperature.data, dask.array.Array)
  assert lazy.temperature.data.chunks[0] == (2, 2, 2)
  eager = ds.sphere.regrid('gaussian:32x16', 'spectral', variables=['temperature'])
  xr.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6)


def test_vector_pairs_default_to_wb2_winds():
  ds, _ = wb2_like()
  ds['u_component_of_wind'] = ds.temperature
  ds['v_component_of_wind'] = ds.temperature * 0
  out = ds.sphere.regrid('healpix:4', 'nearest', variables=['u_component_of_wind',
                                                           'v_component_of_wind'])
  # Nearest as a vector: rotated into the target frames, so v is not all zero.
  assert float(abs(out.v_component_of_wind).max()) > 0
  scalar = ds.sphere.regrid('healpix:4', 'nearest', vector_pairs=None,
                            variables=['u_component_of_wind', 'v_component_of_wind'])
  assert float(abs(scalar.v_component_of_wind).max()) == 0
  with pytest.raises(ValueError, match='missing') as e:
    ds.sphere.regrid('healpix:4', variables=['u_component_of_wind'])
  assert 'vector_pairs=None (--vector_pairs=none' in str(e.value)  # both spellings


def test_errors_and_dataarray_accessor():
  ds, _ = wb2_like()
  with pytest.raises(ValueError, match='not in the dataset'):
    ds.sphere.regrid('healpix:4', variables=['geopotential'])
  with pytest.raises(ValueError, match='unknown grid kind'):
    ds.sphere.regrid('cubed:32')
  with pytest.raises(ValueError, match='latitude'):
    ds.isel(latitude=slice(0, 10)).sphere.grid
  ds['zonal_mean'] = ds.temperature.mean('longitude')
  with pytest.warns(UserWarning, match='zonal_mean'):
    out = ds.sphere.regrid('healpix:4', variables=['temperature', 'zonal_mean'])
  assert 'zonal_mean' not in out
  da = ds.temperature.sphere.regrid('healpix:4')
  assert da.name == 'temperature' and da.dims == ('time', 'level', 'pixel')
  assert da.attrs['healpix_nside'] == 4 and da.attrs['units'] == 'K'
  assert ds.temperature.sphere.grid == grids.equiangular_with_poles(32, 17)


def test_longitude_zero_stored_as_tiny_negative_is_still_column_zero():
  grid = grids.equiangular_with_poles(144, 73)
  lon = np.arange(144) * 2.5 - 180.0
  lon[72] = -1e-9  # what np.arange(-180, 180, step) can give for 0
  field = np.cos(np.radians(lon))[None] * np.cos(np.radians(grid.latitudes))[:, None]
  ds = xr.Dataset({'f': (('lat', 'lon'), field)}, coords={'lat': grid.latitudes, 'lon': lon})
  out = ds.sphere.regrid(grid, 'bilinear')
  np.testing.assert_allclose(out.f.values, field, atol=1e-12)


def test_dropped_coordinates_warn_and_dtypes_match_when_lazy():
  ds, _ = wb2_like()
  ds = ds.assign_coords(land=ds.land_sea_mask > 0.5)
  with pytest.warns(UserWarning, match="coordinates \\['land'\\]"):
    ds.sphere.regrid('healpix:4', 'nearest', variables=['land_sea_mask'])
  ints = xr.Dataset({'mask': (ds.land_sea_mask > 0).astype(np.int8)})
  for method in ('nearest', 'spectral'):
    lazy = ints.chunk().sphere.regrid('healpix:4', method)
    assert lazy.mask.dtype == lazy.mask.compute().dtype == np.float32
  strings = ds.assign(name=ds.land_sea_mask.astype(str))
  with pytest.raises(ValueError, match="\\['name'\\] are not numeric"):
    strings.sphere.regrid('healpix:4', 'nearest')


def test_spectral_refuses_inf_and_names_the_variable():
  ds, _ = wb2_like()
  t = ds.temperature.values.copy()
  t[2, 1, 4, 5] = np.inf
  ds['temperature'] = (ds.temperature.dims, t)
  with pytest.raises(ValueError, match=r"variable 'temperature': .*1 \+Inf"):
    ds[['temperature']].sphere.regrid('healpix:4')
  with pytest.raises(ValueError, match=r'1 \+Inf'):  # lazy: refused when computed
    ds[['temperature']].chunk(time=1).sphere.regrid('healpix:4').compute()


CF_U = {'long_name': 'U component of wind', 'standard_name': 'eastward_wind', 'units': 'm s-1'}
CF_V = {'long_name': 'V component of wind', 'standard_name': 'northward_wind', 'units': 'm s-1'}


@pytest.mark.parametrize('method', regrid.METHODS)
@pytest.mark.parametrize('lazy', [False, True])
def test_each_wind_component_keeps_its_own_attrs(method, lazy):
  ds, _ = wb2_like(times=2)
  ds['u_component_of_wind'] = ds.temperature.assign_attrs(CF_U)
  ds['v_component_of_wind'] = (ds.temperature * 0.5).assign_attrs(CF_V)
  if lazy:
    ds = ds.chunk(time=1)
  out = ds.sphere.regrid('healpix:4', method, variables=['u_component_of_wind',
                                                          'v_component_of_wind'])
  # Their own attrs, plus the HEALPix grid mapping and the method of the result.
  added = {'grid_mapping': 'crs', 'regrid_method': method}
  assert out.u_component_of_wind.attrs == {**CF_U, **added}
  assert out.v_component_of_wind.attrs == {**CF_V, **added}  # not u's


def test_missing_values_note_only_on_variables_with_nan():
  ds, _ = wb2_like(times=2)
  for lazy in (False, True):
    src = ds.chunk(time=1) if lazy else ds
    out = src.sphere.regrid('healpix:8', 'conservative')
    assert 'regrid_missing_values' in out.sea_surface_temperature.attrs
    assert 'regrid_missing_values' not in out.temperature.attrs
    assert 'regrid_missing_values' not in out.land_sea_mask.attrs
  # A stale note from an earlier regrid is removed when there is no NaN now.
  again = out[['temperature']].compute()
  again['temperature'].attrs['regrid_missing_values'] = 'stale'
  assert 'regrid_missing_values' not in again.sphere.regrid('healpix:4', 'nearest').temperature.attrs


def test_ringing_warning_names_the_variable_once_and_points_at_the_caller():
  ds, _ = wb2_like(times=4)
  step = (ds.land_sea_mask > 0.3).astype(np.float32)  # a 0/1 field rings spectrally
  ds['mask'] = step.expand_dims(time=ds.time).copy()
  with pytest.warns(regrid.RingingWarning) as caught:
    ds.chunk(time=1).sphere.regrid('gaussian:64x32', variables=['mask', 'temperature']).compute()
  ringing = [w for w in caught if issubclass(w.category, regrid.RingingWarning)]
  assert len(ringing) == 1, [str(w.message) for w in ringing]  # not once per chunk
  message = str(ringing[0].message)
  assert "variable 'mask'" in message and 'after regridding vs 0/1 before' in message
  with pytest.warns(regrid.RingingWarning) as caught:
    ds.sphere.regrid('gaussian:64x32', variables=['mask'])
  assert caught[0].filename == __file__  # this test, not accessor.py


def mixed_like(times=2):
  """A WB2/ERA5-like mix: smooth fields, winds, an SST with NaN over land, precipitation."""
  ds, grid = wb2_like(times=times)
  ds['u_component_of_wind'] = ds.temperature.assign_attrs(CF_U)
  ds['v_component_of_wind'] = (ds.temperature * 0.5).assign_attrs(CF_V)
  rain = np.maximum(ds.temperature.isel(level=0) - 1.0, 0.0) ** 2
  ds['total_precipitation_6hr'] = rain.assign_attrs(units='m')
  ds['rate'] = rain.assign_attrs(standard_name='precipitation_flux')  # by attrs only
  return ds.drop_vars('co2'), grid


@pytest.mark.parametrize('lazy', [False, True])
def test_auto_picks_a_method_per_variable_and_records_it(lazy):
  ds, grid = mixed_like()
  src = ds.chunk(time=1) if lazy else ds
  out = src.sphere.regrid('healpix:8', 'auto').compute()
  got = {n: out[n].attrs['regrid_method'] for n in out.data_vars}
  assert got == {'temperature': 'spectral', 'u_component_of_wind': 'spectral',
                 'v_component_of_wind': 'spectral',
                 'sea_surface_temperature': 'conservative',  # NaN over land
                 'total_precipitation_6hr': 'conservative', 'rate': 'conservative',
                 'land_sea_mask': 'conservative'}
  assert out.attrs['regrid_method'] == 'mixed'
  assert 'regrid_missing_values' in out.sea_surface_temperature.attrs
  # Each variable equals a single-method regrid of it; winds stay a spin-1 pair.
  spectral = ds.sphere.regrid('healpix:8', variables=['temperature', 'u_component_of_wind',
                                                      'v_component_of_wind'])
  conservative = ds.sphere.regrid('healpix:8', 'conservative',
                                  variables=['sea_surface_temperature', 'total_precipitation_6hr'])
  for n in spectral.data_vars:
    np.testing.assert_array_equal(out[n].values, spectral[n].values)
  for n in conservative.data_vars:
    np.testing.assert_array_equal(out[n].values, conservative[n].values)
  as_scalars = ds.sphere.regrid('healpix:8', variables=['u_component_of_wind'],
                                vector_pairs=None)
  assert np.abs(out.u_component_of_wind - as_scalars.u_component_of_wind).max() > 1e-3
  assert float(out.total_precipitation_6hr.min()) >= 0  # no ringing


def test_a_mapping_of_methods_and_its_errors():
  ds, _ = mixed_like()
  out = ds.sphere.regrid('healpix:8', {'sea_surface_temperature': 'conservative',
                                       'total_precipitation_6hr': 'auto', '*': 'bilinear'})
  assert out.sea_surface_temperature.attrs['regrid_method'] == 'conservative'
  assert out.total_precipitation_6hr.attrs['regrid_method'] == 'conservative'
  assert out.temperature.attrs['regrid_method'] == 'bilinear'
  only = ds.sphere.regrid('healpix:8', {'sea_surface_temperature': 'nearest'},
                          variables=['sea_surface_temperature', 'temperature'])
  assert only.temperature.attrs['regrid_method'] == 'spectral'  # the default for the rest
  with pytest.raises(ValueError, match=r"not regridded here.*\['nope'\]|\['nope'\].*not "):
    ds.sphere.regrid('healpix:8', {'nope': 'conservative'})
  with pytest.raises(ValueError, match="unknown regridding method 'cubic' for variable"):
    ds.sphere.regrid('healpix:8', {'temperature': 'cubic'})
  with pytest.raises(ValueError, match='vector pair u_component_of_wind:v_component_of_wind '
                     'needs one method'):
    ds.sphere.regrid('healpix:8', {'u_component_of_wind': 'conservative',
                                   'v_component_of_wind': 'spectral'})
  # Spectral on the SST names the variable and points at the per-variable way out.
  with pytest.raises(ValueError, match="'sea_surface_temperature'.*--method_for"):
    ds.sphere.regrid('healpix:8', variables=['sea_surface_temperature'])


def test_dataarray_declaring_nested_order_in_its_own_attrs_regrids_like_ring():
  # to_dataset() keeps a DataArray's attrs on the variable: the NESTED declaration
  # was not seen and the field was read as RING (scrambled) before.
  import healpy  # pylint: disable=g-import-not-at-top
  nside = 4
  ring = np.cos(np.radians(healpy.pix2ang(nside, np.arange(12 * nside**2), lonlat=True)[1]))
  def da(values, order):
    return xr.DataArray(values, dims=('pixel',), coords={'pixel': np.arange(values.size)},
                        name='t', attrs={'healpix_nside': nside, 'healpix_order': order})
  want = da(ring, 'ring').sphere.regrid('gaussian:16x8', 'nearest')
  got = da(healpy.reorder(ring, r2n=True), 'nested').sphere.regrid('gaussian:16x8', 'nearest')
  np.testing.assert_array_equal(got.values, want.values)
