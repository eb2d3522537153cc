"""A trained forecaster loaded from a workdir: rollouts and `ds.sphere.predict`.

A training workdir (`sphere_plugin.train`) holds `config.gin` (the operative
config), `normalization.json` (statistics of the training period), `template.nc`
(one time of the training data: grid, coordinates, attrs and static forcings)
and the orbax checkpoints. `load(workdir)` rebuilds the model from these alone,
so predicting needs neither the training dataset nor the gin state of the
caller.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import gin
import jax
import numpy as np
import tqdm
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin import weather
from sphere_plugin.train import workdir as workdir_lib
from sphere_plugin.weather import artifacts
from sphere_plugin.weather import forecast_task
from sphere_plugin.weather import forecaster as forecaster_lib

CONFIG_FILE = workdir_lib.CONFIG_FILE
TEMPLATE_FILE = artifacts.TEMPLATE_FILE
save_template = artifacts.save_template  # the names this module gave them


@dataclasses.dataclass
class TrainedForecaster:
  """A forecaster with its variables, statistics and data layout.

  Attributes:
    model: the `Forecaster` module.
    variables: its flax variables (params and batch statistics).
    data: `WeatherData` on the workdir's template (grid, channels, forcings,
      statistics); `data.grid` is the model grid.
    step: the training step the variables come from.
    workdir: where it was loaded from.
  """
  model: forecaster_lib.Forecaster
  variables: Any
  data: weather.WeatherData
  step: int
  workdir: str | None = None

  def __post_init__(self):
    self.diff_scale = self.data.normalizer.diff_scale
    self._step_fn = jax.jit(lambda v, x, f: forecaster_lib.step(self.model, v, x, f,
                                                                self.diff_scale))

  @property
  def grid(self) -> grids_lib.Grid:
    """The model grid."""
    return self.data.grid

  @property
  def time_step(self) -> np.timedelta64:
    """The model's time step."""
    return self.data.spec.time_step_ns

  def rollout(self, state, times, steps: int, normalized: bool = False) -> np.ndarray:
    """Autoregressive forecast.

    Args:
      state: (B, *grid.shape, C) initial states (physical units unless
        `normalized`).
      times: (B,) datetime64 initial times (for the computed forcings).
      steps: number of time steps.
      normalized: input and output in normalised units.

    Returns:
      (B, steps, *grid.shape, C) float32 forecasts at t + dt, ..., t + steps dt.
    """
    n = self.data.normalizer
    x = np.asarray(state, np.float32)
    if not normalized:
      x = n.normalize(x)
    times = np.asarray(times, 'datetime64[ns]').reshape(-1)
    if x.shape[0] != times.size:
      raise ValueError(f'{x.shape[0]} states but {times.size} initial times')
    out = []
    for j in range(int(steps)):
      f = n.normalize_forcings(self.data.forcing_arrays(times + j * self.time_step))
      x = self._step_fn(self.variables, x, f.astype(np.float32))
      out.append(np.asarray(x))
    out = np.stack(out, axis=1) if out else np.zeros((x.shape[0], 0) + x.shape[1:], np.float32)
    return out if normalized else n.denormalize(out).astype(np.float32)

  def _predict_batch(self, ds: xr.Dataset, needed: list[str], source: grids_lib.Grid,
                     steps: int, regrid_method: str) -> xr.Dataset:
    """Forecasts from the (few) times of `ds`, on its grid and layout (no attrs)."""
    from sphere_plugin import accessor  # pylint: disable=g-import-not-at-top
    x = ds[needed]
    if source != self.grid:
      x = accessor.regrid_dataset(x, self.grid, method=regrid_method)
    state = self.data.state_arrays(x)  # (T, *grid, C); names missing levels
    times = np.asarray(ds['time'].values, 'datetime64[ns]')
    preds = self.rollout(state, times, steps)
    leads = (np.arange(1, steps + 1) * self.time_step).astype('timedelta64[ns]')
    out = self.data.to_dataset(preds, {'time': times, 'prediction_timedelta': leads})
    if source != self.grid:
      out = accessor.regrid_dataset(out, source, method=regrid_method)
    return _like(out, ds)

  def predict(self, ds: xr.Dataset, steps: int, *, batch_size: int = 8,
              regrid_method: str = 'conservative', progress: bool = True) -> xr.Dataset:
    """Forecasts from every time of a WB2-format Dataset (see `ds.sphere.predict`).

    Initial times are processed `batch_size` at a time, input regridding and
    output regridding included, so memory is the output plus one batch.
    `progress` shows a bar over the batches on stderr (the first batch also
    compiles the model step and builds the regridders).
    """
    if steps < 1:
      raise ValueError(f'steps must be >= 1, got {steps}')
    squeeze = 'time' not in ds.dims
    if squeeze:
      if 'time' not in ds.coords:
        raise ValueError('predict needs a time coordinate (initial times)')
      ds = ds.expand_dims('time')
    source = grids_lib.from_dataset(ds)
    original = ds  # HEALPix in another order: RING inside, the input's order out
    ds = grids_lib.to_ring(ds)
    needed = (list(self.data.spec.level_variables) + list(self.data.spec.surface_variables))
    missing = [v for v in needed if v not in ds.data_vars]
    if missing:
      raise ValueError(f'the model needs variables {missing}, which the Dataset lacks '
                       f'(it has {sorted(ds.data_vars)})')
    times = np.asarray(ds['time'].values, 'datetime64[ns]')
    out = None
    bar = tqdm.tqdm(range(0, len(times), batch_size), desc=f'predict {steps} step(s)',
                    unit='batch', disable=not progress, file=sys.stderr)
    for i in bar:  # streamed: memory is one output + one batch
      part = self._predict_batch(ds.isel(time=slice(i, i + batch_size)), needed, source, steps,
                                 regrid_method)
      if ds is not original:
        part = _in_layout_of(part, original)
      if out is None:
        out = _grown_along_time(part, ds['time'])
      for name, v in _time_variables(part).items():
        out[name].variable[{'time': slice(i, i + part.sizes['time'])}] = v
    for name in out.data_vars:
      if name in original.data_vars:
        out[name].attrs = dict(original[name].attrs)
    out.attrs = dict(original.attrs, forecast_model=self.workdir or '', forecast_step=self.step)
    # The input's regrid attrs describe how the input was made, not this output.
    for key in ('regrid_method', 'regrid_source_grid'):
      out.attrs.pop(key, None)
    if source != self.grid:  # the forecast was made on the model grid and regridded back
      out.attrs.update(regrid_method=regrid_method, regrid_source_grid=str(self.grid))
    if squeeze:
      out = out.isel(time=0)
    return out


