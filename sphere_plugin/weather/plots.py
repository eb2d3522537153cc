"""Plots of forecast scores and fields (matplotlib, Agg, no downloads).

Every figure is a `matplotlib.figure.Figure` drawn on an Agg canvas directly,
without pyplot: the module never changes matplotlib's global backend (so it is
safe to import in a notebook) and always renders off-screen to PNG. Maps use
matplotlib's built-in 'mollweide' projection, which needs no map data.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sphere_plugin import accessor
from sphere_plugin import grids
from sphere_plugin.weather import evaluation

_LON_NAMES = ('longitude', 'lon')
_LAT_NAMES = ('latitude', 'lat')


GRAVITY = 9.80665  # m s-2, standard gravity (WMO): geopotential height = z / g
_GEOPOTENTIAL_UNITS = ('m**2 s**-2', 'm2 s-2', 'm^2/s^2', 'm2/s2', 'm**2/s**2')


def display_units(name: str, units: str) -> tuple[float, str, str]:
  """How a variable is drawn: (scale applied to the values, quantity name, units).

  Geopotential (m^2 s^-2) is drawn as geopotential height in metres (z / g,
  g = 9.80665 m s^-2), which is what forecasters read; anything else as it is.

  Args:
    name: the variable's name, e.g. 'geopotential'.
    units: its units attr ('' when unknown).

  Returns:
    (scale, quantity name, units) with the values to draw = values * scale.
  """
  if name == 'geopotential' and str(units).replace(' ', '') in {
      u.replace(' ', '') for u in _GEOPOTENTIAL_UNITS}:
    return 1.0 / GRAVITY, 'geopotential height', 'm'
  return 1.0, name, str(units)


def _level_text(level) -> str:
  """' 500 hPa' (pressure levels are in hPa in WB2 data), '' for surface variables."""
  return '' if level is None else f' {level} hPa'


def _figure(**kwargs) -> Figure:
  """A new Figure on an Agg canvas (no pyplot, no global state)."""
  fig = Figure(**kwargs)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path) -> None:
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, dpi=100)


def _lead_hours(lead_values) -> np.ndarray:
  return np.asarray(pd.to_timedelta(np.asarray(lead_values)) / pd.Timedelta(hours=1))


def plot_rmse_vs_lead(scores: Mapping[str, xr.Dataset], variables: Iterable,
                      path, metric: str = 'RMSE',
                      spread: Mapping[str, xr.Dataset] | None = None) -> None:
  """Scores against lead time: one panel per (variable, level), one line per model.

  Args:
    scores: model name -> scores Dataset with a `prediction_timedelta` dim
      (from `evaluation.rmse`), e.g. {'model': ..., 'persistence': ...}.
    variables: (name, level) pairs, or names of surface variables.
    path: PNG file to write (parent folders are made).
    metric: y-axis label (units from the scores' attrs are appended).
    spread: model name -> the scores' spread (e.g. the standard deviation over
      seeds), shaded as +- spread around the line where given.
  """
  if not scores:
    raise ValueError('scores is empty: give {model name: scores Dataset}')
  specs = [evaluation._parse_variable(v) for v in variables]  # pylint: disable=protected-access
  if not specs:
    raise ValueError('variables is empty: give (name, level) pairs')
  ncol = min(3, len(specs))
  nrow = -(-len(specs) // ncol)
  fig = _figure(figsize=(4.2 * ncol, 3.2 * nrow), layout='constrained')
  for k, (name, level) in enumerate(specs):
    ax = fig.add_subplot(nrow, ncol, k + 1)
    units, quantity = '', name
    drawn = 0
    for model, ds in scores.items():
      if name not in ds.data_vars:
        continue
      da = ds[name]
      if level is not None:
        if 'level' not in da.dims or level not in da.indexes['level']:
          continue
        da = da.sel(level=level)
      if evaluation.LEAD not in da.dims or da.ndim != 1:
        raise ValueError(f'{model}: {name} has dims {dict(da.sizes)}; expected '
                         f'({evaluation.LEAD},) after choosing the level')
      scale, quantity, units = display_units(name, da.attrs.get('units', ''))
      hours = _lead_hours(da[evaluation.LEAD].values)
      line, = ax.plot(hours, np.asarray(da.values) * scale, marker='o', markersize=3,
                      label=model)
      if spread is not None and model in spread and name in spread[model].data_vars:
        s = spread[model][name]
        s = np.asarray((s.sel(level=level) if level is not None else s).values) * scale
        y = np.asarray(da.values) * scale
        ax.fill_between(hours, y - s, y + s, color=line.get_color(), alpha=0.2, lw=0)
      drawn += 1
    if not drawn:
      raise ValueError(f'no model in {list(scores)} has {name}'
                       + ('' if level is None else f' at level {level}'))
    ax.set_title(quantity + _level_text(level))
    ax.set_xlabel('lead time (hours)')
    ax.set_ylabel(f'{metric} ({units})' if units else metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small')
  _save(fig, path)


def plot_spectra(spectra: Mapping[str, np.ndarray], path, title: str = '',
                 ylabel: str = 'energy per degree (m$^2$ s$^{-2}$)') -> None:
  """Spectra against spherical-harmonic degree, log-log, one line per name.

  Args:
    spectra: name -> (lmax + 1,) energy per degree (degree 0 is not drawn).
    path: PNG file to write.
  """
  if not spectra:
    raise ValueError('spectra is empty')
  fig = _figure(figsize=(5.5, 4.0), layout='constrained')
  ax = fig.add_subplot(1, 1, 1)
  for name, e in spectra.items():
    e = np.asarray(e, np.float64)
    ax.loglog(np.arange(1, e.size), np.maximum(e[1:], 1e-12), label=name,
              color='k' if name == 'truth' else None, lw=2 if name == 'truth' else 1)
  ax.set_xlabel('spherical-harmonic degree l')
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize='small')
  _save(fig, path)


def _edges(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Cell edges around sorted centres: midpoints, the ends clipped to [lo, hi]."""
  if centres.size == 1:
    return np.array([lo, hi])
  mid = 0.5 * (centres[1:] + centres[:-1])
  first = centres[0] - (mid[0] - centres[0])
  last = centres[-1] + (centres[-1] - mid[-1])
  return np.clip(np.concatenate([[first], mid, [last]]), lo, hi)


