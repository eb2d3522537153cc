"""HEALPix datasets in the ecosystem's conventions, in and out (issue 16, item 3).

References: healpy.reorder (RING <-> NESTED) and xdggs (encoding, `decode`). A
NESTED or permuted dataset must regrid to the same numbers as its RING version:
after reordering, the regridders see the same float32 arrays, so agreement is
exact in practice; 1e-6 (relative to a field of size ~1) allows for nothing
but a different summation order.
"""

import healpy
import numpy as np
import pytest
import xarray as xr
import xdggs

import sphere_plugin  # registers ds.sphere
from sphere_plugin import grids
from sphere_plugin import scattering_cache
from sphere_plugin.io import datasets

NSIDE = 8
TARGET = 'gaussian:64x32'
TOL = 1e-6


def ring_field(nside=NSIDE):
  """(2, npix) float32, smooth (degree <= 4), RING order."""
  g = grids.healpix(nside)
  lat, lon = np.radians(g.latitudes), np.radians(g.longitudes)
  f = np.cos(lat) ** 2 * np.cos(2 * lon) + np.sin(lat) + 0.3 * np.cos(lat) ** 4 * np.sin(4 * lon)
  return np.stack([f, 2 - f]).astype(np.float32)


def ring_dataset(nside=NSIDE):
  return xr.Dataset({'t': (('time', 'pixel'), ring_field(nside), {'units': 'K'})},
                    coords={'time': [0, 1]})


def easygems_nested(nside=NSIDE):
  """easy.gems / CDO style: a `cell` dim without coordinate, a `crs` grid mapping."""
  data = healpy.reorder(ring_field(nside), r2n=True)
  return xr.Dataset(
      {'t': (('time', 'cell'), data, {'units': 'K', 'grid_mapping': 'crs'})},
      coords={'time': [0, 1],
              'crs': ((), np.int32(0), {'grid_mapping_name': 'healpix', 'healpix_nside': nside,
                                        'healpix_order': 'nest'})})


def xdggs_nested(nside=NSIDE, cells=None):
  """xdggs style: a `cell_ids` coordinate (nested ids, any subset/permutation)."""
  data = healpy.reorder(ring_field(nside), r2n=True)
  cells = np.arange(data.shape[-1]) if cells is None else np.asarray(cells)
  return xr.Dataset(
      {'t': (('time', 'cells'), data[:, cells], {'units': 'K'})},
      coords={'time': [0, 1],
              'cell_ids': ('cells', cells, {'grid_name': 'healpix',
                                            'level': int(np.log2(nside)),
                                            'indexing_scheme': 'nested'})})


def cf_nested(nside=NSIDE):
  """CF 1.13: a grid mapping with refinement_level / indexing_scheme, a
  healpix_index coordinate."""
  data = healpy.reorder(ring_field(nside), r2n=True)
  return xr.Dataset(
      {'t': (('time', 'cell'), data, {'grid_mapping': 'healpix'})},
      coords={'time': [0, 1],
              'cell': ('cell', np.arange(data.shape[-1]),
                       {'standard_name': 'healpix_index', 'units': '1'}),
              'healpix': ((), np.int8(0), {'grid_mapping_name': 'healpix',
                                           'refinement_level': int(np.log2(nside)),
                                           'indexing_scheme': 'nested'})})


@pytest.fixture(scope='module')
def reference():
  return ring_dataset().sphere.regrid(TARGET)


def assert_same(out, ref):
  assert out.t.dims == ref.t.dims
  np.testing.assert_allclose(out.t.values, ref.t.values, rtol=0, atol=TOL)
  assert out.attrs['regrid_source_grid'] == f'healpix:{NSIDE}'
  assert 'crs' not in out.coords and 'grid_mapping' not in out.t.attrs  # not lat-lon's


def test_nested_easygems_zarr_regrids_like_ring(tmp_path, reference):
  path = str(tmp_path / 'nested.zarr')
  easygems_nested().to_zarr(path, zarr_format=2)
  ds = datasets.open_dataset(path)  # the library's reader (xarray-tensorstore)
  layout = grids.healpix_layout(ds)
  assert (layout.grid, layout.order, layout.dim) == (grids.healpix(NSIDE), 'nested', 'cell')
  assert "'crs'" in layout.declared_by
  assert_same(ds.sphere.regrid(TARGET), reference)
  # Lazily too, and with conservative weights.
  ref = ring_dataset().sphere.regrid(TARGET, 'conservative')
  out = ds.chunk(time=1).sphere.regrid(TARGET, 'conservative')
  np.testing.assert_allclose(out.t.values, ref.t.values, rtol=0, atol=TOL)