def _time_variables(ds: xr.Dataset) -> dict[str, xr.Variable]:
  """The data variables and coordinates of `ds` that vary along `time` (not `time` itself)."""
  return {k: v for k, v in ds.variables.items() if 'time' in v.dims and k != 'time'}


def _grown_along_time(part: xr.Dataset, time: xr.DataArray) -> xr.Dataset:
  """`part` with every time-dependent variable allocated (unfilled) for all of `time`."""
  grown = {}
  for name, v in _time_variables(part).items():
    shape = tuple(time.size if d == 'time' else n for d, n in zip(v.dims, v.shape))
    grown[name] = xr.Variable(v.dims, np.empty(shape, v.dtype), v.attrs, v.encoding)
  static = part.drop_vars([k for k, v in part.variables.items() if 'time' in v.dims])
  coords = {k: v for k, v in grown.items() if k in part.coords}
  data = {k: v for k, v in grown.items() if k not in part.coords}
  return static.assign_coords({'time': time.variable, **coords}).assign(data)


def _in_layout_of(out: xr.Dataset, original: xr.Dataset) -> xr.Dataset:
  """A RING-order HEALPix result put back in the pixel order and description of
  `original` (NESTED, permuted cells: whatever `grids.healpix_layout` read)."""
  layout = grids_lib.healpix_layout(original)
  out_dim = grids_lib.spatial_dims(out)[0]
  ring = grids_lib.healpix_layout(out).ring_index
  position = np.empty_like(ring)
  position[ring] = np.arange(ring.size)  # where each RING pixel sits in `out`
  out = out.isel({out_dim: position[layout.ring_index]})
  out = out.drop_vars([n for n, c in out.coords.items() if out_dim in c.dims or n in
                       grids_lib.healpix_metadata_names(out)])
  if out_dim != layout.dim:
    out = out.rename({out_dim: layout.dim})
  mappings = grids_lib.healpix_metadata_names(original)
  keep = {n: v for n, v in original.variables.items()
          if (layout.dim in v.dims and n in original.coords and 'time' not in v.dims)
          or n in mappings}
  out = out.assign_coords(keep)
  for name, v in out.data_vars.items():
    v.attrs.pop('grid_mapping', None)
    if name in original.data_vars and 'grid_mapping' in original[name].attrs:
      v.attrs['grid_mapping'] = original[name].attrs['grid_mapping']
  return out


