"""Tests of sphere_plugin.plots: PNGs are written off-screen with Agg."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg

from sphere_plugin.weather import plots

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture
def canvases(monkeypatch):
  """Records the canvas of every figure plots makes."""
  seen = []
  make = plots._figure  # pylint: disable=protected-access

  def spy(**kwargs):
    fig = make(**kwargs)
    seen.append(fig.canvas)
    return fig
  monkeypatch.setattr(plots, '_figure', spy)
  return seen


def _scores(scale):
  leads = pd.to_timedelta(['6h', '24h', '72h']).values
  return xr.Dataset(
      {'geopotential': (('prediction_timedelta', 'level'),
                        scale * np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
                        {'units': 'm**2 s**-2'}),
       'surface_pressure': (('prediction_timedelta',), scale * np.array([1.0, 2.0, 3.0]),
                            {'units': 'Pa'})},
      coords={'prediction_timedelta': leads, 'level': [500, 850]})


def _check_png(path):
  data = path.read_bytes()
  assert len(data) > 1000  # a real image, not an empty file
  assert data[:8] == PNG_MAGIC


def test_plot_rmse_vs_lead_writes_png(tmp_path, canvases):
  backend = matplotlib.get_backend()
  path = tmp_path / 'sub' / 'rmse.png'
  plots.plot_rmse_vs_lead({'model': _scores(1.0), 'persistence': _scores(2.0)},
                          [('geopotential', 500), 'surface_pressure'], path)
  _check_png(path)
  assert len(canvases) == 1 and isinstance(canvases[0], FigureCanvasAgg)
  assert matplotlib.get_backend() == backend  # the global backend is left alone
  with pytest.raises(ValueError, match='no model'):
    plots.plot_rmse_vs_lead({'model': _scores(1.0)}, [('temperature', 850)],
                            tmp_path / 'x.png')


def test_plot_maps_writes_png(tmp_path, canvases):
  lon = np.arange(16) * 22.5
  lat = np.linspace(-78.75, 78.75, 8)
  field = np.cos(np.radians(lat))[None, :] * np.sin(np.radians(lon))[:, None]
  truth = xr.DataArray(field, dims=('longitude', 'latitude'),
                       coords={'longitude': lon, 'latitude': lat}, attrs={'units': 'K'})
  forecast = truth + 0.1
  path = tmp_path / 'maps.png'
  plots.plot_maps(truth, forecast, path, title='T850')
  _check_png(path)
  assert len(canvases) == 1 and isinstance(canvases[0], FigureCanvasAgg)
  assert len(canvases[0].figure.axes) == 6  # 3 maps + 3 colour bars
  assert canvases[0].figure.axes[0].name == 'mollweide'
  # (latitude, longitude) order, descending latitude and [-180, 180) longitudes
  # work too.
  other = truth.isel(latitude=slice(None, None, -1)).transpose('latitude', 'longitude')
  other = other.assign_coords(longitude=(other.longitude + 180) % 360 - 180)
  plots.plot_maps(other, other, tmp_path / 'maps2.png')
  _check_png(tmp_path / 'maps2.png')
  with pytest.raises(ValueError, match='select the other dims'):
    plots.plot_maps(truth.expand_dims(time=2), forecast.expand_dims(time=2),
                    tmp_path / 'bad.png')


def test_lonlat_field_wraps_longitudes_without_a_gap():
  lon = np.arange(8) * 45.0  # 0..315
  lat = np.array([-45.0, 45.0])
  values = np.arange(16.0).reshape(8, 2)
  da = xr.DataArray(values, dims=('longitude', 'latitude'),
                    coords={'longitude': lon, 'latitude': lat})
  lon_e, lat_e, v = plots._lonlat_field(da)  # pylint: disable=protected-access
  # Cells centred on -180 .. 135 in steps of 45, plus the -180 cell repeated
  # at +180: edges -180, -157.5, ..., 157.5, 180.
  np.testing.assert_allclose(lon_e, np.concatenate([[-180], np.arange(-157.5, 180, 45), [180]]))
  np.testing.assert_allclose(lat_e, [-90, 0, 90])
  assert v.shape == (2, 9)
  # The column at lon 270 (= -90) is the third after wrapping (-180, -135, -90).
  np.testing.assert_array_equal(v[:, 2], values[6])
  np.testing.assert_array_equal(v[:, 0], v[:, -1])  # the dateline cell, both sides


def _geopotential(lon=np.arange(32) * 11.25, lat=np.linspace(-84.375, 84.375, 16)):
  field = 5.5e4 + 2e3 * np.cos(np.radians(lat))[None, :] * np.sin(np.radians(lon))[:, None]
  return xr.DataArray(field, dims=('longitude', 'latitude'), name='geopotential',
                      coords={'longitude': lon, 'latitude': lat},
                      attrs={'units': 'm**2 s**-2'})


def test_geopotential_maps_are_in_metres_with_readable_ticks(tmp_path, canvases):
  truth = _geopotential()
  plots.plot_maps(truth, truth + 98.0665, tmp_path / 'z.png', title='z 500 hPa')
  fig = canvases[0].figure
  maps = [ax for ax in fig.axes if ax.name == 'mollweide']
  bars = [ax for ax in fig.axes if ax.name != 'mollweide']
  assert bars[0].get_xlabel() == 'geopotential height (m)'
  assert bars[2].get_xlabel() == 'geopotential height error (m)'
  # Values drawn in metres: z / g.
  drawn = maps[0].collections[0].get_array()
  np.testing.assert_allclose(float(drawn.max()), truth.values.max() / plots.GRAVITY)
  np.testing.assert_allclose(float(np.abs(maps[2].collections[0].get_array()).max()), 10.0)
  fig.canvas.draw()
  for bar in bars:
    assert len(bar.get_xticks()) <= 6  # MaxNLocator(5): not crowded
  for ax in maps:  # longitudes labelled
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert '60°E' in labels and '120°W' in labels, labels


def test_rmse_panels_name_the_level_in_hpa_and_geopotential_in_metres(tmp_path, canvases):
  plots.plot_rmse_vs_lead({'model': _scores(plots.GRAVITY)},
                          [('geopotential', 500), 'surface_pressure'], tmp_path / 'r.png')
  z, ps = canvases[0].figure.axes[:2]
  assert z.get_title() == 'geopotential height 500 hPa'
  assert z.get_ylabel() == 'RMSE (m)'
  np.testing.assert_allclose(z.lines[0].get_ydata(), [1.0, 3.0, 5.0])
  assert ps.get_title() == 'surface_pressure' and ps.get_ylabel() == 'RMSE (Pa)'


@pytest.mark.parametrize('order', ['ring', 'nested'])
def test_healpix_maps_draw_the_nearest_pixels_value(order, tmp_path, canvases):
  # A HEALPix forecast's maps (tools/evaluate.py on gin/forecaster_small_healpix.gin)
  # are drawn by nearest pixel: each lat-lon cell holds the value of the pixel
  # whose centre is nearest to the cell's centre (healpy as the reference).
  import healpy  # pylint: disable=g-import-not-at-top
  nside = 4
  npix = 12 * nside**2
  values = np.arange(npix, dtype=np.float64)  # value = RING index
  if order == 'nested':
    values = healpy.reorder(values, r2n=True)  # value at NESTED cell i = its RING index
  truth = xr.DataArray(values, dims=('pixel',), coords={'pixel': np.arange(npix)},
                       name='temperature',
                       attrs={'units': 'K', 'healpix_nside': nside, 'healpix_order': order})
  drawn = plots._healpix_on_lonlat(truth).transpose('latitude', 'longitude')
  lon, lat = np.meshgrid(drawn.longitude.values, drawn.latitude.values)
  centres = np.stack(healpy.pix2vec(nside, np.arange(npix)), -1)  # RING order
  cells = np.asarray(healpy.ang2vec(lon.ravel(), lat.ravel(), lonlat=True)).reshape(-1, 3)
  dist = np.arccos(np.clip(cells @ centres.T, -1, 1))  # (cells, npix)
  got = np.take_along_axis(dist, drawn.values.astype(int).reshape(-1, 1), -1)[:, 0]
  np.testing.assert_allclose(got, dist.min(-1), atol=1e-9)  # a nearest centre (ties allowed)
  plots.plot_maps(truth, truth + 1, tmp_path / 'hpx.png', title='T850')
  _check_png(tmp_path / 'hpx.png')
