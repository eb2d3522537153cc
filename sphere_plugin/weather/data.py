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

import os
from typing import Any, Mapping

import numpy as np
import pandas as pd
import tqdm
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin.train.batching import BatchIterator
from sphere_plugin.train.batching import batch_rows
from sphere_plugin.weather import held_suarez
from sphere_plugin.weather.conventions import as_index
from sphere_plugin.weather.conventions import canonicalize
from sphere_plugin.weather.conventions import level_positions
from sphere_plugin.weather.conventions import open_dataset
from sphere_plugin.weather.forcings import SOLAR_CONSTANT
from sphere_plugin.weather.forcings import time_features
from sphere_plugin.weather.forcings import toa_solar_radiation
from sphere_plugin.weather.normalization import NORMALIZER_FILENAME
from sphere_plugin.weather.normalization import Moments
from sphere_plugin.weather.normalization import Normalizer
from sphere_plugin.weather.normalization import StatisticsSums
from sphere_plugin.weather.normalization import normalizer_from_sums
from sphere_plugin.weather.spec import COMPUTED_FORCING_CHANNELS
from sphere_plugin.weather.spec import WeatherSpec




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
               progress: bool = False, compute_statistics: bool = True):
    """Opens the dataset and checks it against the spec.

    Args:
      spec: what to read; default `WeatherSpec()` (gin-configured).
      normalizer: statistics to use (e.g. `Normalizer.load` from a workdir);
        None computes them from `spec.train_period` (`compute_normalizer`).
      progress: show a progress bar while computing statistics.
      compute_statistics: False leaves `normalizer` None when none is given
        (a reader for computing statistics elsewhere, e.g. a Beam worker).

    Raises:
      ValueError: naming every missing variable, level or static forcing, and
        for a time step that is not a multiple of the sampling interval.
    """
    self.spec = spec if spec is not None else WeatherSpec()
    path = self.spec.path
    if path is None:
      path = os.fspath(held_suarez.DEFAULT_PATH)
      if not os.path.exists(path):
        raise FileNotFoundError(
            f'the embedded dataset {path} has not been made yet: run tools/make_dataset.py '
            '(or `sphere_plugin.weather.held_suarez.make_dataset()`), or set WeatherSpec.path')
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
      if compute_statistics:
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
        level_pos, missing_levels = level_positions(ds['level'].values, spec.levels)
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
    sel = as_index(idx)
    spec = self.spec
    out = np.empty((idx.size,) + self.grid.shape + (len(self.channels),), np.float32)
    nl = len(spec.levels)
    levels = as_index(self._level_index) if nl else None
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
        level_pos, missing_levels = level_positions(ds['level'].values, spec.levels)
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


def statistics_plan(data: WeatherData, split: str = 'train',
                    chunk_size: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
  """The chunks of time indices whose statistics make up the Normalizer of `split`.

  Args:
    data: the WeatherData.
    split: the split to summarise.
    chunk_size: times per chunk; default ~64 MB of float32 state.

  Returns:
    (chunks: list of (n,) int64 ascending time indices, is_pair: (T,) bool,
    whether time t starts a time-step pair (t, t + stride) inside the split).

  Raises:
    ValueError: the split holds no time, or no two times a time step apart.
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
  npix = int(np.prod(data.grid.shape))
  nc, nf = len(data.channels), len(data.forcing_channels)
  if chunk_size is None:
    chunk_size = max(1, (64 << 20) // (4 * npix * max(nc, nf, 1)))
  chunk_size = max(1, int(chunk_size))
  return [idx[i:i + chunk_size] for i in range(0, idx.size, chunk_size)], is_pair


def chunk_statistics(data: WeatherData, chunk: np.ndarray, is_pair: np.ndarray
                     ) -> StatisticsSums:
  """The statistics of one chunk of time indices (see `statistics_plan`).

  Reads the chunk's states (and the states one time step after its pair
  starts, which may lie in the next chunk) and its forcings.

  Returns:
    StatisticsSums: state moments over the chunk's times, one-step-change
    moments over its pairs, forcing moments; merge them in any order.
  """
  chunk = np.asarray(chunk, np.int64)
  npix = int(np.prod(data.grid.shape))
  w = (data.grid.area_weights / npix)[..., None]  # (*grid.shape, 1), sums to 1
  starts = chunk[is_pair[chunk]]
  read = np.union1d(chunk, starts + data.stride)
  x = data._read_state(read)  # pylint: disable=protected-access
  state = Moments.of(x[np.searchsorted(read, chunk)], w)
  dx = (x[np.searchsorted(read, starts + data.stride)].astype(np.float64)
        - x[np.searchsorted(read, starts)])
  forcing = (Moments.of(data.forcing_arrays(data.all_times[chunk]), w)
             if data.forcing_channels else Moments.empty(0))
  return StatisticsSums(state, Moments.of(dx, w), forcing)


def normalizer_attrs(data: WeatherData, split: str) -> dict:
  """The provenance attrs of a Normalizer computed from `data`'s `split`."""
  spec = data.spec
  return {'dataset': str(data.path), 'grid': str(data.grid), 'split': split,
          'period': list(getattr(spec, f'{split}_period')), 'time_step': spec.time_step,
          'weighting': 'area (grid quadrature weights)'}


def compute_normalizer(data: WeatherData, split: str = 'train',
                       chunk_size: int | None = None, progress: bool = False) -> Normalizer:
  """Streams statistics over the times of `split` (default: training only).

  Means are area-weighted (grid quadrature weights) over space and plain over
  times; moments are accumulated per chunk in float64 and merged pairwise
  (`normalization.Moments`, Chan et al.), so they do not cancel. Time-step
  differences use the pairs (t, t + time_step) of `data.window_starts(split, 1)`
  (both ends in the split, no gap bridged). The Beam reduction
  (`sphere_plugin.weather.beam_statistics`) merges the same chunk statistics.

  Args:
    data: the WeatherData (its spec, grid and reader are used).
    split: the split to summarise.
    chunk_size: times read at once; default ~64 MB of float32 state.
    progress: show a progress bar.

  Returns:
    A `Normalizer` (see its docstring for the vector-pair rules).
  """
  chunks, is_pair = statistics_plan(data, split, chunk_size)
  sums = None
  for chunk in tqdm.tqdm(chunks, desc='normalization statistics', unit='chunk',
                         disable=not progress, dynamic_ncols=True):
    part = chunk_statistics(data, chunk, is_pair)
    sums = part if sums is None else sums.merge(part)
  return normalizer_from_sums(sums, data.channels, data.forcing_channels, data.vector_pairs,
                              normalizer_attrs(data, split))


__all__ = ['COMPUTED_FORCINGS', 'COMPUTED_FORCING_CHANNELS', 'NORMALIZER_FILENAME',
           'SOLAR_CONSTANT', 'BatchIterator', 'Normalizer', 'WeatherData', 'WeatherSpec',
           'batch_rows', 'canonicalize', 'chunk_statistics', 'compute_normalizer',
           'normalizer_attrs', 'open_dataset', 'statistics_plan',
           'solar_position', 'time_features', 'toa_solar_radiation']
