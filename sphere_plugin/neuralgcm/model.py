"""Building, initialising and training NeuralGCM models that contain our towers.

Works with NeuralGCM 1.2.2's legacy `PressureLevelModel` (haiku + gin). The
binding names below are those of the shipped TL63 checkpoint's
`model_config_str`: encoder `DimensionalLearnedWeatherbenchToPrimitiveEncoder`,
decoder `DimensionalLearnedPrimitiveToWeatherbenchDecoder`, learned physics
`DivCurlNeuralParameterization`; all three use the unscoped `@NodalMapping`,
whose `tower_factory` is `@EpdTower`. Swapping only one of them therefore
needs a scoped mapping (`encoder_bindings`, `physics_bindings`).
"""

from __future__ import annotations

from typing import Any, Sequence

import gin
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from sphere_plugin import grids as grids_lib
from sphere_plugin.neuralgcm import checkpoint as ckpt_lib
from sphere_plugin.neuralgcm import tower as tower_lib

ENCODER = 'DimensionalLearnedWeatherbenchToPrimitiveEncoder'
DECODER = 'DimensionalLearnedPrimitiveToWeatherbenchDecoder'
PHYSICS = 'DivCurlNeuralParameterization'
TOWER_MODULE = 'spherical_cnn_tower'


def tower_bindings(slot: str, scope: str, grid: str = '@GridTL63()',
                   **tower_args: Any) -> list[str]:
  """gin lines that give one NeuralGCM slot a `SphericalCNNTower`.

  Args:
    slot: the configurable whose `nodal_mapping_module` gets the tower, e.g.
      `ENCODER` or `PHYSICS`.
    scope: a gin scope for this slot's mapping and tower (e.g. 'sphere_encoder').
    grid: gin value for the tower's grid: the model's own grid reference
      (default) or grid text in quotes, e.g. "'gaussian:128x64'".
    **tower_args: further `SphericalCNNTower` bindings (Python values, written
      with repr), e.g. features=(8,), lmaxes=(21,).

  Returns:
    gin lines.
  """
  lines = [f'{slot}.nodal_mapping_module = @{scope}/NodalMapping',
           f'{scope}/NodalMapping.tower_factory = @{scope}/SphericalCNNTower',
           f'{scope}/SphericalCNNTower.grid = {grid}']
  lines += [f'{scope}/SphericalCNNTower.{k} = {v!r}' for k, v in sorted(tower_args.items())]
  return lines


def _tower_grid_bindings() -> list[tuple[str, Any]]:
  out = []
  for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    if selector.rsplit('.', 1)[-1] == 'SphericalCNNTower' and 'grid' in params:
      value = params['grid']
      if isinstance(value, gin.config.ConfigurableReference):
        value = value.scoped_configurable_fn() if value.evaluate else value
      out.append((f'{scope + "/" if scope else ""}SphericalCNNTower.grid', value))
  return out


def check_tower_grids(model) -> None:
  """Refuses a model whose `SphericalCNNTower.grid` bindings differ from its grid.

  Towers run on the model coordinates' nodal grid. Compared are the latitude
  spacing and the node counts (so an equiangular grid of the right shape is
  refused too).

  Args:
    model: a `neuralgcm.PressureLevelModel`.

  Raises:
    ValueError: naming the binding, its grid and the model's.
  """
  from neuralgcm.legacy import gin_utils  # pylint: disable=g-import-not-at-top
  model_grid = grids_lib.from_dinosaur(model.model_coords.horizontal)
  with gin_utils.specific_config(model.gin_config):
    ckpt_lib.check_parsed_config()
    bindings = _tower_grid_bindings()
  for where, value in bindings:
    grid = tower_lib.resolve_grid(value)
    if grid != model_grid:
      raise ValueError(
          f'{where} is {grid}, but the model runs its towers on {model_grid} (its '
          f'coordinates: {model.model_coords.horizontal.latitude_spacing} latitudes, '
          f'{model_grid.nlon}x{model_grid.nlat} nodes); bind it to @GridTL63() or '
          f"'{model_grid}'")


def build_model(checkpoint: dict[str, Any]):
  """`PressureLevelModel.from_checkpoint` with our checks.

  Args:
    checkpoint: from `load_checkpoint` (its params may lack new towers; see
      `init_params`).

  Returns:
    A `neuralgcm.PressureLevelModel`.

  Raises:
    ValueError: unregistered configurables, or tower grids that differ from
      the model's grid.
  """
  from neuralgcm.legacy import api  # pylint: disable=g-import-not-at-top
  ckpt_lib.check_config(checkpoint['model_config_str'])
  model = api.PressureLevelModel.from_checkpoint(checkpoint)
  check_tower_grids(model)
  return model


def with_params(model, params):
  """The same model with other parameters."""
  return type(model)(model._structure, params, model.gin_config)  # pylint: disable=protected-access


def _prepare(model, inputs, forcings):
  from neuralgcm.legacy import api  # pylint: disable=g-import-not-at-top
  sim_time = inputs['sim_time']
  inputs = api._prepend_dummy_time_axis(model._to_abbreviated_names_and_tracers(inputs))  # pylint: disable=protected-access
  forcings = api._prepend_dummy_time_axis(model._squeeze_level_from_forcings(forcings))  # pylint: disable=protected-access
  return inputs, forcings, sim_time


