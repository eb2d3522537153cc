"""WeatherBench2-format weather data for spherical-CNN forecasters.

A WB2-format dataset (zarr read lazily with xarray-tensorstore, or netCDF read
lazily with `xr.open_dataset`) is cut into windows for k-step autoregressive
training: the state at t (inputs), the states at t + dt ... t + k dt
(targets) and the forcings at t ... t + (k-1) dt (what each step sees).

Layout rules (applied by `canonicalize` to the dataset and to every Dataset
given to `WeatherData.state_arrays`):

* dims are found by name (`grids.spatial_dims`); every variable is transposed
  to (time, level, longitude, latitude) (or (time, level, pixel) on HEALPix),
  dropping the dims it lacks;
* a descending latitude axis is flipped, so latitude is ascending as our grids
  expect; longitudes stay as the dataset has them (0..360 or -180..180, any
  rotation): computed forcings use the actual longitude values, and
  `to_dataset` writes them back unchanged;
* times must be strictly increasing after sorting (duplicates are an error).

Channels (fixed order, used by models, training and evaluation):

* state: for each level variable, for each level, `f'{var}_{level}'`
  (e.g. `temperature_850`); then the surface variables by name. A (u, v)
  vector pair stays two real channels; `WeatherData.vector_pairs` gives their
  indices (u, v) per level.
* forcings: the static forcings by name, then the computed ones:
  `toa_solar_radiation` (one channel: top-of-atmosphere incoming solar flux
  divided by the solar constant, so O(1)), `time_of_day` (two channels
  `time_of_day_sin`, `time_of_day_cos`), `time_of_year` (likewise).

Time steps: `WeatherSpec.time_step` must be a multiple of the dataset's
sampling interval (the smallest spacing between consecutive times); the window
then takes every `stride`-th time. A window never bridges a gap: all times it
spans must be consecutive samples exactly one sampling interval apart.

Normalisation statistics (`Normalizer`) are area-weighted (grid quadrature
weights) means over the training period only, streamed over chunks of time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
from typing import Any, Iterator, Mapping, Sequence

import gin
import numpy as np
import pandas as pd
import tqdm
import xarray as xr

from sphere_plugin import grids as grids_lib

SOLAR_CONSTANT = 1361.0  # W m**-2 (Kopp & Lean 2011)
NORMALIZER_FILENAME = 'normalization.json'
SPLITS = ('train', 'valid', 'test')
COMPUTED_FORCINGS = ('toa_solar_radiation', 'time_of_day', 'time_of_year')
# Channels each computed forcing contributes.
COMPUTED_FORCING_CHANNELS = {
    'toa_solar_radiation': ('toa_solar_radiation',),
    'time_of_day': ('time_of_day_sin', 'time_of_day_cos'),
    'time_of_year': ('time_of_year_sin', 'time_of_year_cos'),
}
_NETCDF_SUFFIXES = ('.nc', '.nc4', '.netcdf', '.cdf', '.h5', '.hdf5')
_NORMALIZER_FORMAT = 'sphere_plugin.data.weather.Normalizer'
_NS_PER_S = 1_000_000_000


# ----------------------------------------------------------------------------
# Configuration.


def _parse_time_step(text: str) -> np.timedelta64:
  try:
    step = pd.Timedelta(text)
  except (ValueError, TypeError) as e:
    raise ValueError(f'time_step {text!r} is not a timedelta string such as '
                     "'6h', '12h', '1D', '30min'") from e
  if step <= pd.Timedelta(0):
    raise ValueError(f'time_step must be positive, got {text!r}')
  return np.timedelta64(step.value, 'ns')


def _parse_instant(text: str, what: str) -> np.datetime64:
  try:
    ts = pd.Timestamp(text)
  except (ValueError, TypeError) as e:
    raise ValueError(f'{what} {text!r} is not a date such as "2000-01-01" or '
                     '"2000-01-01T06:00"') from e
  if ts.tzinfo is not None:
    ts = ts.tz_convert('UTC').tz_localize(None)
  return np.datetime64(ts.value, 'ns')


def _is_date_only(text: str) -> bool:
  ts = pd.Timestamp(text)
  return len(str(text).strip()) <= 10 and ts == ts.normalize()


@gin.configurable(module='sphere_plugin.data.weather')
@dataclasses.dataclass(frozen=True)
class WeatherSpec:
  """What to read and how to cut it (all gin-configurable).

  Attributes:
    path: a zarr store (directory, or any path not ending in a netCDF suffix;
      read with xarray-tensorstore) or a netCDF file (`.nc`, `.nc4`, ...; read
      with `xr.open_dataset`). None: the embedded Held-Suarez dataset
      (`held_suarez.DEFAULT_PATH`, generated with `held_suarez.make_dataset()`
      when missing, which takes a few minutes).
    level_variables: WB2 names of variables on pressure levels (dim `level`).
    surface_variables: WB2 names of variables without a level dim.
    levels: pressure levels (hPa, the dataset's `level` values) to read.
    vector_pairs: (eastward, northward) component names forming a vector field
      (a spin-1 field in the models). Pairs whose two names are both absent
      from the variables are ignored; half a pair is an error.
    static_forcings: time-independent dataset variables used as forcings
      (WB2 `land_sea_mask`, `geopotential_at_surface`). A missing one is an
      error: set `static_forcings = ()` for datasets without them.
    computed_forcings: any of 'toa_solar_radiation', 'time_of_day',
      'time_of_year' (see the module docstring).
    time_step: model time step, a pandas timedelta string ('6h', '1D'); a
      multiple of the dataset's sampling interval.
    train_period, valid_period, test_period: inclusive (start, end) bounds; a
      date-only end ('2001-12-31') includes that whole day, an end with a time
      of day includes exactly that instant. None: an empty split.
  """
  path: str | None = None
  level_variables: tuple[str, ...] = ('geopotential', 'temperature',
                                      'u_component_of_wind', 'v_component_of_wind')
  surface_variables: tuple[str, ...] = ('surface_pressure',)
  levels: tuple[int, ...] = (250, 500, 850)
  vector_pairs: tuple[tuple[str, str], ...] = (('u_component_of_wind',
                                                 'v_component_of_wind'),)
  static_forcings: tuple[str, ...] = ('land_sea_mask', 'geopotential_at_surface')
  computed_forcings: tuple[str, ...] = COMPUTED_FORCINGS
  time_step: str = '6h'
  train_period: tuple[str, str] | None = ('2000-01-01', '2001-12-31')
  valid_period: tuple[str, str] | None = ('2002-01-01', '2002-12-31')
  test_period: tuple[str, str] | None = ('2003-01-01', '2003-12-31')

  def __post_init__(self):
    setattr_ = lambda k, v: object.__setattr__(self, k, v)  # frozen dataclass
    if self.path is not None:
      setattr_('path', os.fspath(self.path))
    for name in ('level_variables', 'surface_variables', 'static_forcings',
                 'computed_forcings'):
      value = getattr(self, name)
      if isinstance(value, str):
        raise ValueError(f'{name} must be a sequence of names, got the string {value!r}')
      setattr_(name, tuple(str(v) for v in value))
      dup = sorted({v for v in getattr(self, name) if getattr(self, name).count(v) > 1})
      if dup:
        raise ValueError(f'{name} lists {dup} more than once')
    setattr_('levels', tuple(int(l) for l in self.levels))
    if len(set(self.levels)) != len(self.levels):
      raise ValueError(f'levels has duplicates: {self.levels}')
    both = sorted(set(self.level_variables) & set(self.surface_variables))
    if both:
      raise ValueError(f'{both} are both level and surface variables')
    if self.level_variables and not self.levels:
      raise ValueError('level_variables are given but levels is empty')
    if not self.level_variables and not self.surface_variables:
      raise ValueError('no state variables: give level_variables or surface_variables')
    pairs = []
    for pair in self.vector_pairs:
      pair = tuple(str(p) for p in pair)
      if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f'a vector pair is two different names (u, v), got {pair}')
      pairs.append(pair)
    setattr_('vector_pairs', tuple(pairs))
    unknown = [f for f in self.computed_forcings if f not in COMPUTED_FORCINGS]
    if unknown:
      raise ValueError(f'unknown computed_forcings {unknown}; choose from '
                       f'{COMPUTED_FORCINGS}')
    _parse_time_step(self.time_step)
    for split in SPLITS:
      period = getattr(self, f'{split}_period')
      if period is None:
        continue
      if isinstance(period, str) or len(period) != 2:
        raise ValueError(f'{split}_period must be (start, end), got {period!r}')
      setattr_(f'{split}_period', (str(period[0]), str(period[1])))
      start, stop = self.period_bounds(split)
      if stop <= start:
        raise ValueError(f'{split}_period {period} ends before it starts')
    if self.train_period is not None:
      a0, a1 = self.period_bounds('train')
      for split in ('valid', 'test'):
        if getattr(self, f'{split}_period') is None:
          continue
        b0, b1 = self.period_bounds(split)
        if a0 < b1 and b0 < a1:
          raise ValueError(f'train_period {self.train_period} overlaps {split}_period '
                           f'{getattr(self, f"{split}_period")}: statistics and '
                           'training would see evaluation data')

  @property
  def time_step_ns(self) -> np.timedelta64:
    """The time step as a numpy timedelta64[ns]."""
    return _parse_time_step(self.time_step)

  def period_bounds(self, split: str) -> tuple[np.datetime64, np.datetime64] | None:
    """Half-open [start, stop) datetime64[ns] bounds of a split; None if it has none."""
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
    period = getattr(self, f'{split}_period')
    if period is None:
      return None
    start = _parse_instant(period[0], f'{split}_period start')
    stop = _parse_instant(period[1], f'{split}_period end')
    stop = stop + (np.timedelta64(1, 'D') if _is_date_only(period[1])
                   else np.timedelta64(1, 'ns'))
    return start, stop


# ----------------------------------------------------------------------------
# Opening and canonical layout.


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
  """Opens a WB2-format dataset lazily: netCDF by suffix, anything else as zarr.

  Zarr goes through `xarray_tensorstore.open_zarr` (local paths and URLs
  tensorstore understands, e.g. gs://), netCDF through `xr.open_dataset`.
  Nothing is read but the coordinates.
  """
  path = os.fspath(path)
  if path.lower().endswith(_NETCDF_SUFFIXES) or (os.path.isfile(path)):
    return xr.open_dataset(path)
  import xarray_tensorstore  # pylint: disable=g-import-not-at-top
  if '://' not in path and not os.path.exists(path):
    raise FileNotFoundError(f'no dataset at {path}')
  return xarray_tensorstore.open_zarr(path)


def canonicalize(ds: xr.Dataset) -> xr.Dataset:
  """Lazily puts a Dataset in our layout (see the module docstring).

  Variables become (time, level, <other dims>..., longitude, latitude) (or
  (..., pixel)), missing dims skipped; a descending latitude is flipped; an
  unsorted time axis is sorted. Nothing is read.

  Raises:
    ValueError: no global grid, or repeated times.
  """
  dims = grids_lib.spatial_dims(ds)
  if len(dims) == 2:
    lat = np.asarray(ds[dims[1]].values)
    if lat.size > 1 and lat[0] > lat[-1]:
      ds = ds.isel({dims[1]: slice(None, None, -1)})
  ds = ds.transpose('time', 'level', ..., *dims, missing_dims='ignore')
  if 'time' in ds.dims:
    t = np.asarray(ds['time'].values)
    if t.size > 1:
      order = np.argsort(t, kind='stable')
      st = t[order]
      repeated = st[1:][st[1:] == st[:-1]]
      if repeated.size:
        raise ValueError(f'the time axis repeats {np.unique(repeated)[:5]}')
      if np.any(order != np.arange(t.size)):
        ds = ds.isel(time=order)
  return ds


def _as_index(idx: np.ndarray):
  """A slice when `idx` is an arithmetic progression (faster reads), else the array."""
  idx = np.asarray(idx, np.int64)
  if idx.size == 1:
    return slice(int(idx[0]), int(idx[0]) + 1)
  if idx.size > 1:
    step = int(idx[1] - idx[0])
    if step > 0 and np.all(np.diff(idx) == step):
      return slice(int(idx[0]), int(idx[-1]) + 1, step)
  return idx


def _level_positions(coord: np.ndarray, levels: Sequence[int]) -> tuple[np.ndarray, list]:
  """Positions of `levels` in the level coordinate (float-tolerant), and the missing ones."""
  coord = np.asarray(coord, np.float64)
  pos, missing = [], []
  for lev in levels:
    hits = np.flatnonzero(np.isclose(coord, lev, rtol=0, atol=1e-6 * max(1, abs(lev))))
    if hits.size:
      pos.append(int(hits[0]))
    else:
      missing.append(lev)
  return np.asarray(pos, np.int64), missing


# ----------------------------------------------------------------------------
# Computed forcings.


def _year_fraction_parts(times: np.ndarray):
  """(days since Jan 1 00 UTC, days in that year, UTC hours of day), as float64 arrays."""
  t = np.asarray(times, 'datetime64[ns]')
  year = t.astype('datetime64[Y]')
  year_start = year.astype('datetime64[ns]')
  next_year = (year + 1).astype('datetime64[ns]')
  day_ns = 86400 * _NS_PER_S
  days = (t - year_start).astype(np.int64) / day_ns
  year_days = (next_year - year_start).astype(np.int64) / day_ns
  hours = (t - t.astype('datetime64[D]').astype('datetime64[ns]')).astype(np.int64) / (
      3600 * _NS_PER_S)
  return days, year_days, hours


def solar_position(times: np.ndarray) -> dict[str, np.ndarray]:
  """Sun's declination, equation of time and Earth-Sun distance factor.

  Spencer's (1971) Fourier series as given by NOAA ("General Solar Position
  Calculations") and Iqbal (1983), with the fractional year
  gamma = 2 pi / N (day_of_year - 1 + (hour - 12) / 24), N = 365 or 366:

    declination = 0.006918 - 0.399912 cos g + 0.070257 sin g - 0.006758 cos 2g
                  + 0.000907 sin 2g - 0.002697 cos 3g + 0.00148 sin 3g   [rad]
    eq. of time = 229.18 (0.000075 + 0.001868 cos g - 0.032077 sin g
                  - 0.014615 cos 2g - 0.040849 sin 2g)                    [min]
    (r0/r)**2   = 1.000110 + 0.034221 cos g + 0.001280 sin g
                  + 0.000719 cos 2g + 0.000077 sin 2g

  Accurate to ~0.03 deg in declination and ~0.5 min in the equation of time.

  Args:
    times: datetime64 array (UTC) of any shape.

  Returns:
    dict of float64 arrays of the shape of `times`: 'declination' (radians),
    'equation_of_time' (minutes), 'distance_factor' ((r0/r)**2), 'utc_hours'.
  """
  days, year_days, hours = _year_fraction_parts(times)
  g = 2 * np.pi / year_days * (days - 0.5)  # days already counts the hour
  decl = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g)
          - 0.006758 * np.cos(2 * g) + 0.000907 * np.sin(2 * g)
          - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))
  eot = 229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g)
                  - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g))
  dist = (1.000110 + 0.034221 * np.cos(g) + 0.001280 * np.sin(g)
          + 0.000719 * np.cos(2 * g) + 0.000077 * np.sin(2 * g))
  return {'declination': decl, 'equation_of_time': eot, 'distance_factor': dist,
          'utc_hours': hours}


def toa_solar_radiation(times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
  """Instantaneous top-of-atmosphere incoming solar radiation in W m**-2.

  TOA = S0 (r0/r)**2 max(0, cos Z), with S0 = `SOLAR_CONSTANT` = 1361 W m**-2,
  cos Z = sin(lat) sin(decl) + cos(lat) cos(decl) cos(h), the hour angle
  h = (true solar time in minutes) / 4 - 180 degrees and true solar time
  = 60 * UTC hours + equation of time + 4 * longitude (degrees east); the
  declination, equation of time and (r0/r)**2 from `solar_position`.

  Args:
    times: datetime64 (UTC), shape (T,) (any shape works: it leads the output).
    lat: latitudes in degrees, broadcastable against `lon` to the spatial shape
      S, e.g. lat[None, :] and lon[:, None] for a (nlon, nlat) grid, or
      per-pixel (npix,) arrays for HEALPix.
    lon: longitudes in degrees (any convention, east positive).

  Returns:
    float64 array of shape (*times.shape, *S).
  """
  times = np.asarray(times, 'datetime64[ns]')
  lat = np.radians(np.asarray(lat, np.float64))
  lon = np.asarray(lon, np.float64)
  spatial = np.broadcast_shapes(lat.shape, lon.shape)
  sun = solar_position(times)
  expand = (Ellipsis,) + (None,) * len(spatial)
  decl = sun['declination'][expand]
  tst = 60 * sun['utc_hours'][expand] + sun['equation_of_time'][expand] + 4 * lon
  hour_angle = np.radians(tst / 4 - 180)
  cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
  return SOLAR_CONSTANT * sun['distance_factor'][expand] * np.maximum(cos_z, 0.0)


def time_features(times: np.ndarray) -> dict[str, np.ndarray]:
  """Time-of-day and time-of-year phases (spatially constant forcings).

  time_of_day = 2 pi * UTC hour / 24 and time_of_year = 2 pi * d / 365.25, d the
  fractional days since January 1st 00:00 UTC of the same year.

  Args:
    times: datetime64 array (UTC) of any shape.

  Returns:
    dict of float64 arrays shaped like `times`: 'time_of_day_sin',
    'time_of_day_cos', 'time_of_year_sin', 'time_of_year_cos'.
  """
  days, _, hours = _year_fraction_parts(times)
  day_phase = 2 * np.pi * hours / 24
  year_phase = 2 * np.pi * days / 365.25
  return {'time_of_day_sin': np.sin(day_phase), 'time_of_day_cos': np.cos(day_phase),
          'time_of_year_sin': np.sin(year_phase), 'time_of_year_cos': np.cos(year_phase)}


# ----------------------------------------------------------------------------
# Normalisation statistics.


def _as_stat(x, n: int, what: str) -> np.ndarray:
  a = np.asarray(x, np.float32).reshape(-1)
  if a.shape != (n,):
    raise ValueError(f'{what} has {a.size} values for {n} channels')
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{what} has non-finite values: {a}')
  return a


@dataclasses.dataclass
class Normalizer:
  """Per-channel statistics, from the training period only.

  Attributes:
    channels: state channel names, C of them.
    mean: (C,) float32 area-weighted mean; 0 for vector components (a mean wind
      is not rotation invariant).
    std: (C,) float32 standard deviation; a (u, v) pair at one level shares ONE
      value sqrt(mean(u**2 + v**2) / 2), so normalisation commutes with
      rotations. A constant channel gets 1.
    diff_std: (C,) float32 standard deviation of the changes over one time
      step (pairs share sqrt(mean(du**2 + dv**2) / 2), no mean removed).
    forcing_channels: forcing channel names, F of them.
    forcing_mean, forcing_std: (F,) float32; a constant forcing gets std 1.
    attrs: JSON-able provenance (dataset path, periods, time step, ...).
  """
  channels: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray
  diff_std: np.ndarray
  forcing_channels: tuple[str, ...]
  forcing_mean: np.ndarray
  forcing_std: np.ndarray
  attrs: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.channels = tuple(str(c) for c in self.channels)
    self.forcing_channels = tuple(str(c) for c in self.forcing_channels)
    c, f = len(self.channels), len(self.forcing_channels)
    self.mean = _as_stat(self.mean, c, 'mean')
    self.std = _as_stat(self.std, c, 'std')
    self.diff_std = _as_stat(self.diff_std, c, 'diff_std')
    self.forcing_mean = _as_stat(self.forcing_mean, f, 'forcing_mean')
    self.forcing_std = _as_stat(self.forcing_std, f, 'forcing_std')
    for name in ('std', 'diff_std', 'forcing_std'):
      if np.any(getattr(self, name) <= 0):
        raise ValueError(f'{name} must be positive, got {getattr(self, name)}')

  @staticmethod
  def _check(x, n: int, what: str):
    if x.shape[-1:] != (n,):
      raise ValueError(f'{what} must have {n} channels on the last axis, got shape '
                       f'{tuple(x.shape)}')

  def normalize(self, state):
    """(..., C) physical state -> normalised (numpy or jax arrays)."""
    self._check(state, len(self.channels), 'state')
    return (state - self.mean) / self.std

  def denormalize(self, state):
    """(..., C) normalised state -> physical."""
    self._check(state, len(self.channels), 'state')
    return state * self.std + self.mean

  def normalize_diff(self, diff):
    """(..., C) physical one-step change -> in units of `diff_std`."""
    self._check(diff, len(self.channels), 'diff')
    return diff / self.diff_std

  def denormalize_diff(self, diff):
    """(..., C) change in units of `diff_std` -> physical change."""
    self._check(diff, len(self.channels), 'diff')
    return diff * self.diff_std

  @property
  def diff_scale(self) -> np.ndarray:
    """(C,) diff_std / std: a one-step change of 1 diff_std in normalised units."""
    return (self.diff_std / self.std).astype(np.float32)

  def normalize_forcings(self, forcings):
    """(..., F) physical forcings -> normalised."""
    self._check(forcings, len(self.forcing_channels), 'forcings')
    return (forcings - self.forcing_mean) / self.forcing_std

  def to_json(self) -> str:
    """The statistics as a JSON string (float32 values round-trip exactly)."""
    lists = lambda a: [float(v) for v in a]
    return json.dumps({
        'format': _NORMALIZER_FORMAT, 'version': 1,
        'channels': list(self.channels), 'mean': lists(self.mean),
        'std': lists(self.std), 'diff_std': lists(self.diff_std),
        'forcing_channels': list(self.forcing_channels),
        'forcing_mean': lists(self.forcing_mean), 'forcing_std': lists(self.forcing_std),
        'attrs': self.attrs}, indent=1)

  @classmethod
  def from_json(cls, text: str) -> Normalizer:
    """Inverse of `to_json`."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get('format') != _NORMALIZER_FORMAT:
      raise ValueError('not a sphere_plugin weather Normalizer file (no '
                       f'"format": "{_NORMALIZER_FORMAT}")')
    return cls(d['channels'], d['mean'], d['std'], d['diff_std'], d['forcing_channels'],
               d['forcing_mean'], d['forcing_std'], d.get('attrs', {}))

  def save(self, path: str | os.PathLike) -> None:
    """Writes the JSON file atomically (e.g. workdir/normalization.json)."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f'{path}.partial-{os.getpid()}-{threading.get_ident()}'
    try:
      with open(tmp, 'w', encoding='utf-8') as f:
        f.write(self.to_json())
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  @classmethod
  def load(cls, path: str | os.PathLike) -> Normalizer:
    """Reads a file written by `save`."""
    with open(os.fspath(path), encoding='utf-8') as f:
      return cls.from_json(f.read())


# ----------------------------------------------------------------------------
# Background prefetching.


class BatchIterator:
  """An iterator fed by a background thread (`prefetch` items ahead).

  Exceptions raised while producing re-raise in the consumer; `close()` (also
  on garbage collection or leaving a `with` block) stops the thread.
  """

  _ITEM, _END, _ERROR = 0, 1, 2

  def __init__(self, source: Iterator, prefetch: int):
    self._source = source
    self._done = False
    self._thread = None
    if prefetch <= 0:
      return
    self._queue = queue.Queue(maxsize=prefetch)
    self._stop = threading.Event()
    # The thread must not hold `self`, so that dropping the iterator closes it.
    self._thread = threading.Thread(target=_produce,
                                    args=(source, self._queue, self._stop),
                                    name='weather-prefetch', daemon=True)
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._done:
      raise StopIteration
    if self._thread is None:
      try:
        return next(self._source)
      except BaseException:
        self._done = True
        raise
    kind, value = self._queue.get()
    if kind == self._ITEM:
      return value
    self.close()
    if kind == self._ERROR:
      raise value
    raise StopIteration

  def close(self) -> None:
    """Stops the background thread (after the batch it is reading, if any)."""
    self._done = True
    if self._thread is not None:
      self._stop.set()
      if self._thread is not threading.current_thread():
        self._thread.join(timeout=60)
    elif hasattr(self._source, 'close'):
      self._source.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


def _produce(source: Iterator, out: queue.Queue, stop: threading.Event) -> None:
  """Prefetch thread body: moves items of `source` into `out` until `stop`."""

  def put(item) -> bool:
    while not stop.is_set():
      try:
        out.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in source:
      if not put((BatchIterator._ITEM, item)):  # pylint: disable=protected-access
        return
    put((BatchIterator._END, None))  # pylint: disable=protected-access
  except BaseException as e:  # pylint: disable=broad-except
    put((BatchIterator._ERROR, e))  # pylint: disable=protected-access
  finally:
    if hasattr(source, 'close'):
      source.close()


# ----------------------------------------------------------------------------
# The data.


class WeatherData:
  """A WB2-format dataset opened lazily, cut into windows.

  Attributes:
    spec: the WeatherSpec.
    path: the dataset path actually opened.
    dataset: the lazily opened Dataset in canonical layout (time, level,
      <spatial dims>), latitude ascending (see `canonicalize`).
    grid: the `sphere_plugin.grids.Grid` of the data.
    channels: state channel names, C of them.
    forcing_channels: forcing channel names, F of them.
    vector_pairs: ((u_index, v_index), ...) state channel indices per level.
    normalizer: the `Normalizer` in use.
    stride: time indices per time step (time_step / sampling interval).
    sampling_interval: numpy timedelta64[ns] between consecutive samples.
  """

  def __init__(self, spec: WeatherSpec | None = None, normalizer: Normalizer | None = None,
               progress: bool = False):
    """Opens the dataset and checks it against the spec.

    Args:
      spec: what to read; default `WeatherSpec()` (gin-configured).
      normalizer: statistics to use (e.g. `Normalizer.load` from a workdir);
        None computes them from `spec.train_period` (`compute_normalizer`).
      progress: show a progress bar while computing statistics.

    Raises:
      ValueError: naming every missing variable, level or static forcing, and
        for a time step that is not a multiple of the sampling interval.
    """
    self.spec = spec if spec is not None else WeatherSpec()
    path = self.spec.path
    if path is None:
      from sphere_plugin.data import held_suarez  # pylint: disable=g-import-not-at-top
      path = os.fspath(held_suarez.DEFAULT_PATH)
      if not os.path.exists(path):
        held_suarez.make_dataset(path, progress=progress)
    self.path = path
    ds = canonicalize(open_dataset(path))
    if 'time' not in ds.dims:
      raise ValueError(f'{path} has no time dim (dims {dict(ds.sizes)})')
    self.dataset = ds
    self.grid = grids_lib.from_dataset(ds)
    self._spatial_dims = grids_lib.spatial_dims(ds)
    self._level_index = self._check_variables(ds, f'dataset {path}')
    spec = self.spec
    self.channels = tuple(f'{v}_{l}' for v in spec.level_variables for l in spec.levels
                          ) + spec.surface_variables
    self.forcing_channels = spec.static_forcings + tuple(
        c for f in spec.computed_forcings for c in COMPUTED_FORCING_CHANNELS[f])
    self.vector_pairs = self._pair_indices()

    self._times = np.asarray(ds['time'].values).astype('datetime64[ns]')
    step = spec.time_step_ns
    if self._times.size > 1:
      self.sampling_interval = np.min(np.diff(self._times))
    else:
      self.sampling_interval = step
    if step % self.sampling_interval != np.timedelta64(0, 'ns'):
      raise ValueError(
          f'time_step {spec.time_step} is not a multiple of the dataset sampling '
          f'interval {pd.Timedelta(self.sampling_interval)}')
    self.stride = int(step // self.sampling_interval)
    self._regular = np.diff(self._times) == self.sampling_interval  # (T-1,)
    self._window_cache: dict = {}

    self._static = self._static_fields(ds)
    self._lat, self._lon = self._toa_coords(ds)

    if normalizer is None:
      normalizer = compute_normalizer(self, progress=progress)
    else:
      self._check_normalizer(normalizer)
    self.normalizer = normalizer

  # -- construction helpers --------------------------------------------------

  def _check_variables(self, ds: xr.Dataset, where: str) -> np.ndarray:
    """Checks that `ds` has what the spec asks; returns the level positions."""
    spec = self.spec
    spatial = set(self._spatial_dims)
    problems = []
    missing = [v for v in spec.level_variables + spec.surface_variables
               if v not in ds.data_vars]
    if missing:
      problems.append(f'missing variables {missing}')
    level_pos = np.zeros(0, np.int64)
    if spec.level_variables:
      if 'level' not in ds.coords:
        problems.append('no `level` coordinate')
      else:
        level_pos, missing_levels = _level_positions(ds['level'].values, spec.levels)
        if missing_levels:
          problems.append(f'missing levels {missing_levels} (has '
                          f'{np.asarray(ds["level"].values).tolist()})')
    for v in spec.level_variables:
      if v in ds.data_vars and set(ds[v].dims) != {'time', 'level'} | spatial:
        problems.append(f'{v} has dims {ds[v].dims}, expected time, level and '
                        f'{sorted(spatial)}')
    for v in spec.surface_variables:
      if v in ds.data_vars and set(ds[v].dims) != {'time'} | spatial:
        problems.append(f'{v} has dims {ds[v].dims}, expected time and {sorted(spatial)}')
    if problems:
      raise ValueError(f'{where} does not fit the spec: ' + '; '.join(problems))
    return level_pos

  def _pair_indices(self) -> tuple[tuple[int, int], ...]:
    spec = self.spec
    index = {c: i for i, c in enumerate(self.channels)}
    out = []
    for u, v in spec.vector_pairs:
      kinds = [('level' if x in spec.level_variables else
                'surface' if x in spec.surface_variables else None) for x in (u, v)]
      if kinds == [None, None]:
        continue
      if kinds[0] != kinds[1]:
        raise ValueError(f'vector pair ({u}, {v}) must be two level variables or two '
                         f'surface variables; found {kinds[0]} and {kinds[1]}')
      if kinds[0] == 'level':
        out += [(index[f'{u}_{l}'], index[f'{v}_{l}']) for l in spec.levels]
      else:
        out.append((index[u], index[v]))
    return tuple(out)

  def _static_fields(self, ds: xr.Dataset) -> np.ndarray:
    """Static forcings as (*grid.shape, S) float32 (first time if they have one)."""
    spec = self.spec
    missing = [v for v in spec.static_forcings if v not in ds.data_vars]
    if missing:
      raise ValueError(f'static forcings {missing} are not in {self.path}; set '
                       'WeatherSpec.static_forcings to the ones it has (or ())')
    fields = []
    for name in spec.static_forcings:
      da = ds[name]
      if 'time' in da.dims:
        da = da.isel(time=0)
      if set(da.dims) != set(self._spatial_dims):
        raise ValueError(f'static forcing {name} has dims {ds[name].dims}, expected '
                         f'{self._spatial_dims} (and optionally time)')
      fields.append(np.asarray(da.transpose(*self._spatial_dims).values, np.float32))
    if not fields:
      return np.zeros(self.grid.shape + (0,), np.float32)
    return np.stack(fields, axis=-1)

  def _toa_coords(self, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees) broadcastable to grid.shape."""
    if len(self._spatial_dims) == 2:
      lon_name, lat_name = self._spatial_dims
      lon = np.asarray(ds[lon_name].values, np.float64)
      lat = np.asarray(ds[lat_name].values, np.float64)
      return lat[None, :], lon[:, None]
    pix = self._spatial_dims[0]
    for lat_name, lon_name in (('latitude', 'longitude'), ('lat', 'lon')):
      if (lat_name in ds.coords and lon_name in ds.coords
          and ds[lat_name].dims == (pix,) and ds[lon_name].dims == (pix,)):
        return (np.asarray(ds[lat_name].values, np.float64),
                np.asarray(ds[lon_name].values, np.float64))
    return self.grid.latitudes, self.grid.longitudes

  def _check_normalizer(self, normalizer: Normalizer) -> None:
    if not isinstance(normalizer, Normalizer):
      raise TypeError(f'normalizer must be a Normalizer, got {type(normalizer).__name__}')
    for what, ours, theirs in (('channels', self.channels, normalizer.channels),
                               ('forcing channels', self.forcing_channels,
                                normalizer.forcing_channels)):
      if tuple(ours) != tuple(theirs):
        raise ValueError(f'the normalizer has {what} {list(theirs)}, the spec gives '
                         f'{list(ours)}')

  # -- time axis -----------------------------------------------------------

  @property
  def all_times(self) -> np.ndarray:
    """(T,) datetime64[ns] times of `dataset`."""
    return self._times

  def _split_mask(self, split: str) -> np.ndarray:
    bounds = self.spec.period_bounds(split)
    if bounds is None:
      return np.zeros(self._times.shape, bool)
    return (self._times >= bounds[0]) & (self._times < bounds[1])

  def times(self, split: str) -> np.ndarray:
    """(N,) datetime64[ns] times of the dataset in 'train' | 'valid' | 'test'."""
    return self._times[self._split_mask(split)]

  def window_starts(self, split: str, steps: int) -> np.ndarray:
    """Time indices t where a `steps`-step window lies wholly inside `split`.

    t indexes `dataset.time`; the window's times are t + j * stride,
    j = 0..steps, exactly j * time_step after time t, and every sample between
    them is one sampling interval after the previous one (a gap between
    trajectories is never bridged).

    Returns:
      (N,) int64 ascending.
    """
    steps = int(steps)
    if steps < 0:
      raise ValueError(f'steps must be >= 0, got {steps}')
    key = (split, steps)
    if key not in self._window_cache:
      span = steps * self.stride
      n = self._times.size
      outside = np.concatenate([[0], np.cumsum(~self._split_mask(split))])
      irregular = np.concatenate([[0], np.cumsum(~self._regular)])
      t = np.arange(max(0, n - span), dtype=np.int64)
      ok = (outside[t + span + 1] - outside[t] == 0) & (irregular[t + span] - irregular[t] == 0)
      self._window_cache[key] = t[ok]
    return self._window_cache[key].copy()

  # -- reading ---------------------------------------------------------------

  def _read_state(self, idx: np.ndarray) -> np.ndarray:
    """Physical state at time indices `idx` (N,) -> (N, *grid.shape, C) float32."""
    idx = np.asarray(idx, np.int64)
    sel = _as_index(idx)
    spec = self.spec
    out = np.empty((idx.size,) + self.grid.shape + (len(self.channels),), np.float32)
    nl = len(spec.levels)
    levels = _as_index(self._level_index) if nl else None
    c = 0
    for name in spec.level_variables:
      a = self.dataset[name].variable.isel(time=sel, level=levels)
      out[..., c:c + nl] = np.moveaxis(np.asarray(a.values, np.float32), 1, -1)
      c += nl
    for name in spec.surface_variables:
      out[..., c] = np.asarray(self.dataset[name].variable.isel(time=sel).values,
                               np.float32)
      c += 1
    return out

  def forcing_arrays(self, times: np.ndarray) -> np.ndarray:
    """Physical forcings at datetime64 `times` (T,) -> (T, *grid.shape, F) float32.

    Static forcings come from the dataset; `toa_solar_radiation` is
    `toa_solar_radiation(...) / SOLAR_CONSTANT`; time features are constant
    fields. Any shape of `times` works; it leads the output.
    """
    times = np.asarray(times, 'datetime64[ns]')
    lead = times.shape
    flat = times.reshape(-1)
    shape = (flat.size,) + self.grid.shape
    parts = []
    if self._static.shape[-1]:
      parts.append(np.broadcast_to(self._static, shape + self._static.shape[-1:]))
    features = None
    for name in self.spec.computed_forcings:
      if name == 'toa_solar_radiation':
        toa = toa_solar_radiation(flat, self._lat, self._lon) / SOLAR_CONSTANT
        parts.append(toa.reshape(shape + (1,)))
      else:
        if features is None:
          features = time_features(flat)
        for ch in COMPUTED_FORCING_CHANNELS[name]:
          parts.append(np.broadcast_to(features[ch].reshape((-1,) + (1,) * (len(shape))),
                                       shape + (1,)))
    if not parts:
      return np.zeros(lead + self.grid.shape + (0,), np.float32)
    return np.concatenate(parts, axis=-1).astype(np.float32).reshape(
        lead + self.grid.shape + (len(self.forcing_channels),))

  def window_indices(self, starts: np.ndarray, steps: int) -> np.ndarray:
    """Time indices of windows: (B,) starts -> (B, steps + 1) = t + j * stride.

    Raises:
      ValueError: for windows running off the data or bridging a gap.
    """
    starts = np.asarray(starts, np.int64).reshape(-1)
    steps = int(steps)
    if steps < 0:
      raise ValueError(f'steps must be >= 0, got {steps}')
    idx = starts[:, None] + self.stride * np.arange(steps + 1)
    n = self._times.size
    bad = (idx[:, 0] < 0) | (idx[:, -1] >= n)
    if np.any(bad):
      raise ValueError(f'window starts {starts[bad][:5].tolist()} with {steps} steps run '
                       f'outside the {n} times')
    irregular = np.concatenate([[0], np.cumsum(~self._regular)])
    bridged = irregular[idx[:, -1]] - irregular[idx[:, 0]] != 0
    if np.any(bridged):
      raise ValueError(f'windows starting at {self._times[starts[bridged][:5]]} with '
                       f'{steps} steps of {self.spec.time_step} bridge a gap in time')
    return idx

  def load(self, starts: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """Reads and normalises the windows starting at time indices `starts`.

    Only the time indices these windows need are read.

    Args:
      starts: (B,) int time indices (e.g. from `window_starts`).
      steps: number of autoregressive steps k.

    Returns:
      dict of numpy arrays:
        'inputs': (B, *grid.shape, C) float32 normalised state at t;
        'targets': (B, k, *grid.shape, C) float32 normalised states at
          t + dt .. t + k dt;
        'forcings': (B, k, *grid.shape, F) float32 normalised forcings at
          t .. t + (k-1) dt (what step j's input sees);
        'time': (B,) int64 seconds since 1970-01-01 of t.
    """
    idx = self.window_indices(starts, steps)
    uniq, inverse = np.unique(idx, return_inverse=True)
    state = self.normalizer.normalize(self._read_state(uniq)).astype(np.float32)
    state = state[inverse.reshape(idx.shape)]
    forcings = self.normalizer.normalize_forcings(
        self.forcing_arrays(self._times[idx[:, :-1]])).astype(np.float32)
    return {
        'inputs': state[:, 0],
        'targets': state[:, 1:],
        'forcings': forcings,
        'time': self._times[idx[:, 0]].astype('datetime64[s]').astype(np.int64),
    }

  def batches(self, split: str, batch_size: int, steps: int, *, seed: int = 0,
              start_step: int = 0, repeat: bool = True, process_index: int = 0,
              process_count: int = 1, prefetch: int = 2) -> BatchIterator:
    """Batches of windows, read ahead by a background thread.

    repeat=True (training): batch i holds windows perm_e[r*B : (r+1)*B] with
    e = i // R, r = i % R, R = N // B full batches per epoch (the remainder is
    dropped) and perm_e a permutation drawn from (seed, e): a pure function of
    (seed, i), so a run resumed at `start_step` continues the same sequence.
    repeat=False (evaluation): one ordered pass over the split, starting at
    batch `start_step`; the last batch is padded with copies of the last window
    and 'mask' marks the real rows.

    Args:
      split: 'train' | 'valid' | 'test'.
      batch_size: the GLOBAL batch size B (over all processes).
      steps: autoregressive steps k per window.
      seed: non-negative shuffling seed.
      start_step: index of the first batch to produce.
      repeat: see above.
      process_index, process_count: this process gets rows
        [p*B/P, (p+1)*B/P) of each global batch (B divisible by P).
      prefetch: batches read ahead (0: read in the consumer's thread).

    Returns:
      A `BatchIterator` of dicts as `load` returns (with local batch B/P),
      plus 'mask': (B/P,) bool, True for real windows (always True when
      repeat=True). Close it (or use `with`) to stop the reader thread.

    Raises:
      ValueError: bad sizes, or a split with no (or, for training, fewer than
        B) windows.
    """
    batch_size, steps, start_step = int(batch_size), int(steps), int(start_step)
    seed, process_index, process_count = int(seed), int(process_index), int(process_count)
    if batch_size < 1 or start_step < 0 or seed < 0:
      raise ValueError(f'need batch_size >= 1, start_step >= 0 and seed >= 0; got '
                       f'{batch_size}, {start_step}, {seed}')
    if process_count < 1 or not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} is not in 0..{process_count - 1}')
    if batch_size % process_count:
      raise ValueError(f'the global batch_size {batch_size} is not divisible by the '
                       f'{process_count} processes')
    starts = self.window_starts(split, steps)
    n = starts.size
    if n == 0 or (repeat and n < batch_size):
      raise ValueError(
          f'the {split} split has {n} windows of {steps} steps of {self.spec.time_step}'
          + (f', fewer than batch_size {batch_size}' if n else '')
          + f' (period {getattr(self.spec, f"{split}_period")}, dataset times '
          f'{self._times[0] if self._times.size else None} .. '
          f'{self._times[-1] if self._times.size else None})')
    local = batch_size // process_count
    lo = process_index * local

    def source():
      i = start_step
      while True:
        if repeat:
          rows = batch_rows(n, batch_size, seed, i)
          mask = np.ones(batch_size, bool)
        else:
          if i * batch_size >= n:
            return
          rows = np.arange(i * batch_size, min((i + 1) * batch_size, n))
          mask = np.arange(batch_size) < rows.size
          rows = np.concatenate([rows, np.full(batch_size - rows.size, rows[-1])])
        batch = self.load(starts[rows[lo:lo + local]], steps)
        batch['mask'] = mask[lo:lo + local]
        yield batch
        i += 1

    return BatchIterator(source(), prefetch)

  # -- xarray conversion -----------------------------------------------------

  def _align_longitudes(self, ds: xr.Dataset) -> xr.Dataset:
    """Reorders ds's longitudes (any convention) to ours; error if they differ."""
    lon_name = self._spatial_dims[0]
    ours = np.mod(np.asarray(self.dataset[lon_name].values, np.float64), 360)
    theirs = np.mod(np.asarray(ds[lon_name].values, np.float64), 360)
    if ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-6):
      return ds
    dist = np.abs((ours[:, None] - theirs[None, :] + 180) % 360 - 180)
    perm = np.argmin(dist, axis=1)
    if ours.shape != theirs.shape or np.any(dist[np.arange(ours.size), perm] > 1e-6):
      raise ValueError(f'longitudes {theirs[:4]}... do not match the dataset\'s '
                       f'{ours[:4]}... (mod 360)')
    return ds.isel({lon_name: perm})

  def state_arrays(self, ds: xr.Dataset) -> np.ndarray:
    """Physical state of any Dataset with our variables and levels on our grid.

    The Dataset may use any dims order, latitude order and longitude convention
    (it is canonicalised and its longitudes matched to ours).

    Args:
      ds: Dataset with the spec's level variables (dims level + spatial + lead
        dims) and surface variables (spatial + the same lead dims).

    Returns:
      (*lead, *grid.shape, C) float32, lead = the variables' other dims in
      their order, usually (T,) for a `time` dim.

    Raises:
      ValueError: naming all missing variables and levels, or another grid.
    """
    spec = self.spec
    ds = canonicalize(ds)
    grid = grids_lib.from_dataset(ds)
    if grid != self.grid:
      raise ValueError(f'the Dataset is on {grid}, the data on {self.grid}')
    if len(self._spatial_dims) == 2:
      ds = self._align_longitudes(ds)
    spatial = self._spatial_dims
    problems = []
    missing = [v for v in spec.level_variables + spec.surface_variables
               if v not in ds.data_vars]
    if missing:
      problems.append(f'missing variables {missing}')
    level_pos = None
    if spec.level_variables:
      if 'level' not in ds.coords:
        problems.append(f'no level coordinate (need levels {list(spec.levels)})')
      else:
        level_pos, missing_levels = _level_positions(ds['level'].values, spec.levels)
        if missing_levels:
          problems.append(f'missing levels {missing_levels}')
    if problems:
      raise ValueError('the Dataset does not fit the spec: ' + '; '.join(problems))
    lead_dims = None
    arrays = []
    for name in spec.level_variables + spec.surface_variables:
      da = ds[name]
      is_level = name in spec.level_variables
      lead = tuple(d for d in da.dims if d not in spatial and d != 'level')
      if lead_dims is None:
        lead_dims = lead
      if lead != lead_dims or (is_level and 'level' not in da.dims):
        raise ValueError(f'{name} has dims {da.dims}; expected {lead_dims} + '
                         f'{"(level,) + " if is_level else ""}{spatial}')
      if is_level:
        da = da.isel(level=level_pos).transpose(*lead_dims, *spatial, 'level')
        arrays.append(np.asarray(da.values, np.float32))
      else:
        arrays.append(np.asarray(da.transpose(*lead_dims, *spatial).values,
                                 np.float32)[..., None])
    return np.concatenate(arrays, axis=-1)

  def to_dataset(self, state: np.ndarray, coords: Mapping[str, Any] | None = None,
                 *, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Inverse of `state_arrays`: physical channels back to WB2 variables.

    Args:
      state: (*lead, *grid.shape, C) physical state (numpy or jax).
      coords: one entry per leading axis, in order: dim name -> 1-D coordinate
        values of that axis' length, e.g. {'time': times} or
        {'time': init_times, 'prediction_timedelta': leads}. Default: none
        (then `state` must have no leading axes).
      attrs: Dataset attrs.

    Returns:
      Dataset with the level variables on (*lead dims, level, <spatial dims>)
      and the surface variables on (*lead dims, <spatial dims>), float32, with
      the dataset's spatial coordinates (latitude ascending, longitudes as the
      dataset has them), `level` = spec.levels and the dataset's variable attrs.
    """
    spec = self.spec
    state = np.asarray(state, np.float32)
    coords = dict(coords or {})
    nsp = len(self.grid.shape)
    if state.ndim < nsp + 1 or state.shape[-1] != len(self.channels) or (
        state.shape[-1 - nsp:-1] != self.grid.shape):
      raise ValueError(f'state must be (..., *{self.grid.shape}, {len(self.channels)}), '
                       f'got {state.shape}')
    lead_shape = state.shape[:-1 - nsp]
    if len(coords) != len(lead_shape):
      raise ValueError(f'state has {len(lead_shape)} leading axes {lead_shape} but coords '
                       f'names {len(coords)}: {list(coords)}')
    lead_dims = tuple(coords)
    out_coords = {}
    for (name, values), size in zip(coords.items(), lead_shape):
      values = np.asarray(values)
      if values.shape != (size,):
        raise ValueError(f'coordinate {name} has shape {values.shape}, its axis {size}')
      out_coords[name] = (name, values)
    spatial = self._spatial_dims
    for name, c in self.dataset.coords.items():
      if c.dims and set(c.dims) <= set(spatial):
        out_coords[name] = c.variable.copy(deep=True)
    nl = len(spec.levels)
    if spec.level_variables:
      out_coords['level'] = ('level', np.asarray(spec.levels, np.int64),
                             dict(self.dataset['level'].attrs))
    variables = {}
    c = 0
    for name in spec.level_variables:
      data = np.moveaxis(state[..., c:c + nl], -1, len(lead_shape))
      variables[name] = xr.Variable(lead_dims + ('level',) + spatial, data,
                                    dict(self.dataset[name].attrs))
      c += nl
    for name in spec.surface_variables:
      variables[name] = xr.Variable(lead_dims + spatial, state[..., c],
                                    dict(self.dataset[name].attrs))
      c += 1
    return xr.Dataset(variables, coords=out_coords, attrs=dict(attrs or {}))

  @classmethod
  def for_workdir(cls, workdir: str | os.PathLike, spec: WeatherSpec | None = None,
                  progress: bool = False, save: bool = True) -> WeatherData:
    """WeatherData with the statistics of `workdir/normalization.json`.

    Loads them if the file exists (a resumed run keeps its statistics);
    otherwise computes them from the training period and, if `save`, writes
    the file (atomically; in multi-host runs let only process 0 save).
    """
    path = os.path.join(os.fspath(workdir), NORMALIZER_FILENAME)
    if os.path.exists(path):
      return cls(spec, Normalizer.load(path), progress=progress)
    data = cls(spec, None, progress=progress)
    if save:
      data.normalizer.save(path)
    return data


def batch_rows(num_windows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Window rows of training batch `step`: a pure function of its arguments.

  Epoch e = step // R (R = num_windows // batch_size) permutes the windows with
  a generator seeded by (seed, e); batch `step` takes rows
  [r*B, (r+1)*B) of that permutation, r = step % R.

  Returns:
    (batch_size,) int64 indices into the split's window list.
  """
  per_epoch = num_windows // batch_size
  if per_epoch < 1:
    raise ValueError(f'{num_windows} windows make no batch of {batch_size}')
  epoch, r = divmod(int(step), per_epoch)
  perm = np.random.default_rng([int(seed), epoch]).permutation(num_windows)
  return perm[r * batch_size:(r + 1) * batch_size].astype(np.int64)


def compute_normalizer(data: WeatherData, split: str = 'train',
                       chunk_size: int | None = None, progress: bool = False) -> Normalizer:
  """Streams statistics over the times of `split` (default: training only).

  Means are area-weighted (grid quadrature weights) over space and plain over
  times; moments are accumulated in float64, shifted by the first chunk's
  means to avoid cancellation. Time-step differences use the pairs
  (t, t + time_step) of `data.window_starts(split, 1)` (both ends in the
  split, no gap bridged).

  Args:
    data: the WeatherData (its spec, grid and reader are used).
    split: the split to summarise.
    chunk_size: times read at once; default ~64 MB of float32 state.
    progress: show a progress bar.

  Returns:
    A `Normalizer` (see its docstring for the vector-pair rules).
  """
  idx = np.flatnonzero(data._split_mask(split))  # pylint: disable=protected-access
  times = data.all_times
  if idx.size == 0:
    span = f'{times[0]} .. {times[-1]}' if times.size else 'no times'
    raise ValueError(f'the {split} period {getattr(data.spec, f"{split}_period")} holds '
                     f'none of the dataset times ({span}): no statistics')
  pair_starts = data.window_starts(split, 1)
  is_pair = np.zeros(times.size, bool)
  is_pair[pair_starts] = True
  if not pair_starts.size:
    raise ValueError(f'the {split} period has no two times {data.spec.time_step} apart: '
                     'no time-step statistics')
  nc, nf = len(data.channels), len(data.forcing_channels)
  npix = int(np.prod(data.grid.shape))
  if chunk_size is None:
    chunk_size = max(1, (64 << 20) // (4 * npix * max(nc, nf, 1)))
  chunk_size = max(1, int(chunk_size))
  w = data.grid.quadrature_weights / data.grid.quadrature_weights.sum()
  w = w.astype(np.float64)[..., None]  # (*grid.shape, 1)
  sum_axes = tuple(range(1 + len(data.grid.shape)))
  shift = None
  s1 = np.zeros(nc)
  s2 = np.zeros(nc)
  d1 = np.zeros(nc)
  d2 = np.zeros(nc)
  f1 = np.zeros(nf)
  f2 = np.zeros(nf)
  fshift = None
  count = 0
  dcount = 0
  chunks = [idx[i:i + chunk_size] for i in range(0, idx.size, chunk_size)]
  for chunk in tqdm.tqdm(chunks, desc='normalization statistics', unit='chunk',
                         disable=not progress, dynamic_ncols=True):
    starts = chunk[is_pair[chunk]]
    read = np.union1d(chunk, starts + data.stride)
    x = data._read_state(read)  # pylint: disable=protected-access
    xc = x[np.searchsorted(read, chunk)].astype(np.float64)
    if shift is None:
      shift = np.sum(xc * w, axis=sum_axes) / chunk.size
    xs = xc - shift
    s1 += np.sum(xs * w, axis=sum_axes)
    s2 += np.sum(xs * xs * w, axis=sum_axes)
    count += chunk.size
    if starts.size:
      dx = (x[np.searchsorted(read, starts + data.stride)].astype(np.float64)
            - x[np.searchsorted(read, starts)])
      d1 += np.sum(dx * w, axis=sum_axes)
      d2 += np.sum(dx * dx * w, axis=sum_axes)
      dcount += starts.size
    if nf:
      f = data.forcing_arrays(times[chunk]).astype(np.float64)
      if fshift is None:
        fshift = np.sum(f * w, axis=sum_axes) / chunk.size
      fs = f - fshift
      f1 += np.sum(fs * w, axis=sum_axes)
      f2 += np.sum(fs * fs * w, axis=sum_axes)

  mean = shift + s1 / count
  var = np.maximum(s2 / count - (s1 / count) ** 2, 0)
  second_moment = var + mean**2  # E[x**2]
  dmean = d1 / dcount
  dvar = np.maximum(d2 / dcount - dmean**2, 0)
  dsecond = d2 / dcount
  std = np.sqrt(var)
  diff_std = np.sqrt(dvar)
  for u, v in data.vector_pairs:
    mean[[u, v]] = 0
    std[[u, v]] = np.sqrt((second_moment[u] + second_moment[v]) / 2)
    diff_std[[u, v]] = np.sqrt((dsecond[u] + dsecond[v]) / 2)
  if nf:
    fmean = fshift + f1 / count
    fstd = np.sqrt(np.maximum(f2 / count - (f1 / count) ** 2, 0))
  else:
    fmean = fstd = np.zeros(0)

  def positive(s, m):
    # A constant channel (std 0 up to rounding) gets 1: nothing to scale.
    return np.where(s > 1e-6 * np.maximum(np.abs(m), 1e-30), s, 1.0)

  spec = data.spec
  return Normalizer(
      channels=data.channels, mean=mean, std=positive(std, mean),
      diff_std=positive(diff_std, std),
      forcing_channels=data.forcing_channels, forcing_mean=fmean,
      forcing_std=positive(fstd, fmean),
      attrs={'dataset': str(data.path), 'grid': str(data.grid), 'split': split,
             'period': list(getattr(spec, f'{split}_period')),
             'time_step': spec.time_step, 'times': int(count),
             'time_step_pairs': int(dcount),
             'weighting': 'area (grid quadrature weights)'})


__all__ = ['COMPUTED_FORCINGS', 'COMPUTED_FORCING_CHANNELS', 'NORMALIZER_FILENAME',
           'SOLAR_CONSTANT', 'BatchIterator', 'Normalizer', 'WeatherData', 'WeatherSpec',
           'batch_rows', 'canonicalize', 'compute_normalizer', 'open_dataset',
           'solar_position', 'time_features', 'toa_solar_radiation']
