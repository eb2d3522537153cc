"""Which regridding method each variable gets: one for all, a mapping, or 'auto'.

A WeatherBench2 / ERA5 file mixes smooth fields (geopotential, temperature,
winds), fields with missing values (sea surface temperature: NaN over land)
and sharp non-negative fluxes (precipitation). One method does not fit all:
spectral regridding refuses NaN and rings at sharp edges. `choose` turns a
request into one method per variable:

* a method name ('spectral', 'conservative', 'bilinear', 'nearest'): every
  variable;
* 'auto': 'conservative' for fields with missing values and for non-negative
  fluxes and masks, recognised by name or by their `standard_name` /
  `long_name` / `cell_methods` attrs (`is_flux`), 'spectral' for the rest;
* a mapping {variable: method}, with the key '*' for the others (default
  'spectral'); its values may be 'auto' too.

The two components of a vector pair always share one method (the spin-1
transform, or the Cartesian sparse regridding, needs both): 'auto' gives a pair
'conservative' when either component would get it; explicit methods that
differ within a pair are a ValueError.

Pure logic on names, attrs and a has-missing predicate: nothing here reads data.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

AUTO = 'auto'
DEFAULT_KEY = '*'

# Whole-name matches (ERA5 short names) and word matches (WB2 long names,
# standard_name, long_name) of non-negative fluxes, accumulations and masks.
_FLUX_SHORT_NAMES = frozenset({
    'tp', 'cp', 'lsp', 'crr', 'lsrr', 'sf', 'csf', 'lsf', 'ro', 'sro', 'ssro', 'tisr',
    'ssrd', 'strd', 'ssr', 'tsr', 'fdir', 'cdir', 'lsm', 'siconc', 'ci', 'sd', 'pr', 'prw',
    'precip', 'rsds', 'rsdt', 'rlds'})
_FLUX_WORDS = frozenset({
    'precipitation', 'precip', 'rainfall', 'rain', 'snowfall', 'snow', 'runoff', 'radiation',
    'radiative', 'irradiance', 'insolation', 'flux', 'mask', 'seaice'})
_FLUX_PHRASES = ('sea_ice', 'land_sea', 'ice_cover', 'ice_concentration', 'cloud_cover')


def _flux_text(text: str) -> bool:
  """Whether words of `text` (split at non-letters: 'terrain' is not 'rain') name a flux."""
  text = re.sub(r'[^a-z0-9]+', '_', text.lower())
  return bool(_FLUX_WORDS & set(text.split('_'))) or any(p in text for p in _FLUX_PHRASES)


def is_flux(name: str, attrs: Mapping | None = None) -> bool:
  """Whether a variable looks like a non-negative flux, accumulation or mask.

  Args:
    name: the variable name (WB2 long name or ERA5 short name).
    attrs: its attrs; `standard_name`, `long_name` are matched like the name,
      and a `cell_methods` with 'sum' (an accumulation) counts too.

  Returns:
    True for e.g. total_precipitation, tp, toa_incident_solar_radiation,
    sea_ice_cover, land_sea_mask; False for temperature, winds, geopotential.
  """
  attrs = attrs or {}
  if str(name).lower() in _FLUX_SHORT_NAMES:
    return True
  texts = [str(name)] + [str(attrs[k]) for k in ('standard_name', 'long_name') if k in attrs]
  if any(_flux_text(t) for t in texts):
    return True
  return 'sum' in str(attrs.get('cell_methods', '')).lower()


def _check_method(method, known: tuple[str, ...], where: str) -> str:
  if not isinstance(method, str) or method not in known + (AUTO,):
    raise ValueError(f'unknown regridding method {method!r}{where}; expected one of '
                     f'{known + (AUTO,)}')
  return method


def choose(method, names: Iterable[str], pairs: Iterable[tuple[str, str]], *,
           known: tuple[str, ...], attrs: Mapping[str, Mapping] | None = None,
           has_missing: Callable[[str], bool] | None = None) -> dict[str, tuple[str, str]]:
  """One method per variable, with the reason.

  Args:
    method: a method name, 'auto', or a mapping {variable: method or 'auto'}
      whose '*' entry (default 'spectral') covers the variables it does not name.
    names: the variables regridded.
    pairs: (eastward, northward) vector pairs among `names`.
    known: the method names (`sphere_plugin.regrid.METHODS`).
    attrs: {name: attrs} for 'auto' (`is_flux`).
    has_missing: name -> whether it has NaN, for 'auto'; called only for the
      variables that 'auto' cannot decide by name (it may read data). None:
      no variable has missing values.

  Returns:
    {name: (method, reason)}: reason says why ('given', 'missing values',
    'non-negative flux or mask, by name/attrs', 'complete field', 'vector pair').

  Raises:
    ValueError: an unknown method; a mapping naming variables not regridded;
      explicit methods that differ within a vector pair.
  """
  names = list(names)
  attrs = attrs or {}
  if isinstance(method, Mapping):
    for k, m in method.items():
      _check_method(m, known, f' for variable {k!r}')
    unknown = sorted(str(k) for k in method if k != DEFAULT_KEY and k not in names)
    if unknown:
      raise ValueError(f'regridding methods given for {unknown}, which are not regridded '
                       f'here (the spatial variables are {names})')
    requested = {n: _check_method(method.get(n, method.get(DEFAULT_KEY, 'spectral')), known,
                                  f' for variable {n!r}') for n in names}
  else:
    _check_method(method, known, '')
    requested = {n: method for n in names}
  out = {}
  for n in names:
    if requested[n] != AUTO:
      out[n] = (requested[n], 'given')
    elif is_flux(n, attrs.get(n)):
      out[n] = ('conservative', 'non-negative flux or mask, by name/attrs')
    elif has_missing is not None and has_missing(n):
      out[n] = ('conservative', 'missing values')
    else:
      out[n] = ('spectral', 'complete field')
  for u, v in pairs:
    if requested[u] != AUTO and requested[v] != AUTO:
      if requested[u] != requested[v]:
        raise ValueError(f'vector pair {u}:{v} needs one method for both components, got '
                         f'{u}={requested[u]}, {v}={requested[v]}')
      continue
    fixed = {requested[n] for n in (u, v) if requested[n] != AUTO}
    chosen = {out[n][0] for n in (u, v)}
    if fixed:
      pick = fixed.pop()
    else:
      pick = 'conservative' if 'conservative' in chosen else 'spectral'
    for n in (u, v):
      reason = out[n][1] if out[n][0] == pick else f'vector pair {u}:{v}'
      out[n] = (pick, reason)
  return out


def default(method) -> str:
  """The method of the variables a request does not name ('auto' for 'auto')."""
  if isinstance(method, Mapping):
    return method.get(DEFAULT_KEY, 'spectral')
  return method


def summary(chosen: Mapping[str, tuple[str, str]], pairs=()) -> str:
  """One line: 'spectral: t, u:v (vector pair); conservative: sst (missing values)'."""
  paired = {u: v for u, v in pairs}
  in_pair = {x for p in pairs for x in p}
  groups: dict[str, list[str]] = {}
  for n, (m, reason) in chosen.items():
    if n in paired:
      groups.setdefault(m, []).append(f'{n}:{paired[n]} (vector pair)')
    elif n not in in_pair:
      groups.setdefault(m, []).append(n if reason in ('given', 'complete field')
                                      else f'{n} ({reason})')
  return '; '.join(f'{m}: {", ".join(v)}' for m, v in groups.items())