def init_params(model, inputs: dict, forcings: dict, rng, with_advance: bool = False):
  """Parameters for `model`: the checkpoint's, plus fresh ones for new modules.

  Runs the model's forcing, encode, (advance,) decode under one
  `hk.transform(...).init` (NeuralGCM creates some parameters in module
  constructors, so they must share one transform), then keeps every
  checkpoint parameter whose (module, name) and shape match.

  Args:
    model: a `PressureLevelModel`.
    inputs, forcings: one time of `model.inputs_from_xarray` /
      `model.forcings_from_xarray` (arrays (level, lon, lat)).
    rng: JAX key for the new parameters.
    with_advance: also initialise modules used only by `advance` (needed when
      a tower sits in the physics parameterization).

  Returns:
    (params, new_modules): the haiku params dict and the sorted names of the
    modules that were initialised fresh.
  """
  from neuralgcm.legacy import gin_utils  # pylint: disable=g-import-not-at-top
  structure = model._structure  # pylint: disable=protected-access
  x, f, sim_time = _prepare(model, inputs, forcings)

  def fwd(x, f, sim_time):
    m = structure.model_cls()
    forcing = m.forcing_fn(f, sim_time)
    state = m.encode(x, forcing)
    if with_advance:
      state = m.advance(state, forcing)
    return m.decode(state, forcing)

  with gin_utils.specific_config(model.gin_config):
    fresh = jax.jit(hk.transform(fwd).init)(rng, x, f, sim_time)
  old = model.params
  params, new_modules = {}, set()
  for mod, values in fresh.items():
    params[mod] = {}
    for name, value in values.items():
      keep = mod in old and name in old[mod] and np.shape(old[mod][name]) == value.shape
      params[mod][name] = jnp.asarray(old[mod][name]) if keep else value
      if not keep:
        new_modules.add(mod)
  return params, sorted(new_modules)


def split_params(params, module_substring: str = TOWER_MODULE):
  """(trainable, frozen): modules whose path contains `module_substring`, the rest."""
  train = {k: v for k, v in params.items() if module_substring in k}
  frozen = {k: v for k, v in params.items() if module_substring not in k}
  return train, frozen


def reconstruction_loss(model, inputs: dict, forcings: dict, rng, scales: dict):
  """Mean squared encode->decode error, each variable divided by its scale.

  Args:
    model: a `PressureLevelModel`.
    inputs, forcings: one time of model inputs / forcings (level, lon, lat).
    rng: key for the (stochastic) encoder.
    scales: variable name -> positive scale (e.g. its standard deviation).

  Returns:
    Scalar loss.
  """
  state = model.encode(inputs, forcings, rng)
  out = model.decode(state, forcings)
  terms = [jnp.mean(((out[k] - inputs[k]) / scales[k]) ** 2) for k in scales]
  return sum(terms) / len(terms)


def variable_scales(inputs: dict, names: Sequence[str]) -> dict:
  """Per-variable standard deviation (floored) of one snapshot."""
  return {k: float(max(np.std(np.asarray(inputs[k])), 1e-12)) for k in names}


def fit_tower(model, inputs: dict, forcings: dict, rng, steps: int,
              learning_rate: float = 1e-3, slot_module: str = 'weatherbench_to_primitive_encoder',
              callback=None):
  """Trains one slot's `SphericalCNNTower` to reconstruct a snapshot; the rest is frozen.

  Adam on the parameters of the tower modules whose path contains
  `slot_module` (default: the encoder's), minimising `reconstruction_loss`
  (encode -> decode, each variable scaled by its standard deviation).

  Args:
    model: a `PressureLevelModel` with initialised tower parameters.
    inputs, forcings: one time of model inputs / forcings (level, lon, lat).
    rng: key for the stochastic encoder (the same noise every step).
    steps: Adam steps.
    learning_rate: Adam learning rate.
    slot_module: substring of the haiku module path selecting the slot.
    callback: optional callback(step, loss) after each step.

  Returns:
    (model with the trained parameters, losses): `steps + 1` losses, before
    each step and after the last.
  """
  import optax  # pylint: disable=g-import-not-at-top
  params = model.params
  train = {k: v for k, v in params.items() if TOWER_MODULE in k and slot_module in k}
  if not train:
    raise ValueError(f'no {TOWER_MODULE} parameters under a module matching {slot_module!r}')
  frozen = {k: v for k, v in params.items() if k not in train}
  scales = variable_scales(inputs, model.input_variables)
  opt = optax.adam(learning_rate)

  def loss_fn(p, frozen, inputs, forcings, rng):
    return reconstruction_loss(with_params(model, {**frozen, **p}), inputs, forcings, rng,
                               scales)

  @jax.jit
  def step(p, opt_state, frozen, inputs, forcings, rng):
    loss, grads = jax.value_and_grad(loss_fn)(p, frozen, inputs, forcings, rng)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = opt.init(train)
  losses = []
  for i in range(steps):
    train, opt_state, loss = step(train, opt_state, frozen, inputs, forcings, rng)
    losses.append(float(loss))
    if callback is not None:
      callback(i, losses[-1])
  losses.append(float(jax.jit(loss_fn)(train, frozen, inputs, forcings, rng)))
  return with_params(model, {**frozen, **train}), losses