def _like(out: xr.Dataset, ds: xr.Dataset) -> xr.Dataset:
  """Puts a lat-lon result on the spatial coordinates and dims order of `ds`."""
  dims = grids_lib.spatial_dims(ds)
  if len(dims) != 2:
    return out
  lon, lat = dims
  if float(ds[lon].min()) < 0:
    out = out.assign_coords({lon: (out[lon] + 180) % 360 - 180}).sortby(lon)
  out = out.reindex({lon: ds[lon].values, lat: ds[lat].values}, method='nearest',
                    tolerance=1e-6)
  # WB2 order: time, prediction_timedelta, level, then the input's spatial order.
  with_both = [v for v in ds.data_vars if set(dims) <= set(ds[v].dims)]
  spatial = [d for d in ds[with_both[0]].dims if d in dims] if with_both else list(dims)
  return out.transpose('time', 'prediction_timedelta', ..., *spatial, missing_dims='ignore')


workdir_config = workdir_lib.stored_gin_config  # the name this module gave it


def forecast_split(model: TrainedForecaster, data: weather.WeatherData, split: str,
                   steps: int, init_every: np.timedelta64, batch_size: int = 8,
                   progress: bool = True, max_inits: int | None = None) -> xr.Dataset:
  """Model forecasts from every `init_every` in a split, as a WB2 forecast Dataset.

  With `max_inits`, only that many of those initial times, evenly spaced.

  Returns:
    Dataset with dims (time [initial], prediction_timedelta, level, *spatial).
  """
  starts = data.window_starts(split, steps)
  if len(starts) == 0:
    raise ValueError(f'the {split} period holds no window of {steps} steps')
  times = data.all_times[starts]
  keep = ((times - times[0]) % init_every) == np.timedelta64(0, 'ns')
  starts, times = starts[keep], times[keep]
  if max_inits is not None and len(starts) > max_inits:
    idx = np.linspace(0, len(starts) - 1, max_inits).round().astype(int)
    starts, times = starts[idx], times[idx]
  preds = []
  for i in tqdm.trange(0, len(starts), batch_size, desc='forecasts', unit='batch',
                       disable=not progress):
    b = data.load(starts[i:i + batch_size], 0)
    preds.append(model.rollout(b['inputs'], times[i:i + batch_size], steps, normalized=True))
  preds = data.normalizer.denormalize(np.concatenate(preds, axis=0)).astype(np.float32)
  leads = (np.arange(1, steps + 1) * model.time_step).astype('timedelta64[ns]')
  return data.to_dataset(preds, {'time': times, 'prediction_timedelta': leads})


def training_spec(workdir: str) -> weather.WeatherSpec:
  """The WeatherSpec of the workdir's config.gin (the training dataset)."""
  with workdir_config(workdir):
    try:
      grid = gin.query_parameter('sphere_plugin.train.ForecastTask.embedded_grid')
    except ValueError:  # not bound
      grid = None
    # A macro (gin/forecaster_small_healpix.gin binds `embedded_grid = %GRID`) comes
    # back unevaluated: look its value up.
    while isinstance(grid, gin.config.ConfigurableReference) and str(grid).startswith('%'):
      grid = gin.query_parameter(str(grid))
    return forecast_task.with_embedded_data(weather.WeatherSpec(), grid, progress=False)


def load(workdir: str) -> TrainedForecaster:
  """Loads the latest checkpoint of a forecaster training workdir.

  Raises:
    FileNotFoundError: when the workdir lacks the config, statistics, template
      or a checkpoint.
  """
  from sphere_plugin import train  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  paths = {f: os.path.join(workdir, f)
           for f in (CONFIG_FILE, weather.NORMALIZER_FILENAME, TEMPLATE_FILE)}
  missing = [f for f, p in paths.items() if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f'{workdir} is not a forecaster workdir: it lacks {missing}')
  with workdir_lib.stored_gin_config(workdir):
    spec = dataclasses.replace(weather.WeatherSpec(), path=paths[TEMPLATE_FILE])
    normalizer = weather.Normalizer.load(paths[weather.NORMALIZER_FILENAME])
    task = forecast_task.ForecastTask(spec=spec, normalizer=normalizer, progress=False)
  template = task.init_variables(jax.random.PRNGKey(0))
  variables, step = train.latest_variables(workdir, template)
  return TrainedForecaster(task.model, variables, task.data, step, workdir)
