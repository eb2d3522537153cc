"""Planar CNN and graph forecasters: padding, longitude periodicity, and they train."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sphere_plugin  # registers ds.sphere (regrid to HEALPix)
from sphere_plugin import weather
from sphere_plugin.weather import baselines as B
from sphere_plugin.weather import forecast_task
from sphere_plugin.weather import testdata


def test_pad_lonlat_is_periodic_and_crosses_the_poles():
  nlon, nlat = 8, 4
  x = jnp.arange(nlon * nlat, dtype=jnp.float32).reshape(1, nlon, nlat, 1)
  p = np.asarray(B.pad_lonlat(x, 1))[0, ..., 0]
  assert p.shape == (nlon + 2, nlat + 2)
  xs = np.asarray(x)[0, ..., 0]
  np.testing.assert_array_equal(p[0, 1:-1], xs[-1])  # west halo = last longitude
  np.testing.assert_array_equal(p[-1, 1:-1], xs[0])  # east halo = first longitude
  for i in range(nlon):  # beyond the south pole: the first row, half a turn away
    np.testing.assert_array_equal(p[1 + i, 0], xs[(i + nlon // 2) % nlon, 0])
    np.testing.assert_array_equal(p[1 + i, -1], xs[(i + nlon // 2) % nlon, -1])
  with pytest.raises(ValueError, match='even nlon'):
    B.pad_lonlat(jnp.zeros((1, 7, 4, 1)), 1)


def test_planar_forecaster_is_periodic_in_longitude():
  m = B.PlanarForecaster(features=6, blocks=1)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 16, 8, 5)), jnp.float32)
  f = jnp.asarray(rng.standard_normal((2, 16, 8, 2)), jnp.float32)
  v = m.init(jax.random.PRNGKey(0), x, f)
  y = m.apply(v, x, f)
  assert y.shape == x.shape
  for shift in (1, 5):
    ys = m.apply(v, jnp.roll(x, shift, 1), jnp.roll(f, shift, 1))
    np.testing.assert_allclose(ys, jnp.roll(y, shift, 1), atol=1e-5)
  assert B.parameter_count(v) > 0


def _losses(task, steps=12, lr=3e-3):
  """Training losses of a few Adam steps on one fixed batch."""
  variables = task.init_variables(jax.random.PRNGKey(0))
  params = variables.pop('params')
  batch = next(iter(task.train_batches(4, seed=0, start_step=0)))
  batch = jax.tree.map(jnp.asarray, batch)
  tx = optax.adam(lr)
  opt = tx.init(params)

  @jax.jit
  def step(params, model_state, opt):
    def f(p):
      loss, (ms, _) = task.loss(dict(model_state, params=p), batch, None, True)
      return loss, ms
    (loss, ms), g = jax.value_and_grad(f, has_aux=True)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), ms, opt, loss

  out = []
  for _ in range(steps):
    params, variables, opt, loss = step(params, variables, opt)
    out.append(float(loss))
  return out


def _spec(path):
  return weather.WeatherSpec(path=path, levels=testdata.LEVELS,
                             train_period=('2000-01-01', '2000-12-31'),
                             valid_period=('2001-01-01', '2001-12-31'),
                             test_period=('2002-01-01', '2002-12-31'))


def test_planar_forecaster_trains(tmp_path):
  path = str(tmp_path / 'data.zarr')
  testdata.synthetic_dataset().to_zarr(path, zarr_format=2, consolidated=True)
  model = lambda **kw: B.PlanarForecaster(features=8, blocks=1, **kw)
  task = forecast_task.ForecastTask(_spec(path), model=model, progress=False)
  losses = _losses(task)
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.filterwarnings('ignore:variable .land_sea_mask.')
def test_graph_forecaster_trains(tmp_path):
  path = str(tmp_path / 'hpx.zarr')
  testdata.synthetic_dataset().sphere.regrid('healpix:4', method='spectral').to_zarr(
      path, zarr_format=2, consolidated=True)
  model = lambda **kw: B.GraphForecaster(grid='healpix:4', features=(8, 8), **kw)
  task = forecast_task.ForecastTask(_spec(path), model=model, progress=False)
  assert str(task.data.grid) == 'healpix:4'
  losses = _losses(task, steps=15, lr=1e-2)
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0], losses
  with pytest.raises(ValueError, match='HEALPix'):
    B.GraphForecaster(grid='gaussian:16x8').init(
        jax.random.PRNGKey(0), jnp.zeros((1, 16, 8, 2)), jnp.zeros((1, 16, 8, 1)))
