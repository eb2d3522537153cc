"""WeatherBench2 layout rules: opening a dataset and putting it in canonical order.

See `sphere_plugin.weather.data` for the rules `canonicalize` applies.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin.io import datasets




# ----------------------------------------------------------------------------
# Opening and canonical layout.


open_dataset = datasets.open_dataset  # one reader for the package (sphere_plugin.io.datasets)


def canonicalize(ds: xr.Dataset) -> xr.Dataset:
  """Lazily puts a Dataset in our layout (see the module docstring).

  Variables become (time, level, <other dims>..., longitude, latitude) (or
  (..., pixel)), missing dims skipped; a descending latitude is flipped;
  HEALPix data in NESTED (or permuted) order are put in RING order
  (`grids.to_ring`, which rewrites the order attrs); an unsorted time axis is
  sorted. Nothing is read.

  Raises:
    ValueError: no global grid (partial-sky HEALPix included), or repeated times.
  """
  dims = grids_lib.spatial_dims(ds)
  if len(dims) == 1:
    ds = grids_lib.to_ring(ds)
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


def as_index(idx: np.ndarray):
  """A slice when `idx` is an arithmetic progression (faster reads), else the array."""
  idx = np.asarray(idx, np.int64)
  if idx.size == 1:
    return slice(int(idx[0]), int(idx[0]) + 1)
  if idx.size > 1:
    step = int(idx[1] - idx[0])
    if step > 0 and np.all(np.diff(idx) == step):
      return slice(int(idx[0]), int(idx[-1]) + 1, step)
  return idx


def level_positions(coord: np.ndarray, levels: Sequence[int]) -> tuple[np.ndarray, list]:
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


def parse_timedelta(value, what: str = 'timedelta', *, positive: bool = False) -> np.timedelta64:
  """One time span as np.timedelta64[ns]: '6h', '1D', '30min', np.timedelta64 or pd.Timedelta.

  Bare numbers are refused (their unit would be a guess), and so is NaT.

  Args:
    value: the span.
    what: its name in error messages (e.g. 'time_step', 'lead').
    positive: refuse zero and negative spans.

  Raises:
    ValueError: naming `what` and the value, with examples of valid ones.
  """
  # np.timedelta64 subclasses np.signedinteger: let it through.
  if (isinstance(value, (bool, int, float, np.integer, np.floating))
      and not isinstance(value, np.timedelta64)):
    raise ValueError(f'{what} {value!r} is a bare number; give a timedelta such as '
                     "'6h', np.timedelta64(6, 'h') or pd.Timedelta(hours=6)")
  try:
    span = pd.Timedelta(value)
  except (ValueError, TypeError) as e:
    raise ValueError(f'{what} {value!r} is not a timedelta such as '
                     "'6h', '12h', '1D', '30min'") from e
  if span is pd.NaT:
    raise ValueError(f'{what} {value!r} is NaT')
  if positive and span <= pd.Timedelta(0):
    raise ValueError(f'{what} must be positive, got {value!r}')
  return np.timedelta64(span.value, 'ns')
