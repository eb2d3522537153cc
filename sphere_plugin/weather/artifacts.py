"""What a forecaster run leaves in its workdir besides checkpoints and config.gin.

`normalization.json` (`sphere_plugin.weather.normalization`) and
`template.nc`: one time of the training data (grid, coordinates, attrs and
static forcings), so that a trained model predicts without the training data.
"""

from __future__ import annotations

import os

from sphere_plugin.io import atomic
from sphere_plugin.weather import data as data_lib

TEMPLATE_FILE = 'template.nc'


def save_template(data: data_lib.WeatherData, workdir: str) -> None:
  """Writes one time of the training data (plus static fields) as workdir/template.nc."""
  ds = data.dataset.isel(time=[0]).load()
  ds = ds.drop_vars([v for v in ds.coords if v not in ds.dims and 'time' in ds[v].dims])
  path = os.path.join(workdir, TEMPLATE_FILE)
  with atomic.atomic_path(path) as tmp:
    ds.drop_encoding().to_netcdf(tmp)
