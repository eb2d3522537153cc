"""WeatherBench2-style evaluation of forecasts held as xarray Datasets.

Data layout (WeatherBench2 conventions, always addressed by dimension name):

* **truth**: a Dataset with dims (time, level, longitude, latitude) for
  pressure-level variables and (time, longitude, latitude) for surface ones,
  WB2 variable names and units. Any lat-lon grid that
  :func:`sphere_plugin.grids.from_dataset` detects is accepted (any dims
  order, latitude ascending or descending), and HEALPix data with one `pixel`
  dim.
* **forecast**: a Dataset with dims (time, prediction_timedelta, level,
  longitude, latitude): `time` is the initialisation time, the lead
  `prediction_timedelta` is timedelta64, and the valid time is
  time + prediction_timedelta.

**Area weights.** Spatial means use the grid's own quadrature weights,
normalised to mean 1 over the grid (:func:`area_weights`). WeatherBench2 uses
cos(latitude) instead (normalised to mean 1). Ours are the exact quadrature
weights of the grid: on a Gaussian grid the Gauss-Legendre weights, on an
equiangular grid the Fejer / Clenshaw-Curtis weights, on HEALPix equal weights.
They integrate band-limited fields exactly. Normalised, they agree with
cos(latitude) to about 0.05 % near the equator but differ by a few percent in
the rows next to the poles (2 % on gaussian:64x32, 13 % on equiangular:64x32),
and at a pole node cos(latitude) is 0 although the polar cap has area.

**Truth alignment.** For each (initialisation time, lead) the valid time must
be one of truth's times. Pairs whose valid time is missing from truth (past the
end of the record, or in a gap between trajectories) are *dropped*: every mean
over initialisation times runs over the pairs that remain, and the number used
per lead is returned as the coordinate `num_forecasts` (prediction_timedelta).
A lead left with no pair gets NaN (and a warning); if no pair is left at all, a
ValueError is raised. NaNs inside the data themselves are not skipped: they
propagate into the scores, so a broken forecast cannot hide.

**Climatology.** :func:`climatology` with ``by='mean'`` (the default, and what
fits statistically steady data such as Held-Suarez) is the time mean per
(level, longitude, latitude) of the given period. ``by='dayofyear_hour'`` is
WB2's style: the mean per (day of year, hour of day), smoothed over day of year
with a circular window of `window_days` days.

References: Rasp et al. (2024), "WeatherBench 2: A benchmark for the next
generation of data-driven global weather models", JAMES 16, e2023MS004019
(RMSE and ACC definitions, section 4).
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin.weather import conventions

TIME = 'time'
LEAD = 'prediction_timedelta'
LEVEL = 'level'
COUNT = 'num_forecasts'

CLIMATOLOGY_KINDS = ('mean', 'dayofyear_hour')


# ----------------------------------------------------------------------------
# Weights and input checks.

def area_weights(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
  """Area (quadrature) weights of the grid of `ds`, normalised to mean 1.

  The grid is detected with :func:`sphere_plugin.grids.from_dataset`; the
  weights are its `quadrature_weights` (summing to 4*pi) times npix / (4*pi).
  On lat-lon grids they depend on latitude only (Gauss weights on Gaussian
  grids, Fejer / Clenshaw-Curtis weights on equiangular ones); on HEALPix they
  are all 1. WeatherBench2 uses cos(latitude) instead; see the module
  docstring.

  Args:
    ds: a Dataset or DataArray on a global grid.

  Returns:
    weights with dims (longitude, latitude) (the dataset's own names and
    coordinate values, so any latitude order works) or (pixel,), mean 1.
  """
  grid = grids_lib.from_dataset(ds)
  dims = grids_lib.spatial_dims(ds)
  w = grid.area_weights
  if isinstance(grid, grids_lib.LatLonGrid):
    # The grid's latitudes are ascending; the dataset's may be in any order.
    lat = np.asarray(ds[dims[1]].values, np.float64)
    w = w[:, np.argsort(np.argsort(lat, kind='stable'), kind='stable')]
  coords = {d: ds[d] for d in dims if d in ds.coords}
  return xr.DataArray(np.array(w), dims=dims, coords=coords, name='area_weights')


def _weighted_mean(x: xr.DataArray, w: xr.DataArray, dims: Sequence[str]) -> xr.DataArray:
  """sum(w x) / sum(w) over `dims` (NaN propagates)."""
  return (x * w).sum(dims, skipna=False) / w.sum()


def _to_timedeltas(leads: Any) -> pd.TimedeltaIndex:
  """Leads as timedeltas; strings ('6h'), timedelta64, pd.Timedelta accepted."""
  if isinstance(leads, (str, np.timedelta64, pd.Timedelta)) or np.ndim(leads) == 0:
    leads = [leads]
  return pd.to_timedelta([conventions.parse_timedelta(lead, 'lead') for lead in leads])


def _to_times(times: Any, truth: xr.Dataset | None = None) -> pd.DatetimeIndex:
  """Initialisation times as datetimes; None = all of truth's times."""
  if times is None:
    if truth is None:
      raise ValueError('init_times=None needs a truth dataset to take times from')
    return pd.DatetimeIndex(truth[TIME].values)
  if isinstance(times, (str, np.datetime64, pd.Timestamp)) or np.ndim(times) == 0:
    times = [times]
  if isinstance(times, xr.DataArray):
    times = times.values
  try:
    return pd.DatetimeIndex(pd.to_datetime(list(np.asarray(times).ravel())))
  except (ValueError, TypeError) as e:
    raise ValueError(f'cannot read init_times {times!r} as datetimes: {e}') from e