@pytest.mark.parametrize('decoded', [False, True])
def test_xdggs_dataset_regrids_like_ring(decoded, reference):
  ds = xdggs_nested(cells=np.random.default_rng(1).permutation(12 * NSIDE**2))  # shuffled too
  if decoded:
    ds = xdggs.decode(ds)  # attrs move into a HealpixIndex
    assert ds.cell_ids.attrs == {}
  layout = grids.healpix_layout(ds)
  assert (layout.order, layout.dim) == ('nested', 'cells')
  assert_same(ds.sphere.regrid(TARGET), reference)


def test_cf_grid_mapping_regrids_like_ring(reference):
  ds = cf_nested()
  assert grids.healpix_layout(ds).order == 'nested'
  assert_same(ds.sphere.regrid(TARGET), reference)


def test_ring_order_declared_by_xdggs_reads_as_is(reference):
  ds = xdggs_nested()
  ds = ds.assign(t=(('time', 'cells'), ring_field())).assign_coords(
      cell_ids=ds.cell_ids.assign_attrs(indexing_scheme='ring'))
  assert grids.healpix_layout(ds).to_ring is None
  assert_same(ds.sphere.regrid(TARGET), reference)


@pytest.mark.parametrize('order', ['nested', 'ring'])
def test_healpix_output_decodes_with_xdggs_and_carries_the_cf_grid_mapping(order, reference):
  out = reference.sphere.regrid('healpix:8', order=order)
  ring = reference.sphere.regrid('healpix:8')
  want = ring.t.values if order == 'ring' else healpy.reorder(ring.t.values, r2n=True)
  np.testing.assert_array_equal(out.t.values, want)
  decoded = xdggs.decode(out)
  info = decoded.dggs.grid_info
  assert (info.level, info.indexing_scheme, info.nside) == (3, order, 8)
  # xdggs places each cell where our latitude/longitude coords say it is.
  lon, lat = info.cell_ids2geographic(decoded.cell_ids.values)
  np.testing.assert_allclose(lat, out.latitude.values, atol=1e-9)
  np.testing.assert_allclose(np.mod(lon, 360), out.longitude.values, atol=1e-9)
  crs = out.crs.attrs
  assert crs['grid_mapping_name'] == 'healpix' and crs['refinement_level'] == 3
  assert crs['indexing_scheme'] == order and crs['healpix_nside'] == 8
  assert crs['healpix_order'] == ('nest' if order == 'nested' else 'ring')
  assert out.t.attrs['grid_mapping'] == 'crs' and out.attrs['healpix_order'] == crs[
      'healpix_order']
  assert out.pixel.attrs['standard_name'] == 'healpix_index'
  # Read back (any order): the same numbers on the source grid.
  back = out.sphere.regrid(TARGET)
  np.testing.assert_allclose(back.t.values, ring.sphere.regrid(TARGET).t.values,
                             rtol=0, atol=TOL)


def test_order_is_refused_where_it_cannot_apply(reference):
  with pytest.raises(ValueError, match='HEALPix targets only'):
    reference.sphere.regrid('gaussian:32x16', order='nested')
  with pytest.raises(ValueError, match='power of two'):
    reference.sphere.regrid('healpix:6', order='nested')
  with pytest.raises(ValueError, match="unknown HEALPix order 'zuniq'"):
    reference.sphere.regrid('healpix:8', order='zuniq')


def test_partial_sky_is_a_one_line_error():
  npix = 12 * NSIDE**2
  keep = np.setdiff1d(np.arange(npix), [3, 4, 5, 40, 41, 100, 101, 102, 200, 300])
  ds = xdggs_nested(cells=keep)
  for what in (lambda: ds.sphere.regrid(TARGET), lambda: grids.from_dataset(ds)):
    with pytest.raises(ValueError) as info:
      what()
    message = str(info.value)
    assert '\n' not in message
    assert 'full sphere' in message and f'{npix - 10} of the {npix} cells' in message
    assert '10 cells missing' in message and 'nested ids 3, 4, 5, 40, 41, 100, 101, 102, ...' in (
        message), message


def test_inconsistent_declarations_are_refused():
  ds = easygems_nested().assign_attrs(healpix_order='ring')
  with pytest.raises(ValueError, match='declared inconsistently.*nested.*ring|declared '
                     'inconsistently.*ring.*nested'):
    grids.from_dataset(ds)
  ds = xdggs_nested()
  ds['cell_ids'].attrs['level'] = 2  # nside 4 against 768 cells: partial or wrong
  with pytest.raises(ValueError, match='outside 0..191'):
    grids.from_dataset(ds)


def test_scatter_reads_nested_input_like_ring(tmp_path):
  params = dict(J=2, N=1, depth=1)
  ref = scattering_cache.scatter_dataset(ring_dataset(4), **params)
  out = scattering_cache.scatter_dataset(easygems_nested(4), **params)
  np.testing.assert_allclose(out.t.values, ref.t.values, rtol=1e-5, atol=1e-6)
  assert out.sphere.grid == ref.sphere.grid
  xdggs.decode(out)  # the coarse HEALPix output is xdggs-readable (RING)
  assert out.crs.attrs['indexing_scheme'] == 'ring'
