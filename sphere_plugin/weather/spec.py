"""What a weather run reads and how it cuts it: `WeatherSpec` (gin-configurable).

The gin name stays `sphere_plugin.data.weather.WeatherSpec`, as workdirs store it.
"""

from __future__ import annotations

import dataclasses
import os

import gin
import numpy as np
import pandas as pd

from sphere_plugin.weather import conventions




SPLITS = ('train', 'valid', 'test')
COMPUTED_FORCINGS = ('toa_solar_radiation', 'time_of_day', 'time_of_year')
COMPUTED_FORCING_CHANNELS = {
    'toa_solar_radiation': ('toa_solar_radiation',),
    'time_of_day': ('time_of_day_sin', 'time_of_day_cos'),
    'time_of_year': ('time_of_year_sin', 'time_of_year_cos'),
}
_NS_PER_S = 1_000_000_000

# ----------------------------------------------------------------------------
# Configuration.


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
    conventions.parse_timedelta(self.time_step, 'time_step', positive=True)
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
    return conventions.parse_timedelta(self.time_step, 'time_step', positive=True)

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