def _time_variables(ds: xr.Dataset) -> list[str]:
  """Data variables of `ds` that have a time dim and the spatial dims."""
  dims = set(grids_lib.spatial_dims(ds))
  return [str(k) for k, v in ds.data_vars.items()
          if TIME in v.dims and dims <= set(v.dims)]


def _check_forecast(forecast: xr.Dataset) -> None:
  for d in (TIME, LEAD):
    if d not in forecast.dims:
      raise ValueError(f'a forecast needs dims ({TIME}, {LEAD}, ...): dim {d!r} is '
                       f'missing from {dict(forecast.sizes)}')
  if not np.issubdtype(forecast[LEAD].dtype, np.timedelta64):
    raise ValueError(f'{LEAD} must be timedelta64, got {forecast[LEAD].dtype}')
  if not np.issubdtype(forecast[TIME].dtype, np.datetime64):
    raise ValueError(f'{TIME} (initialisation time) must be datetime64, got '
                     f'{forecast[TIME].dtype}')


def _check_truth(truth: xr.Dataset) -> None:
  if TIME not in truth.dims:
    raise ValueError(f'truth needs a {TIME!r} dim, got {dict(truth.sizes)}')
  if not np.issubdtype(truth[TIME].dtype, np.datetime64):
    raise ValueError(f'truth {TIME!r} must be datetime64, got {truth[TIME].dtype}')
  index = truth.indexes[TIME]
  if not index.is_unique:
    raise ValueError(f'truth {TIME!r} has duplicate times')


def _common_variables(forecast: xr.Dataset, truth: xr.Dataset) -> list[str]:
  names = [v for v in _time_variables(forecast) if v in truth.data_vars]
  if not names:
    raise ValueError(f'forecast variables {list(forecast.data_vars)} and truth '
                     f'variables {list(truth.data_vars)} have none in common (with '
                     f'{TIME} and spatial dims)')
  return names


