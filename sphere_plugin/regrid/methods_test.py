"""Choosing a regridding method per variable: names, attrs, NaN, vector pairs, errors."""

import pytest

from sphere_plugin import regrid
from sphere_plugin.regrid import methods


@pytest.mark.parametrize('name, attrs, flux', [
    ('total_precipitation_6hr', {}, True), ('tp', {}, True),
    ('toa_incident_solar_radiation', {}, True), ('sea_ice_cover', {}, True),
    ('land_sea_mask', {}, True), ('surface_latent_heat_flux', {}, True),
    ('x', {'standard_name': 'precipitation_flux'}, True),
    ('x', {'long_name': 'Total precipitation'}, True),
    ('x', {'cell_methods': 'time: sum'}, True),
    ('temperature', {}, False), ('2m_temperature', {}, False), ('geopotential', {}, False),
    ('u_component_of_wind', {'standard_name': 'eastward_wind'}, False),
    ('terrain_height', {}, False),  # 'rain' inside a word is not rain
    ('sea_surface_temperature', {}, False),  # conservative only through its NaN
])
def test_fluxes_and_masks_by_name_or_attrs(name, attrs, flux):
  assert methods.is_flux(name, attrs) == flux


def choose(method, names, pairs=(), missing=()):
  return methods.choose(method, names, pairs, known=regrid.METHODS,
                        has_missing=lambda n: n in missing)


def test_auto_nan_and_flux_are_conservative_the_rest_spectral():
  got = choose('auto', ['t', 'sst', 'total_precipitation', 'u', 'v'], [('u', 'v')],
               missing={'sst'})
  assert got == {'t': ('spectral', 'complete field'), 'sst': ('conservative', 'missing values'),
                 'total_precipitation': ('conservative',
                                         'non-negative flux or mask, by name/attrs'),
                 'u': ('spectral', 'complete field'), 'v': ('spectral', 'complete field')}
  # A pair with NaN in one component: both conservative.
  got = choose('auto', ['u', 'v'], [('u', 'v')], missing={'v'})
  assert got['u'] == ('conservative', 'vector pair u:v') and got['v'][0] == 'conservative'


def test_mappings_default_and_pairs():
  got = choose({'sst': 'conservative', '*': 'bilinear'}, ['t', 'sst'])
  assert got == {'t': ('bilinear', 'given'), 'sst': ('conservative', 'given')}
  assert choose({'sst': 'nearest'}, ['t', 'sst'])['t'] == ('spectral', 'given')
  # One component named: the other (auto) follows it.
  got = choose({'u': 'conservative', '*': 'auto'}, ['u', 'v'], [('u', 'v')])
  assert got['v'] == ('conservative', 'vector pair u:v')
  with pytest.raises(ValueError, match='needs one method for both components'):
    choose({'u': 'conservative'}, ['u', 'v'], [('u', 'v')])
  with pytest.raises(ValueError, match=r"\['nope'\], which are not regridded here"):
    choose({'nope': 'conservative'}, ['t'])
  with pytest.raises(ValueError, match="unknown regridding method 'cubic'"):
    choose('cubic', [])


def test_summary_names_pairs_and_reasons():
  chosen = choose('auto', ['t', 'sst', 'u', 'v'], [('u', 'v')], missing={'sst'})
  assert methods.summary(chosen, [('u', 'v')]) == (
      'spectral: t, u:v (vector pair); conservative: sst (missing values)')
