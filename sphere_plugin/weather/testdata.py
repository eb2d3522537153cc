"""A tiny synthetic weather run for tests and examples: data and a gin config.

`synthetic_dataset()` is smooth random WB2-format data on gaussian:16x8 (48
6-hourly states over three years' splits); `CONFIG` (format it with
`path=`) trains a 4-channel forecaster on it for 3 steps; `ONE_STEP` overrides
it to one plain SGD step.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sphere_plugin import grids

GRID = grids.parse('gaussian:16x8')
LEVELS = (500, 850)
LEVEL_VARS = ('geopotential', 'temperature', 'u_component_of_wind', 'v_component_of_wind')

CONFIG = """
import sphere_plugin.weather
import sphere_plugin.weather.forecaster
import sphere_plugin.nn
import sphere_plugin.train
import sphere_plugin.weather.forecast_task

sphere_plugin.data.weather.WeatherSpec.path = '{path}'
sphere_plugin.data.weather.WeatherSpec.levels = (500, 850)
sphere_plugin.data.weather.WeatherSpec.train_period = ('2000-01-01', '2000-12-31')
sphere_plugin.data.weather.WeatherSpec.valid_period = ('2001-01-01', '2001-12-31')
sphere_plugin.data.weather.WeatherSpec.test_period = ('2002-01-01', '2002-12-31')
sphere_plugin.nn.SphericalCNN.input_grid = 'gaussian:16x8'
sphere_plugin.nn.SphericalCNN.input_spins = (0, 1)
sphere_plugin.nn.SphericalCNN.grids = ('gaussian:16x8',)
sphere_plugin.nn.SphericalCNN.features = (4,)
sphere_plugin.models.Forecaster.backbone = @sphere_plugin.nn.SphericalCNN()
sphere_plugin.train.ForecastTask.model = @sphere_plugin.models.Forecaster
sphere_plugin.train.ForecastTask.eval_leads = (1, 2)
sphere_plugin.train.ForecastTask.progress = False
sphere_plugin.train.train.task = @sphere_plugin.train.ForecastTask()
sphere_plugin.train.train.num_steps = 3
sphere_plugin.train.train.batch_size = 4
sphere_plugin.train.train.checkpoint_every = 3
sphere_plugin.train.train.eval_every = 3
sphere_plugin.train.train.progress = False
"""


def synthetic_dataset() -> xr.Dataset:
  """Smooth random WB2-format data: 3 periods of 6-hourly states on gaussian:16x8."""
  rng = np.random.default_rng(0)
  times = np.concatenate([
      np.datetime64(f'{y}-01-01', 'ns') + np.arange(n) * np.timedelta64(6, 'h')
      for y, n in ((2000, 24), (2001, 12), (2002, 12))])
  lon, lat = np.deg2rad(GRID.longitudes), np.deg2rad(GRID.latitudes)
  t = np.arange(times.size)[:, None, None, None] * 0.3
  lev = np.arange(len(LEVELS))[None, :, None, None]
  wave = (np.cos(lat)[None, None, None, :] * np.cos(lon[None, None, :, None] - t - lev)
          + 0.1 * rng.standard_normal((times.size, len(LEVELS), GRID.nlon, GRID.nlat)))
  base = {'geopotential': (5e4, 500.0, 'm**2 s**-2'), 'temperature': (260.0, 5.0, 'K'),
          'u_component_of_wind': (5.0, 10.0, 'm s**-1'),
          'v_component_of_wind': (0.0, 5.0, 'm s**-1')}
  data = {k: (('time', 'level', 'longitude', 'latitude'), (m + s * wave).astype(np.float32),
              {'units': u}) for k, (m, s, u) in base.items()}
  data['surface_pressure'] = (('time', 'longitude', 'latitude'),
                              (1e5 + 300 * wave[:, 0]).astype(np.float32), {'units': 'Pa'})
  data['land_sea_mask'] = (('longitude', 'latitude'),
                           (np.cos(lon)[:, None] > 0.5).repeat(GRID.nlat, 1).astype(np.float32))
  data['geopotential_at_surface'] = (('longitude', 'latitude'),
                                     np.zeros(GRID.shape, np.float32))
  return xr.Dataset(data, coords={'time': times, 'level': np.array(LEVELS),
                                  'longitude': GRID.longitudes, 'latitude': GRID.latitudes},
                    attrs={'title': 'synthetic'})


ONE_STEP = """
sphere_plugin.train.train.num_steps = 1
sphere_plugin.train.train.eval_every = 1000
sphere_plugin.train.optimizer.name = 'sgd'
sphere_plugin.train.optimizer.schedule = 'constant'
sphere_plugin.train.optimizer.learning_rate = 0.1
"""