def _match_index(truth: xr.Dataset, target: xr.Dataset, dim: str, tol: float) -> np.ndarray:
  """Positions in truth[dim] of each of target[dim] (nearest within tol)."""
  if dim not in truth.dims:
    raise ValueError(f'truth has no {dim!r} dim, but the forecast has')
  if dim not in target.coords or dim not in truth.coords:
    if truth.sizes[dim] != target.sizes[dim]:
      raise ValueError(f'dim {dim!r} has {target.sizes[dim]} points in the forecast '
                       f'but {truth.sizes[dim]} in truth')
    return np.arange(target.sizes[dim])
  have = np.asarray(truth[dim].values, np.float64)
  want = np.asarray(target[dim].values, np.float64)
  if dim in ('longitude', 'lon'):
    # Compare on the circle, so [0, 360) and [-180, 180) match.
    diff = np.abs((want[:, None] - have[None, :] + 180.0) % 360.0 - 180.0)
  else:
    diff = np.abs(want[:, None] - have[None, :])
  idx = np.argmin(diff, axis=1)
  bad = diff[np.arange(want.size), idx] > tol
  if np.any(bad):
    raise ValueError(f'{dim} values {want[bad][:5].tolist()} of the forecast are not '
                     f'in truth (which has {have[:8].tolist()}...)')
  return idx


def _aligned_truth(truth: xr.Dataset, forecast: xr.Dataset, names: list[str]) -> xr.Dataset:
  """truth[names] on the forecast's grid, levels and coordinate values."""
  f_grid = grids_lib.from_dataset(forecast)
  t_grid = grids_lib.from_dataset(truth)
  if f_grid != t_grid:
    raise ValueError(f'forecast is on {f_grid} but truth on {t_grid}; regrid one of '
                     'them first (sphere_plugin.regrid)')
  f_dims = grids_lib.spatial_dims(forecast)
  t_dims = grids_lib.spatial_dims(truth)
  out = truth[names].rename({a: b for a, b in zip(t_dims, f_dims) if a != b})
  indexers = {}
  for dim in f_dims:
    indexers[dim] = _match_index(out, forecast, dim, tol=1e-3)
  if LEVEL in forecast.dims:
    indexers[LEVEL] = _match_index(out, forecast, LEVEL, tol=1e-6)
  out = out.isel(indexers)
  coords = {d: forecast[d] for d in indexers if d in forecast.coords}
  return out.drop_vars([d for d in indexers if d in out.coords]).assign_coords(coords)


def _pairs(forecast: xr.Dataset, truth: xr.Dataset):
  """Per lead: (lead, init times kept, their valid times); drops missing valid times."""
  truth_times = truth.indexes[TIME]
  inits = pd.DatetimeIndex(forecast[TIME].values)
  out, total, dropped = [], 0, []
  for lead in pd.to_timedelta(forecast[LEAD].values):
    valid = inits + lead
    keep = truth_times.get_indexer(valid) >= 0
    out.append((lead, inits[keep], valid[keep]))
    total += int(keep.sum())
    if not keep.any():
      dropped.append(lead)
  if total == 0:
    raise ValueError(
        f'no (init time, lead) pair of the forecast has its valid time in truth: '
        f'init times {inits[0]}..{inits[-1]}, leads {list(forecast[LEAD].values)}, '
        f'truth times {truth_times[0]}..{truth_times[-1]}')
  if dropped:
    warnings.warn(f'leads {[_lead_label(d) for d in dropped]} have no valid time in truth; '
                  'their scores are NaN', stacklevel=3)
  return out


def polar_cap_mask(ds: xr.Dataset | xr.DataArray, min_abs_latitude: float) -> xr.DataArray:
  """1 where |latitude| >= min_abs_latitude (both polar caps), else 0 (lat-lon grids)."""
  grid = grids_lib.from_dataset(ds)
  if not isinstance(grid, grids_lib.LatLonGrid):
    raise ValueError(f'polar caps are scored on lat-lon grids; {grid} is not one (regrid the '
                     'forecast first)')
  lat = grids_lib.spatial_dims(ds)[1]
  mask = (np.abs(ds[lat]) >= float(min_abs_latitude)).astype(np.float64)
  if not bool(mask.any()):
    raise ValueError(f'no latitude of the grid has |latitude| >= {min_abs_latitude}')
  return mask