def _lonlat_field(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(lon edges, lat edges in degrees, values (nlat, nlon)) ready for pcolormesh.

  Longitudes are wrapped to [-180, 180) and sorted; the column that straddles
  the dateline is repeated at both ends so the map has no gap.
  """
  lon_name = next((n for n in _LON_NAMES if n in da.dims), None)
  lat_name = next((n for n in _LAT_NAMES if n in da.dims), None)
  if (lon_name is None or lat_name is None) and _healpix_nside(da) is not None:
    return _lonlat_field(_healpix_on_lonlat(da))
  if lon_name is None or lat_name is None:
    raise ValueError(f'plot_maps needs a lat-lon field with dims longitude and '
                     f'latitude, got dims {dict(da.sizes)}')
  extra = [d for d in da.dims if d not in (lon_name, lat_name)]
  if any(da.sizes[d] != 1 for d in extra):
    raise ValueError(f'plot_maps draws one 2-D field; select the other dims first: '
                     f'{ {d: da.sizes[d] for d in extra} }')
  da = da.squeeze(extra, drop=True).transpose(lat_name, lon_name)
  lon = (np.asarray(da[lon_name].values, np.float64) + 180.0) % 360.0 - 180.0
  lat = np.asarray(da[lat_name].values, np.float64)
  values = np.asarray(da.values, np.float64)
  i = np.argsort(lon, kind='stable')
  j = np.argsort(lat, kind='stable')
  lon, lat, values = lon[i], lat[j], values[j][:, i]
  if lon.size > 1:
    step = 360.0 / lon.size
    if lon[0] - step / 2 < -180.0:  # the first cell crosses -180: repeat it at +180
      lon = np.append(lon, lon[0] + 360.0)
      values = np.concatenate([values, values[:, :1]], axis=1)
    elif lon[-1] + step / 2 > 180.0:  # the last cell crosses +180: repeat it at -180
      lon = np.insert(lon, 0, lon[-1] - 360.0)
      values = np.concatenate([values[:, -1:], values], axis=1)
  return _edges(lon, -180.0, 180.0), _edges(lat, -90.0, 90.0), values


def _healpix_nside(da: xr.DataArray) -> int | None:
  """nside of a HEALPix field (any order its attrs declare), or None."""
  try:
    grid = grids.healpix_layout(da).grid
  except (ValueError, KeyError, TypeError, AttributeError):
    return None
  return getattr(grid, 'nside', None)


def _healpix_on_lonlat(da: xr.DataArray) -> xr.DataArray:
  """A HEALPix field resampled by nearest pixel to equiangular:(4 nside)x(2 nside)
  for drawing: each map cell shows the value of the pixel whose centre is nearest
  (no smoothing).
  Dims other than the pixel dim must have size 1 (as `plot_maps` asks)."""
  nside = _healpix_nside(da)
  return accessor.DataArrayAccessor(da).regrid(f'equiangular:{4 * nside}x{2 * nside}', 'nearest')


def plot_maps(truth: xr.DataArray, forecast: xr.DataArray, path, title: str = '') -> None:
  """Three Mollweide maps: truth, forecast and error (forecast - truth).

  Args:
    truth: a lat-lon field, dims (longitude, latitude) in degrees in any order
      and any longitude convention (wrapped to [-180, 180) for plotting), or a
      HEALPix field (pixel dim, any declared order; drawn by nearest pixel on
      equiangular:(4 nside)x(2 nside)); other dims must have size 1.
    forecast: the same layout and grid as `truth`.
    path: PNG file to write (parent folders are made).
    title: figure title; the quantity and units (from `truth.name` and
      `truth.attrs`; geopotential is drawn as geopotential height in m, see
      `display_units`) label the colour bars.
  """
  lon_e, lat_e, t = _lonlat_field(truth)
  lon_f, lat_f, f = _lonlat_field(forecast)
  scale, quantity, units = display_units(str(truth.name), truth.attrs.get('units', ''))
  t, f = t * scale, f * scale
  if t.shape != f.shape or not (np.allclose(lon_e, lon_f) and np.allclose(lat_e, lat_f)):
    raise ValueError(f'truth and forecast are on different grids: {t.shape} vs {f.shape}')
  err = f - t
  finite = np.concatenate([t[np.isfinite(t)], f[np.isfinite(f)]])
  vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  emax = float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else 1.0
  emax = emax or 1.0
  lon_r, lat_r = np.radians(lon_e), np.radians(lat_e)
  fig = _figure(figsize=(15, 3.8), layout='constrained')
  panels = (('truth', t, 'viridis', vmin, vmax), ('forecast', f, 'viridis', vmin, vmax),
            ('forecast - truth', err, 'RdBu_r', -emax, emax))
  for k, (name, values, cmap, lo, hi) in enumerate(panels):
    ax = fig.add_subplot(1, 3, k + 1, projection='mollweide')
    mesh = ax.pcolormesh(lon_r, lat_r, values, cmap=cmap, vmin=lo, vmax=hi,
                         shading='flat')
    ax.set_title(name)
    lon_ticks = np.arange(-120, 121, 60)
    ax.set_xticks(np.radians(lon_ticks))
    ax.set_xticklabels([f'{abs(v)}°{"E" if v > 0 else "W" if v < 0 else ""}'
                        for v in lon_ticks], fontsize='small')
    ax.set_yticks(np.radians(np.arange(-60, 61, 30)))  # every 15 deg crowds the left edge
    ax.tick_params(axis='y', labelsize='small')
    ax.grid(True, alpha=0.3)
    bar = fig.colorbar(mesh, ax=ax, orientation='horizontal', shrink=0.8, pad=0.05)
    bar.locator = MaxNLocator(5)  # the default crowds long tick labels (e.g. 5.52e4)
    bar.update_ticks()
    label = quantity if quantity not in ('None', '') else ''
    if name == 'forecast - truth' and label:
      label = f'{label} error'
    if units:
      label = f'{label} ({units})' if label else str(units)
    if label:
      bar.set_label(label)
  if title:
    fig.suptitle(title)
  _save(fig, path)
