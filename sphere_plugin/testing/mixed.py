"""A small WB2/ERA5-style dataset that mixes what regridding must tell apart.

    ds = mixed_dataset(times=10)          # in memory; write it with ds.to_zarr(...)

On equiangular_with_poles:32x17 in the ERA5 layout (latitude descending,
longitudes -180..180, dims (time, level, latitude, longitude)):

* `temperature` (time, level, lat, lon): smooth plus noise, units K;
* `u_component_of_wind`, `v_component_of_wind`: a zonal wind 10 cos(lat)
  and 0 (a spin-1 pair);
* `sea_surface_temperature` (time, lat, lon): NaN over a "land" box;
* `land_sea_mask` (lat, lon): static, 1 over that land;
* with `precipitation=True`: `total_precipitation_6hr` (time, lat, lon),
  non-negative with sharp edges;
* with `co2=True`: `co2` (time,), no spatial dims (carried unchanged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from sphere_plugin import grids


def mixed_dataset(times: int = 10, levels=(500, 850), *, precipitation: bool = False,
                  co2: bool = False) -> xr.Dataset:
  """The dataset (see the module docstring); deterministic (seed 0)."""
  grid = grids.equiangular_with_poles(32, 17)
  lat, lon = grid.latitudes[::-1], np.arange(32) * 11.25 - 180.0
  la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing='ij')
  rng = np.random.default_rng(0)
  base = 250 + 30 * np.cos(la) ** 2 + 5 * np.sin(la) * np.cos(2 * lo)
  temp = base[None, None] + rng.normal(size=(times, len(levels)) + base.shape)
  sst = np.where((np.abs(np.degrees(la)) < 30) & (np.cos(lo) > 0), np.nan, base)
  wind = 10 * np.cos(la)
  dims = ('time', 'level', 'latitude', 'longitude')
  ds = xr.Dataset(
      {'temperature': (dims, temp.astype(np.float32),
                       {'units': 'K', 'long_name': 'temperature'}),
       'sea_surface_temperature': (('time', 'latitude', 'longitude'),
                                   np.repeat(sst[None], times, 0).astype(np.float32)),
       'u_component_of_wind': (dims, np.broadcast_to(wind, temp.shape).astype(np.float32)),
       'v_component_of_wind': (dims, np.zeros(temp.shape, np.float32)),
       'land_sea_mask': (('latitude', 'longitude'), np.isnan(sst).astype(np.float32))},
      coords={'time': pd.date_range('2021-03-01', periods=times, freq='6h'),
              'level': np.array(levels), 'latitude': lat, 'longitude': lon},
      attrs={'title': 'tiny WB2-style test set'})
  if precipitation:
    rain = np.maximum(temp[:, 0] - 270.0, 0.0).astype(np.float32)
    ds['total_precipitation_6hr'] = (('time', 'latitude', 'longitude'), rain, {'units': 'm'})
  if co2:
    ds['co2'] = (('time',), np.arange(times, dtype=np.float32))
  return ds