def _score(forecast: xr.Dataset, truth: xr.Dataset, per_pair, finish,
           clim: xr.Dataset | None = None,
           min_abs_latitude: float | None = None) -> xr.Dataset:
  """Applies per_pair(f, t[, clim_at_valid]) -> (time, ...) per lead, then finish(mean).

  With `min_abs_latitude`, spatial means run over the polar caps only.
  """
  _check_forecast(forecast)
  _check_truth(truth)
  # HEALPix in NESTED or permuted order: all in RING, so cells pair up by position.
  forecast, truth = grids_lib.to_ring(forecast), grids_lib.to_ring(truth)
  if clim is not None:
    clim = grids_lib.to_ring(clim)
  names = _common_variables(forecast, truth)
  t_al = _aligned_truth(truth, forecast, names)
  weights = area_weights(forecast)
  if min_abs_latitude is not None:
    weights = weights * polar_cap_mask(forecast, min_abs_latitude)
  dims = grids_lib.spatial_dims(forecast)
  if clim is not None:
    clim = _aligned_truth_static(clim, forecast, names)
  results, counts = [], []
  for lead, inits, valid in _pairs(forecast, truth):
    f = forecast[names].sel({LEAD: lead}, drop=True)
    if len(inits) == 0:
      template = f.isel({TIME: 0}, drop=True).isel({d: 0 for d in dims}, drop=True)
      results.append(xr.full_like(template, np.nan, dtype=np.float64))
      counts.append(0)
      continue
    f = f.sel({TIME: inits})
    f = f.reset_coords(drop=True)
    t = t_al.sel({TIME: valid}).reset_coords(drop=True).assign_coords({TIME: inits})
    args = (f, t)
    if clim is not None:
      c = _climatology_at(clim, valid).reset_coords(drop=True).assign_coords({TIME: inits})
      args = (f, t, c)
    per_time = per_pair(*args, weights, dims)
    results.append(finish(per_time.mean(TIME, skipna=False)))
    counts.append(len(inits))
  leads = forecast[LEAD].values
  out = xr.concat(results, dim=pd.Index(leads, name=LEAD), coords='minimal',
                  compat='override')
  out = out.assign_coords({COUNT: (LEAD, np.array(counts))})
  out.attrs = {}
  for name in names:
    out[name].attrs = {k: v for k, v in truth[name].attrs.items()
                       if k in ('units', 'long_name')}
    if LEVEL in out[name].dims:
      out[name] = out[name].transpose(LEAD, LEVEL, ...)
  return out


def rmse(forecast: xr.Dataset, truth: xr.Dataset, *,
         min_abs_latitude: float | None = None) -> xr.Dataset:
  """Area-weighted root-mean-square error per variable, level and lead (WB2's RMSE).

  RMSE(lead) = sqrt( mean over init times t0 of  sum_x w(x) (f - o)^2 / sum_x w ),
  with f = forecast(t0, lead, x), o = truth(t0 + lead, x) and w the area
  weights of :func:`area_weights`. Pairs whose valid time is missing from truth
  are dropped (module docstring).

  Args:
    forecast: dims (time, prediction_timedelta, [level,] *spatial).
    truth: dims (time, [level,] *spatial), the same grid.
    min_abs_latitude: score only the polar caps |latitude| >= this (degrees;
      lat-lon grids), e.g. 60; the weights are the area weights there.

  Returns:
    one variable per variable common to both, dims (prediction_timedelta,
    level) (surface variables (prediction_timedelta,)), float64, in the
    variable's units; coordinate `num_forecasts` (prediction_timedelta) counts
    the init times used per lead.
  """
  def per_pair(f, t, w, dims):
    return _weighted_mean((f - t) ** 2, w, dims)
  return _score(forecast, truth, per_pair, np.sqrt, min_abs_latitude=min_abs_latitude)


def mse(forecast: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
  """Area-weighted mean-square error, as :func:`rmse` without the square root.

  Returns:
    dims (prediction_timedelta, level), in the variable's units squared
    (attrs keep the variable's own units string).
  """
  def per_pair(f, t, w, dims):
    return _weighted_mean((f - t) ** 2, w, dims)
  return _score(forecast, truth, per_pair, lambda x: x)


def bias(forecast: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
  """Area-weighted mean error (forecast - truth), averaged over init times.

  Returns:
    dims (prediction_timedelta, level), in the variable's units.
  """
  def per_pair(f, t, w, dims):
    return _weighted_mean(f - t, w, dims)
  return _score(forecast, truth, per_pair, lambda x: x)


def acc(forecast: xr.Dataset, truth: xr.Dataset, clim: xr.Dataset) -> xr.Dataset:
  """Anomaly correlation coefficient per variable, level and lead (WB2's ACC).

  With anomalies f' = f - c and o' = o - c against the climatology c at the
  valid time, for each init time

      ACC(t0, lead) = sum_x w f' o' / sqrt( sum_x w f'^2  *  sum_x w o'^2 )

  (uncentred: the spatial mean anomaly is not removed, as in WB2), then the
  mean over init times. A forecast equal to the climatology has f' = 0 and ACC
  NaN (0/0), as in WB2.

  Args:
    forecast: dims (time, prediction_timedelta, [level,] *spatial).
    truth: dims (time, [level,] *spatial).
    clim: from :func:`climatology` (either kind), the same grid.

  Returns:
    dims (prediction_timedelta, level), dimensionless, with `num_forecasts`.
  """
  def per_pair(f, t, c, w, dims):
    fa, ta = f - c, t - c
    num = (w * fa * ta).sum(dims, skipna=False)
    den = np.sqrt((w * fa**2).sum(dims, skipna=False) * (w * ta**2).sum(dims, skipna=False))
    return num / den
  out = _score(forecast, truth, per_pair, lambda x: x, clim=clim)
  for name in out.data_vars:
    out[name].attrs = {'units': '1', 'long_name': 'anomaly correlation coefficient'}
  return out


# ----------------------------------------------------------------------------
# Baselines.

def persistence_forecast(truth: xr.Dataset, init_times=None, leads=('6h',)) -> xr.Dataset:
  """Persistence: the forecast at every lead is the truth at the init time.

  Args:
    truth: dims (time, [level,] *spatial); static variables (no time dim) are
      left out.
    init_times: datetimes that must be among truth's times; None = all of them.
    leads: timedeltas ('6h', np.timedelta64, pd.Timedelta), e.g. ('0h', '6h').

  Returns:
    dims (time, prediction_timedelta, [level,] *spatial); a broadcast view of
    truth, so no memory is copied until used.
  """
  _check_truth(truth)
  inits = _to_times(init_times, truth)
  missing = inits[truth.indexes[TIME].get_indexer(inits) < 0]
  if len(missing):
    raise ValueError(f'{len(missing)} init times are not in truth, e.g. '
                     f'{[str(m) for m in missing[:3]]}')
  lead_index = _to_timedeltas(leads)
  names = _time_variables(truth)
  if not names:
    raise ValueError(f'truth has no time-dependent variables: {list(truth.data_vars)}')
  out = truth[names].sel({TIME: inits})
  return out.expand_dims({LEAD: lead_index.values}).transpose(TIME, LEAD, ...)


def climatology(truth: xr.Dataset, by: str = 'mean', window_days: int = 61) -> xr.Dataset:
  """Climatology of the given (training) period per (level, longitude, latitude).

  Args:
    truth: dims (time, [level,] *spatial); only time-dependent variables are
      used.
    by: 'mean': the time mean (dims ([level,] *spatial)); right for
      statistically steady data such as the Held-Suarez set.
      'dayofyear_hour': WB2-style mean per (day of year 1..366, hour of day),
      smoothed over day of year with a circular moving window of
      `window_days` days (each (day, hour) cell is the mean of all samples in
      the window, so unevenly sampled days count by their samples; the
      window wraps on a 366-day year, day 366 existing in leap years only);
      dims
      (dayofyear, hour, [level,] *spatial); NaN where the window holds no
      sample. Hours are those present in truth.
    window_days: odd window width for 'dayofyear_hour' (WB2 uses 61).

  Returns:
    the climatology Dataset, attr `climatology` = `by`.
  """
  _check_truth(truth)
  names = _time_variables(truth)
  if not names:
    raise ValueError(f'truth has no time-dependent variables: {list(truth.data_vars)}')
  data = truth[names]
  if by == 'mean':
    out = data.mean(TIME, skipna=False)
  elif by == 'dayofyear_hour':
    if int(window_days) < 1 or int(window_days) % 2 == 0:
      raise ValueError(f'window_days must be a positive odd number, got {window_days}')
    half = int(window_days) // 2
    times = pd.DatetimeIndex(truth[TIME].values)
    hours = np.unique(times.hour)
    per_hour = []
    for h in hours:
      sel = data.isel({TIME: np.flatnonzero(times.hour == h)})
      doy = sel[TIME].dt.dayofyear.reset_coords(drop=True).rename('dayofyear')
      ones = xr.ones_like(sel[TIME], dtype=np.float64)
      sums = sel.groupby(doy).sum(TIME, skipna=False).reindex(
          dayofyear=np.arange(1, 367), fill_value=0.0)
      counts = ones.groupby(doy).sum().reindex(dayofyear=np.arange(1, 367), fill_value=0.0)

      def smooth(x):
        if half == 0:
          return x
        padded = x.pad(dayofyear=half, mode='wrap')
        return padded.rolling(dayofyear=2 * half + 1, center=True).sum().isel(
            dayofyear=slice(half, -half))
      n = smooth(counts)
      clim = smooth(sums) / n.where(n > 0)
      per_hour.append(clim.assign_coords(dayofyear=np.arange(1, 367)))
    out = xr.concat(per_hour, dim=pd.Index(hours, name='hour'))
    out = out.transpose('dayofyear', 'hour', ...)
  else:
    raise ValueError(f'unknown climatology {by!r}; expected one of {CLIMATOLOGY_KINDS}')
  for name in names:
    if np.issubdtype(truth[name].dtype, np.floating):
      out[name] = out[name].astype(truth[name].dtype)
    out[name].attrs = dict(truth[name].attrs)
  out.attrs = {'climatology': by}
  if by == 'dayofyear_hour':
    out.attrs['window_days'] = int(window_days)
  return out


def _climatology_at(clim: xr.Dataset, valid: pd.DatetimeIndex) -> xr.Dataset:
  """The climatology at each valid time: dims (time, ...)."""
  if 'dayofyear' not in clim.dims:
    return clim.expand_dims({TIME: len(valid)})
  hours = clim.indexes['hour']
  missing = set(valid.hour) - set(hours)
  if missing:
    raise ValueError(f'the climatology has hours {list(hours)} but valid times fall at '
                     f'hours {sorted(missing)}')
  return clim.sel(dayofyear=xr.DataArray(np.asarray(valid.day_of_year), dims=TIME),
                  hour=xr.DataArray(np.asarray(valid.hour), dims=TIME))


def _aligned_truth_static(clim: xr.Dataset, forecast: xr.Dataset,
                          names: list[str]) -> xr.Dataset:
  """The climatology on the forecast's grid and levels, variables `names`."""
  missing = [n for n in names if n not in clim.data_vars]
  if missing:
    raise ValueError(f'the climatology lacks variables {missing}')
  if TIME in clim.dims:
    raise ValueError('a climatology has no time dim; make it with climatology()')
  # Borrow the truth alignment with a dummy time dim.
  return _aligned_truth(clim[names].expand_dims({TIME: 1}), forecast, names).isel(
      {TIME: 0}, drop=True)


def climatology_forecast(clim: xr.Dataset, init_times, leads) -> xr.Dataset:
  """The climatology at each valid time as a forecast.

  Args:
    clim: from :func:`climatology`.
    init_times: datetimes (any, need not be in the climatology period).
    leads: timedeltas ('6h', ...).

  Returns:
    dims (time, prediction_timedelta, [level,] *spatial). For a 'mean'
    climatology a broadcast view; for 'dayofyear_hour' the climatology at each
    valid time's (day of year, hour).
  """
  if TIME in clim.dims:
    raise ValueError('clim has a time dim: pass the output of climatology(), not '
                     'the data')
  inits = _to_times(init_times)
  lead_index = _to_timedeltas(leads)
  if 'dayofyear' not in clim.dims:
    out = clim.expand_dims({TIME: inits.values, LEAD: lead_index.values})
    out.attrs = {}
    return out
  per_lead = []
  for lead in lead_index:
    c = _climatology_at(clim, inits + lead).drop_vars(['dayofyear', 'hour'])
    per_lead.append(c.assign_coords({TIME: inits.values}))
  out = xr.concat(per_lead, dim=pd.Index(lead_index.values, name=LEAD))
  out = out.transpose(TIME, LEAD, ...)
  out.attrs = {}
  return out


# ----------------------------------------------------------------------------
# Reporting.

def _parse_variable(spec) -> tuple[str, Any]:
  if isinstance(spec, str):
    return spec, None
  spec = tuple(spec)
  if len(spec) == 1:
    return str(spec[0]), None
  if len(spec) != 2:
    raise ValueError(f'a variable is a name or (name, level), got {spec!r}')
  return str(spec[0]), spec[1]


def _lead_label(lead: pd.Timedelta) -> str:
  hours = lead / pd.Timedelta(hours=1)
  return f'{hours:g}h'


def select_score(scores: xr.Dataset, name: str, level=None, lead=None) -> float | None:
  """One number from a scores Dataset; None where the variable/level/lead is absent.

  Args:
    scores: from :func:`rmse`, :func:`acc`, ...
    name: variable name.
    level: pressure level (None for surface variables).
    lead: a timedelta ('24h'); None when there is no lead dim.
  """
  if name not in scores.data_vars:
    return None
  da = scores[name]
  if level is not None:
    if LEVEL not in da.dims or level not in da.indexes[LEVEL]:
      return None
    da = da.sel({LEVEL: level})
  if lead is not None:
    lead = pd.Timedelta(lead)
    if LEAD not in da.dims or lead not in da.indexes[LEAD]:
      return None
    da = da.sel({LEAD: lead})
  if da.size != 1:
    raise ValueError(f'{name} at level={level} lead={lead} has dims {dict(da.sizes)}; '
                     'give the level (and lead) to pick one number')
  return float(da.values)


def skill_table(scores: Mapping[str, xr.Dataset],
                variables: Iterable = (('geopotential', 500), ('temperature', 850)),
                leads: Iterable = ('6h', '24h', '72h'),
                metric: str = 'RMSE') -> str:
  """A plain-text table of scores: rows variable/level/lead, columns models.

  Args:
    scores: model name -> scores Dataset (from :func:`rmse`), e.g.
      {'model': ..., 'persistence': ..., 'climatology': ...}.
    variables: (name, level) pairs, or plain names for surface variables.
    leads: timedeltas ('6h', ...).
    metric: what the numbers are, for the title line.

  Returns:
    the table as a string; units per row from the scores' `units` attrs;
    'n/a' where a model lacks a variable, level or lead. Numbers are printed
    with 4 significant digits.
  """
  if not scores:
    raise ValueError('scores is empty: give {model name: scores Dataset}')
  models = list(scores)
  lead_index = _to_timedeltas(leads)
  header = ['variable', 'level', 'lead', 'units'] + models
  rows = []
  for spec in variables:
    name, level = _parse_variable(spec)
    units = ''
    for ds in scores.values():
      if name in ds.data_vars and 'units' in ds[name].attrs:
        units = str(ds[name].attrs['units'])
        break
    for lead in lead_index:
      row = [name, '' if level is None else str(level), _lead_label(lead), units]
      for model in models:
        value = select_score(scores[model], name, level, lead)
        row.append('n/a' if value is None else f'{value:.4g}')
      rows.append(row)
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

  def fmt(row):
    cells = [c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
    return '  '.join(cells).rstrip()
  lines = [f'{metric} by variable, level and lead', fmt(header),
           '  '.join('-' * w for w in widths)]
  lines += [fmt(r) for r in rows]
  return '\n'.join(lines) + '\n'
