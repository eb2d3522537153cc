"""The embedded default weather dataset: a Held-Suarez atmosphere simulated with dinosaur.

The atmosphere is dinosaur's dry primitive equations in sigma coordinates
(`primitive_equations.PrimitiveEquations`, flat ground) forced as Held & Suarez
(1994) prescribe (`held_suarez.HeldSuarezForcing`: Newtonian relaxation to a
zonally symmetric radiative-equilibrium temperature, Rayleigh friction in the
boundary layer), stepped with the SIL3 implicit-explicit Runge-Kutta scheme
(`time_integration.imex_rk_sil3`) and an exponential spectral filter. It has
statistically steady mid-latitude storm tracks, so a forecaster trained on it
learns to move baroclinic eddies around, and it costs well under a second per
simulated day at T21 on one CPU core.

How the data are made (`simulate`):

1. **Spin-up.** One atmosphere starts at rest in the Held-Suarez radiative
   equilibrium temperature (or isothermal at 288 K) plus a small random
   large-scale temperature perturbation, and is run for `spinup_days`. Its
   eddy kinetic energy (EKE) is recorded every simulated day (dataset attr
   `spinup_eddy_kinetic_energy`) so the spin-up can be checked.
2. **Branching.** `trajectories` copies of the spun-up state each get a
   different random temperature perturbation (RMS `perturbation_kelvin`) and run
   side by side (`jax.vmap`) for `branch_days`, long enough for the
   perturbations to grow into different weather.
3. **Sampling.** Every branch then runs `days` more days, sampled every
   `sample_hours` hours.

Each sampled state is converted to WeatherBench2 variables on pressure levels:
winds from vorticity/divergence, geopotential integrated hydrostatically on
sigma levels (`primitive_equations.get_geopotential_on_sigma`), and all four
fields interpolated from sigma to pressure with dinosaur's
`vertical_interpolation.interp_sigma_to_pressure`, linearly in log(pressure)
(exact for the geopotential of an isothermal layer; linear extrapolation where
a level lies below the lowest sigma level).

The result (`simulate` / `make_dataset`) is a WeatherBench2-format Dataset:
`geopotential` (m**2 s**-2), `temperature` (K), `u_component_of_wind`,
`v_component_of_wind` (m s**-1) on dims (time, level, longitude, latitude),
`surface_pressure` (Pa) on (time, longitude, latitude), and static zero
`geopotential_at_surface` and `land_sea_mask` on (longitude, latitude);
latitude ascending, longitude 0..360, float32 data. Trajectory k is dated from
January 1st of `start_year` (2000) + k * `years_per_trajectory` (1 year for up to
365 sampled days), so trajectories never overlap in time; the non-index coordinate `trajectory` (time,) tells them apart.
Held-Suarez forcing has no seasonal or daily cycle: the dates only keep the
trajectories apart and give later code real datetimes.

Reference: Held, I. M. & Suarez, M. J. (1994). A proposal for the
intercomparison of the dynamical cores of atmospheric general circulation
models. Bull. Amer. Meteor. Soc. 75, 1825-1830.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time as time_lib
from typing import Any

import numpy as np
import tqdm
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin.io import atomic
from sphere_plugin.io import cache
from sphere_plugin.io import datasets

# Bump when the generator changes what it writes for a given configuration:
# stores made by another version then no longer count as cached.
FORMAT_VERSION = 1

DEFAULT_LEVELS = (250, 500, 850)

# Where `make_dataset` and tools/make_dataset.py write by default (`sphere_plugin.io.cache`:
# .cache/ in a checkout, git-ignored; the user's cache for an installed wheel).
DEFAULT_PATH = cache.data_path('held_suarez_t21_64x32.zarr')

# WB2 / ERA5 names and units.
UNITS = {
    'geopotential': 'm**2 s**-2',
    'temperature': 'K',
    'u_component_of_wind': 'm s**-1',
    'v_component_of_wind': 'm s**-1',
    'surface_pressure': 'Pa',
    'geopotential_at_surface': 'm**2 s**-2',
    'land_sea_mask': '1',
}
LONG_NAMES = {
    'geopotential': 'Geopotential',
    'temperature': 'Temperature',
    'u_component_of_wind': 'U component of wind',
    'v_component_of_wind': 'V component of wind',
    'surface_pressure': 'Surface pressure',
    'geopotential_at_surface': 'Geopotential at surface (Held-Suarez: flat ground)',
    'land_sea_mask': 'Land-sea mask (Held-Suarez: no land)',
}
PRESSURE_LEVEL_VARIABLES = ('geopotential', 'temperature', 'u_component_of_wind',
                            'v_component_of_wind')

# Spectral filter (dinosaur `exponential_step_filter`): each step multiplies the
# coefficient of total wavenumber l by exp(-dt/tau * ((k - c) / (1 - c))**(2 p)),
# k = l / lmax. Modes above c = 0.4 lmax are damped with an e-folding time of
# tau at the top degree (a scale-selective hyperdiffusion in place of Held and
# Suarez's del^8; it also removes the energy that piles up at the truncation).
_FILTER_TAU_HOURS = 2.0
_FILTER_ORDER = 3
_FILTER_CUTOFF = 0.4
# Spectral extent of the random temperature perturbations (total wavenumbers
# 1..this, capped at the truncation).
_PERTURBATION_LMAX = 10
_REFERENCE_TEMPERATURE_K = 288.0
_SURFACE_PRESSURE_PA = 1e5


# ----------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines the generated data (hashed for the cache).

  Attributes:
    grid: the nodal grid, a Gaussian grid text such as 'gaussian:64x32'. The
      output is on this grid.
    truncation: the triangular spectral truncation T of the model. Shapes alone
      are ambiguous (64x32 is the nodal grid of both T21 and TL31), so it is
      explicit; None gives the quadratic (alias-free) truncation
      T = (nlon - 1) // 3: T21 for 64x32, T42 for 128x64.
    layers: number of equidistant sigma layers (Held-Suarez use 20).
    dt_minutes: model time step; None gives 30 min * 21 / T, rounded down to a
      divisor of the sampling interval (30 min at T21, 15 at T42).
    spinup_days: days the single trajectory runs before branching. From the
      equilibrium state the eddy kinetic energy overshoots at day ~10 and is
      statistically steady from day ~30 (T21, measured); from isothermal rest
      eddies only appear after ~50 days and settle after ~150, so use ~200.
    branch_days: days each perturbed branch runs before sampling starts. With
      1 K perturbations the z500 anomaly correlation between branches falls
      to ~0.2 after 25 days and ~0.05 after 30 (T21, measured).
    days: sampled days per trajectory.
    trajectories: number of branches (independent trajectories).
    levels: pressure levels in hPa (stored ascending).
    seed: random seed of all perturbations.
    initial_state: 'equilibrium' (Held-Suarez radiative-equilibrium temperature
      at rest) or 'isothermal' (288 K at rest).
    perturbation_kelvin: RMS of the random temperature perturbation given to
      each branch (the spin-up start gets a tenth of it).
    sample_hours: sampling interval in hours (must divide 24).
    start_year: year of the first trajectory's first sample (January 1st).
  """
  grid: str = 'gaussian:64x32'
  truncation: int | None = None
  layers: int = 20
  dt_minutes: float | None = None
  spinup_days: int = 100
  branch_days: int = 30
  days: int = 45
  trajectories: int = 4
  levels: tuple[int, ...] = DEFAULT_LEVELS
  seed: int = 0
  initial_state: str = 'equilibrium'
  perturbation_kelvin: float = 1.0
  sample_hours: int = 6
  start_year: int = 2000

  def resolved(self) -> 'Config':
    """The same configuration with defaults filled in and values checked.

    Raises:
      ValueError: naming the bad value and what would be accepted.
    """
    grid = grids_lib.parse(self.grid)
    if not isinstance(grid, grids_lib.LatLonGrid) or grid.kind != 'gaussian':
      raise ValueError(f'the Held-Suarez model runs on Gaussian grids (e.g. '
                       f"'gaussian:64x32'), got {grid}; regrid the output with "
                       'ds.sphere.regrid for other grids')
    truncation = ((grid.nlon - 1) // 3 if self.truncation is None
                  else int(self.truncation))
    if not 1 <= truncation <= grid.lmax:
      raise ValueError(f'truncation T{truncation} does not fit {grid} (which resolves '
                       f'up to T{grid.lmax}); use 1 <= truncation <= {grid.lmax}')
    sample_hours = int(self.sample_hours)
    if sample_hours < 1 or 24 % sample_hours:
      raise ValueError(f'sample_hours must divide 24, got {self.sample_hours}')
    sample_minutes = 60 * sample_hours
    if self.dt_minutes is None:
      target = 30.0 * 21 / truncation
      dt = max(d for d in range(1, sample_minutes + 1)
               if sample_minutes % d == 0 and d <= max(target, 1))
    else:
      dt = float(self.dt_minutes)
      n = sample_minutes / dt
      if dt <= 0 or abs(n - round(n)) > 1e-9:
        raise ValueError(f'dt_minutes={self.dt_minutes} must divide the sampling '
                         f'interval of {sample_minutes} minutes')
    dt = int(dt) if float(dt).is_integer() else float(dt)
    levels = tuple(sorted(int(lv) for lv in self.levels))
    if not levels or len(set(levels)) != len(levels) or not all(0 < lv < 1000 for lv in levels):
      raise ValueError(f'levels must be distinct pressures in hPa between 0 and 1000 '
                       f'(exclusive), got {self.levels}')
    if self.initial_state not in ('equilibrium', 'isothermal'):
      raise ValueError(f"initial_state must be 'equilibrium' or 'isothermal', got "
                       f'{self.initial_state!r}')
    for name in ('spinup_days', 'branch_days'):
      if int(getattr(self, name)) < 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
    for name in ('days', 'trajectories', 'layers'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
    if self.layers < 2:
      raise ValueError(f'layers must be >= 2, got {self.layers}')
    if float(self.perturbation_kelvin) < 0:
      raise ValueError(f'perturbation_kelvin must be >= 0, got {self.perturbation_kelvin}')
    return dataclasses.replace(
        self, grid=str(grid), truncation=truncation, layers=int(self.layers),
        dt_minutes=dt, spinup_days=int(self.spinup_days),
        branch_days=int(self.branch_days), days=int(self.days),
        trajectories=int(self.trajectories), levels=levels, seed=int(self.seed),
        perturbation_kelvin=float(self.perturbation_kelvin),
        sample_hours=sample_hours, start_year=int(self.start_year))

  @property
  def years_per_trajectory(self) -> int:
    """Calendar years between trajectory starts (enough that they never overlap)."""
    return max(1, math.ceil(self.days / 365))

  def to_json(self) -> str:
    """The resolved configuration as canonical JSON (what the cache hash covers)."""
    d = dataclasses.asdict(self.resolved())
    d['levels'] = list(d['levels'])
    d['format_version'] = FORMAT_VERSION
    return json.dumps(d, sort_keys=True)

  def hash(self) -> str:
    """Short hash of `to_json()`, stored in the dataset attrs as `config_hash`."""
    return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------
# The model.


class _Model:
  """dinosaur objects and jitted functions for one (grid, truncation, layers, dt, levels)."""

  def __init__(self, grid: str, truncation: int, layers: int, dt_minutes: float,
               levels: tuple[int, ...], sample_hours: int):
    # pylint: disable=g-import-not-at-top
    import jax
    import jax.numpy as jnp
    from dinosaur import coordinate_systems
    from dinosaur import held_suarez
    from dinosaur import primitive_equations
    from dinosaur import scales
    from dinosaur import sigma_coordinates
    from dinosaur import spherical_harmonic
    from dinosaur import time_integration
    from dinosaur import vertical_interpolation
    # pylint: enable=g-import-not-at-top
    units = scales.units
    self.grid = grids_lib.parse(grid)
    # Explicit mapping of our grid to dinosaur's: same Gauss nodes, triangular
    # truncation T (longitude_wavenumbers = T + 1, total_wavenumbers = T + 2, as
    # dinosaur's Grid.T21() etc.).
    horizontal = grids_lib.to_dinosaur(self.grid, lmax=truncation)
    vertical = sigma_coordinates.SigmaCoordinates.equidistant(layers)
    coords = coordinate_systems.CoordinateSystem(horizontal, vertical)
    specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
    self.coords, self.specs = coords, specs
    nondim = specs.nondimensionalize
    self.reference_temperature = np.full(
        (layers,), nondim(_REFERENCE_TEMPERATURE_K * units.degK), np.float32)
    self.nodal_orography = np.zeros(horizontal.nodal_shape, np.float32)
    modal_orography = primitive_equations.truncated_modal_orography(
        self.nodal_orography, coords)
    dycore = primitive_equations.PrimitiveEquations(
        self.reference_temperature, modal_orography, coords, specs)
    self.forcing = held_suarez.HeldSuarezForcing(
        coords=coords, physics_specs=specs,
        reference_temperature=self.reference_temperature)
    dt = nondim(dt_minutes * units.minute)
    step = time_integration.imex_rk_sil3(
        time_integration.compose_equations([dycore, self.forcing]), dt)
    tau = nondim(_FILTER_TAU_HOURS * units.hour)
    step = time_integration.step_with_filters(step, [
        time_integration.exponential_step_filter(
            horizontal, dt, tau=tau, order=_FILTER_ORDER, cutoff=_FILTER_CUTOFF)])
    steps_per_sample = int(round(60 * sample_hours / dt_minutes))
    samples_per_day = 24 // sample_hours
    self.samples_per_day = samples_per_day

    # Dimensional factors (nondimensional value * factor = SI value).
    velocity = specs.dimensionalize(1.0, units.m / units.s).m
    kelvin = specs.dimensionalize(1.0, units.degK).m
    geopotential = specs.dimensionalize(1.0, units.m ** 2 / units.s ** 2).m
    pascal = specs.dimensionalize(1.0, units.pascal).m
    self.gravity = float(specs.dimensionalize(specs.g, units.m / units.s ** 2).m)
    self.gas_constant = float(specs.dimensionalize(
        specs.R, units.J / units.kilogram / units.degK).m)
    self.p0 = nondim(_SURFACE_PRESSURE_PA * units.pascal)
    pressure_levels = vertical_interpolation.PressureCoordinates(
        np.array([nondim(lv * units.hPa) for lv in levels]))
    lat_weights = np.asarray(self.grid.latitude_weights, np.float32) / 2  # sums to 1

    # Linear interpolation in log(pressure), i.e. in log(sigma) for one column;
    # linear extrapolation beyond the outermost sigma levels.
    def log_interp(x, xp, fp):
      return vertical_interpolation.linear_interp_with_linear_extrap(
          jnp.log(x), jnp.log(xp), fp)
    interpolate_fn = vertical_interpolation.vectorize_vertical_interpolation(log_interp)

    def winds(state):
      return spherical_harmonic.vor_div_to_uv_nodal(
          horizontal, state.vorticity, state.divergence)

    def diagnose(state):
      """Modal sigma state -> dict of SI float32 nodal fields on pressure levels."""
      u, v = winds(state)
      temperature = (self.reference_temperature[:, None, None]
                     + horizontal.to_nodal(state.temperature_variation))
      surface_pressure = jnp.exp(horizontal.to_nodal(state.log_surface_pressure))
      phi = primitive_equations.get_geopotential_on_sigma(
          temperature, nodal_orography=self.nodal_orography, sigma=vertical,
          gravity_acceleration=specs.g, ideal_gas_constant=specs.R)
      on_pressure = vertical_interpolation.interp_sigma_to_pressure(
          {'u': u, 'v': v, 't': temperature, 'z': phi}, pressure_levels,
          vertical, surface_pressure, interpolate_fn)
      f32 = lambda x, c: (x * c).astype(jnp.float32)
      return {
          'geopotential': f32(on_pressure['z'], geopotential),
          'temperature': f32(on_pressure['t'], kelvin),
          'u_component_of_wind': f32(on_pressure['u'], velocity),
          'v_component_of_wind': f32(on_pressure['v'], velocity),
          'surface_pressure': f32(surface_pressure[0], pascal),
      }

    def sigma_eke(state):
      """Mass-weighted global-mean eddy kinetic energy (m^2/s^2) on sigma levels."""
      u, v = winds(state)
      ke = 0.5 * ((u - u.mean(-2, keepdims=True)) ** 2
                  + (v - v.mean(-2, keepdims=True)) ** 2) * velocity ** 2
      return jnp.mean(ke.mean(-2) @ lat_weights)  # equidistant sigma: mean = mass weighting

    day = time_integration.repeated(step, steps_per_sample * samples_per_day)
    trajectory = time_integration.trajectory_from_step(
        step, samples_per_day, steps_per_sample, start_with_input=True,
        post_process_fn=diagnose)
    self.spinup_day = jax.jit(lambda s: (lambda s1: (s1, sigma_eke(s1)))(day(s)))
    self.sample_day = jax.jit(jax.vmap(trajectory))
    self.diagnose = jax.jit(diagnose)
    self.sigma_eke = jax.jit(sigma_eke)
    self._State = primitive_equations.State  # pylint: disable=invalid-name
    self._jnp = jnp
    self._perturbation_lmax = min(_PERTURBATION_LMAX, truncation)
    self._kelvin = nondim(1.0 * units.degK)

  def initial_state(self, kind: str, rng: np.random.Generator, kelvin: float):
    """A resting atmosphere (modal State) plus a random temperature perturbation."""
    jnp = self._jnp
    h = self.coords.horizontal
    layers = self.coords.vertical.layers
    surface = np.full((1,) + h.nodal_shape, self.p0, np.float32)
    if kind == 'equilibrium':
      temperature = np.asarray(self.forcing.equilibrium_temperature(surface), np.float32)
    else:
      temperature = np.broadcast_to(self.reference_temperature[:, None, None],
                                    (layers,) + h.nodal_shape)
    zeros = jnp.zeros((layers,) + h.modal_shape, jnp.float32)
    state = self._State(
        vorticity=zeros, divergence=zeros,
        temperature_variation=h.to_modal(
            jnp.asarray(temperature - self.reference_temperature[:, None, None])),
        log_surface_pressure=h.to_modal(jnp.log(jnp.asarray(surface))))
    return self.perturb(state, rng, kelvin)

  def perturb(self, state, rng: np.random.Generator, kelvin: float):
    """Adds a random large-scale temperature perturbation of nodal RMS `kelvin`.

    White noise on every sigma level, kept at total wavenumbers
    1.._PERTURBATION_LMAX (no global-mean change), rescaled to the RMS.
    """
    if kelvin <= 0:
      return state
    h = self.coords.horizontal
    noise = rng.standard_normal(state.temperature_variation.shape[:1] + h.nodal_shape)
    modal = np.asarray(h.to_modal(self._jnp.asarray(noise, self._jnp.float32)))
    m, l = np.meshgrid(*h.modal_axes, indexing='ij')
    modal = modal * ((l >= 1) & (l <= self._perturbation_lmax) & (abs(m) <= l))
    rms = float(np.sqrt(np.mean(np.asarray(h.to_nodal(modal)) ** 2)))
    modal = modal * (kelvin * self._kelvin / max(rms, 1e-30))
    return dataclasses.replace(
        state, temperature_variation=state.temperature_variation + modal.astype(np.float32))


@functools.lru_cache(maxsize=4)
def _model(grid, truncation, layers, dt_minutes, levels, sample_hours) -> _Model:
  return _Model(grid, truncation, layers, dt_minutes, levels, sample_hours)


def _check_finite(tree, where: str):
  import jax  # pylint: disable=g-import-not-at-top
  for leaf in jax.tree.leaves(tree):
    if not np.all(np.isfinite(np.asarray(leaf))):
      raise FloatingPointError(
          f'the Held-Suarez simulation produced NaN/Inf {where}; use a smaller '
          'dt_minutes')


# ----------------------------------------------------------------------------
# Public functions.


def _integrate(cfg: Config, model: _Model, progress: bool, keep_states: bool = False):
  """Runs spin-up, branches and sampling of a resolved `cfg` (the steps of `simulate`).

  Args:
    keep_states: also keep the modal model state (all trajectories, a pytree
      of (trajectories, ...) arrays) at the start of every sampled day, i.e.
      at the first sample of that day.

  Returns:
    (per-day output chunks, spin-up EKE per day, spin-up seconds, total
     seconds, kept states (a list, one per sampled day; empty without
     keep_states)).
  """
  import jax  # pylint: disable=g-import-not-at-top
  n = cfg.trajectories
  total = cfg.spinup_days + n * (cfg.branch_days + cfg.days)
  bar = tqdm.tqdm(total=total, unit='day', disable=not progress, dynamic_ncols=True,
                  desc=f'Held-Suarez T{cfg.truncation} spin-up')
  t0 = time_lib.perf_counter()

  # 1. Spin-up of one trajectory.
  state = model.initial_state(cfg.initial_state, np.random.default_rng([cfg.seed, 0]),
                              0.1 * cfg.perturbation_kelvin)
  eke = []
  for day in range(cfg.spinup_days):
    state, e = model.spinup_day(state)
    eke.append(float(e))
    if not np.isfinite(eke[-1]):
      raise FloatingPointError(f'the Held-Suarez spin-up blew up on day {day + 1}; '
                               'use a smaller dt_minutes')
    bar.update(1)
    bar.set_postfix(eke=f'{eke[-1]:.1f}')
  t_spinup = time_lib.perf_counter() - t0

  # 2. Branches: perturbed copies run side by side.
  states = [model.perturb(state, np.random.default_rng([cfg.seed, k + 1]),
                          cfg.perturbation_kelvin) for k in range(n)]
  batch = jax.tree.map(lambda *xs: np.stack(xs), *states)
  bar.set_description(f'Held-Suarez T{cfg.truncation} branches')
  for _ in range(cfg.branch_days):
    batch, _ = model.sample_day(batch)
    # JAX dispatches asynchronously: without waiting, the bar raced through the
    # branch days and then froze for minutes at the first sampled day.
    jax.block_until_ready(batch)
    bar.update(n)
  _check_finite(batch, 'while branching')

  # 3. Sampling.
  bar.set_description(f'Held-Suarez T{cfg.truncation} sampling')
  chunks, kept = [], []
  for _ in range(cfg.days):
    if keep_states:
      kept.append(jax.device_get(batch))
    batch, out = model.sample_day(batch)
    out = jax.device_get(out)
    _check_finite(out, 'while sampling')
    chunks.append(out)
    bar.update(n)
  bar.close()
  elapsed = time_lib.perf_counter() - t0
  return chunks, eke, t_spinup, elapsed, kept


def simulate(*, progress: bool = True, **config: Any) -> xr.Dataset:
  """Simulates the Held-Suarez atmosphere and returns it as a WB2-format Dataset.

  Args:
    progress: show a tqdm progress bar over simulated days (with an ETA).
    **config: fields of `Config` (grid, truncation, layers, dt_minutes,
      spinup_days, branch_days, days, trajectories, levels, seed,
      initial_state, perturbation_kelvin, sample_hours, start_year); defaults
      are the embedded dataset's: T21 on gaussian:64x32, 20 sigma layers, 30 min
      steps, 100 spin-up days, 4 trajectories of 30 branch days and 45 sampled
      days (720 samples) every 6 hours on 250/500/850 hPa.

  Returns:
    Dataset with, for T = trajectories * days * 24 / sample_hours times, P
    levels and the grid's (nlon, nlat):
      geopotential, temperature, u_component_of_wind, v_component_of_wind:
        float32 (T, P, nlon, nlat), in m**2 s**-2, K, m s**-1, m s**-1;
      surface_pressure: float32 (T, nlon, nlat) in Pa;
      geopotential_at_surface, land_sea_mask: float32 (nlon, nlat), zeros;
    coords time (datetime64, trajectory k starting on January 1st of
    start_year + k * years_per_trajectory), level (hPa, int, ascending),
    longitude (degrees, 0..360 ascending), latitude (degrees, ascending),
    trajectory (int32, (T,)); attrs recording the configuration, its hash
    (`config_hash`), the spin-up eddy kinetic energy per day, and versions.

  Raises:
    ValueError: for a bad configuration.
    FloatingPointError: if the simulation blows up.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import dinosaur  # pylint: disable=g-import-not-at-top
  cfg = Config(**config).resolved()
  model = _model(cfg.grid, cfg.truncation, cfg.layers, cfg.dt_minutes, cfg.levels,
                 cfg.sample_hours)
  n = cfg.trajectories
  chunks, eke, t_spinup, elapsed, _ = _integrate(cfg, model, progress)

  names = list(chunks[0])
  data = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in names}  # (n, T1, ...)
  per_traj = data['temperature'].shape[1]
  data = {k: v.reshape((n * per_traj,) + v.shape[2:]) for k, v in data.items()}
  step = np.timedelta64(cfg.sample_hours, 'h')
  times = np.concatenate([
      np.datetime64(f'{cfg.start_year + k * cfg.years_per_trajectory:04d}-01-01T00', 'h')
      + step * np.arange(per_traj) for k in range(n)]).astype('datetime64[ns]')
  grid = model.grid
  coords = {
      'time': ('time', times, {'long_name': 'time'}),
      'level': ('level', np.array(cfg.levels, np.int64),
                {'units': 'hPa', 'long_name': 'pressure level'}),
      'longitude': ('longitude', grid.longitudes.astype(np.float64),
                    {'units': 'degrees_east', 'long_name': 'longitude'}),
      'latitude': ('latitude', grid.latitudes.astype(np.float64),
                   {'units': 'degrees_north', 'long_name': 'latitude'}),
      'trajectory': ('time', np.repeat(np.arange(n, dtype=np.int32), per_traj),
                     {'units': '1', 'long_name': 'independent trajectory index'}),
  }
  variables = {}
  for name in PRESSURE_LEVEL_VARIABLES:
    variables[name] = (('time', 'level', 'longitude', 'latitude'), data[name])
  variables['surface_pressure'] = (('time', 'longitude', 'latitude'),
                                   data['surface_pressure'])
  zeros = np.zeros(grid.shape, np.float32)
  variables['geopotential_at_surface'] = (('longitude', 'latitude'), zeros)
  variables['land_sea_mask'] = (('longitude', 'latitude'), zeros.copy())
  ds = xr.Dataset({k: xr.Variable(d, v, {'units': UNITS[k], 'long_name': LONG_NAMES[k]})
                   for k, (d, v) in variables.items()},
                  coords={k: xr.Variable(*v) for k, v in coords.items()})
  resolved = json.loads(cfg.to_json())
  ds.attrs.update({
      'title': 'Held-Suarez (1994) atmosphere simulated with dinosaur',
      'source': 'sphere_plugin.data.held_suarez',
      'grid': cfg.grid,
      'truncation': f'T{cfg.truncation}',
      'sigma_layers': cfg.layers,
      'dt_minutes': cfg.dt_minutes,
      'spinup_days': cfg.spinup_days,
      'branch_days': cfg.branch_days,
      'days_per_trajectory': cfg.days,
      'trajectories': n,
      'seed': cfg.seed,
      'initial_state': cfg.initial_state,
      'perturbation_kelvin': cfg.perturbation_kelvin,
      'sample_hours': cfg.sample_hours,
      'years_per_trajectory': cfg.years_per_trajectory,
      'spectral_filter': (f'dinosaur exponential_step_filter tau={_FILTER_TAU_HOURS} h, '
                          f'order={_FILTER_ORDER}, cutoff={_FILTER_CUTOFF}'),
      'vertical_interpolation': ('dinosaur interp_sigma_to_pressure, linear in '
                                 'log(pressure); geopotential integrated '
                                 'hydrostatically on sigma levels first'),
      'gravity_acceleration': model.gravity,
      'ideal_gas_constant': model.gas_constant,
      'spinup_eddy_kinetic_energy': [round(e, 4) for e in eke],
      'spinup_eddy_kinetic_energy_description': (
          'mass-weighted global-mean eddy kinetic energy (m**2 s**-2) at the end '
          'of each spin-up day'),
      'config_json': json.dumps(resolved, sort_keys=True),
      'config_hash': cfg.hash(),
      'format_version': FORMAT_VERSION,
      'dinosaur_version': dinosaur.__version__,
      'jax_version': jax.__version__,
      'simulation_seconds': round(elapsed, 2),
      'spinup_seconds': round(t_spinup, 2),
  })
  return ds


def eddy_kinetic_energy(data, v=None, *, grid=None):
  """Global-mean eddy kinetic energy: 0.5 * (u'^2 + v'^2), ' = deviation from the zonal mean.

  The area mean uses the grid's quadrature weights (exact Gaussian weights on
  Gaussian grids). In a spun-up Held-Suarez atmosphere it fluctuates around a
  steady level; during spin-up it first grows as the baroclinic eddies form.

  Args:
    data: a Dataset with `u_component_of_wind` and `v_component_of_wind`
      (lat-lon dims found by name, grid detected with
      `sphere_plugin.grids.from_dataset`), or the eastward wind u as an array
      (..., nlon, nlat) in our axis convention (latitude ascending).
    v: the northward wind (..., nlon, nlat) when `data` is an array.
    grid: the grid of array input (a Grid or its text); default: the Gaussian
      grid of that shape.

  Returns:
    For a Dataset, a DataArray in m**2 s**-2 over the remaining dims (e.g.
    (time, level); take `.mean('level')` for one series). For arrays, a numpy
    array of shape (...).
  """
  if isinstance(data, xr.Dataset):
    lon, lat = grids_lib.spatial_dims(data)
    g = grids_lib.from_dataset(data)
    weights = xr.DataArray(g.latitude_weights / g.latitude_weights.sum(), dims=(lat,),
                           coords={lat: np.sort(data[lat].values)})
    weights = weights.reindex({lat: data[lat].values})
    u, vv = data['u_component_of_wind'], data['v_component_of_wind']
    ke = 0.5 * ((u - u.mean(lon)) ** 2 + (vv - vv.mean(lon)) ** 2)
    out = ke.mean(lon).dot(weights, dim=lat)
    out.attrs = {'units': 'm**2 s**-2', 'long_name': 'global-mean eddy kinetic energy'}
    return out.rename('eddy_kinetic_energy')
  u = np.asarray(data, np.float64)
  if v is None:
    raise ValueError('eddy_kinetic_energy on arrays needs both u and v')
  vv = np.asarray(v, np.float64)
  if u.shape != vv.shape or u.ndim < 2:
    raise ValueError(f'u and v must have the same shape (..., nlon, nlat), got '
                     f'{u.shape} and {vv.shape}')
  g = grids_lib.gaussian(*u.shape[-2:]) if grid is None else grids_lib.parse(grid)
  if tuple(g.shape) != u.shape[-2:]:
    raise ValueError(f'grid {g} has shape {g.shape}, the winds {u.shape[-2:]}')
  w = g.latitude_weights / g.latitude_weights.sum()
  ke = 0.5 * ((u - u.mean(-2, keepdims=True)) ** 2 + (vv - vv.mean(-2, keepdims=True)) ** 2)
  return ke.mean(-2) @ w


def _read_attrs(path: str) -> dict | None:
  """attrs of the zarr store at `path`, or None if it is not a readable zarr group."""
  import zarr  # pylint: disable=g-import-not-at-top
  try:
    return dict(zarr.open_group(path, mode='r').attrs)
  except Exception:  # pylint: disable=broad-except
    return None


def _describe_mismatch(old_json: str | None, new_json: str) -> str:
  new = json.loads(new_json)
  try:
    old = json.loads(old_json) if old_json else {}
  except ValueError:
    old = {}
  diffs = [f'{k}: {old.get(k)!r} there, {new[k]!r} asked'
           for k in sorted(new) if old.get(k) != new[k]]
  return '; '.join(diffs) if diffs else 'unknown differences'


def make_dataset(path: str | os.PathLike | None = None, *, overwrite: bool = False,
                 progress: bool = True, **config: Any) -> str:
  """Generates the Held-Suarez dataset as a zarr store, or reuses a cached one.

  The store is cached: if `path` holds a store made with the same configuration
  (compared by the `config_hash` attr), it is returned at once without
  simulating. Otherwise the data are simulated (`simulate`), written as zarr
  (format 2, consolidated) to `<path>.partial-<pid>` and renamed to `path` only
  when complete, so an interrupted run never leaves a store at `path`.

  Args:
    path: output zarr path; default `DEFAULT_PATH` (.cache/data/ under the
      repository root).
    overwrite: replace an existing store (always regenerates).
    progress: show a progress bar.
    **config: fields of `Config` (see `simulate`).

  Returns:
    The path of the store, as a string.

  Raises:
    FileExistsError: `path` exists with another configuration (the message
      lists the differences) or is not a store made here, and not `overwrite`.
  """
  cfg = Config(**config).resolved()
  path = os.fspath(DEFAULT_PATH if path is None else path)
  if os.path.exists(path) and not overwrite:
    attrs = _read_attrs(path)
    if attrs is None or 'config_hash' not in attrs:
      raise FileExistsError(f'{path} exists and is not a dataset made by make_dataset; '
                            'pass overwrite=True (--overwrite) or another path')
    if attrs['config_hash'] == cfg.hash():
      return path
    raise FileExistsError(
        f'{path} holds a dataset with a different configuration '
        f'({_describe_mismatch(attrs.get("config_json"), cfg.to_json())}); pass '
        'overwrite=True (--overwrite) to replace it, or choose another path')
  ds = simulate(progress=progress, **dataclasses.asdict(cfg))
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  nt = ds.sizes['time']
  chunk_t = min(nt, 16)
  encoding = {}
  for name, var in ds.data_vars.items():
    chunks = tuple(chunk_t if d == 'time' else ds.sizes[d] for d in var.dims)
    encoding[name] = {'chunks': chunks}
  encoding['time'] = {'units': f'hours since {cfg.start_year:04d}-01-01', 'dtype': 'int64'}
  with atomic.atomic_path(path) as tmp:
    ds.to_zarr(tmp, mode='w', zarr_format=2, consolidated=True, encoding=encoding)
  return path


def make_dataset_on(grid: str, *, method: str = 'spectral', progress: bool = True) -> str:
  """The embedded dataset regridded to another grid (e.g. 'healpix:16'), cached.

  Makes the embedded dataset first if needed (`make_dataset()`), regrids it
  with `ds.sphere.regrid(grid, method=method)` (winds as spin-1 vectors) and
  writes it next to it as `held_suarez_t21_on_<grid>.zarr`, write-then-rename.
  A cached store is reused when its `source_config_hash`, `regrid_grid` and
  `regrid_method` attrs match.

  Args:
    grid: target grid text.
    method: a `sphere_plugin.regrid` method.
    progress: progress bars (simulation and regridding).

  Returns:
    the store's path.
  """
  source_path = make_dataset(progress=progress)
  target = str(grids_lib.parse(grid))
  source = xr.open_zarr(source_path)
  wanted = {'source_config_hash': source.attrs['config_hash'], 'regrid_grid': target,
            'regrid_method': method}
  path = os.fspath(cache.data_path(
      f'held_suarez_t21_on_{target.replace(":", "_")}.zarr'))
  attrs = _read_attrs(path) if os.path.exists(path) else None
  if attrs is not None and all(attrs.get(k) == v for k, v in wanted.items()):
    return path
  if progress:
    print(f'regridding the embedded dataset to {target} ({method})', flush=True)
  out = source.sphere.regrid(target, method=method)  # ds.sphere: sphere_plugin's accessor
  out.attrs.update(wanted)
  with atomic.atomic_path(path) as tmp:  # chunks of 16 times, like the source
    out.drop_encoding().chunk({'time': 16}).to_zarr(tmp, mode='w', zarr_format=2,
                                                    consolidated=True)
  return path


def open_dataset(path: str | os.PathLike | None = None) -> xr.Dataset:
  """Opens a store written by `make_dataset` (default `DEFAULT_PATH`), lazily."""
  return datasets.open_dataset(DEFAULT_PATH if path is None else path)


def config_from_dataset(ds: xr.Dataset) -> Config:
  """The `Config` a dataset made here was generated with (from its attrs)."""
  d = json.loads(ds.attrs['config_json'])
  d.pop('format_version', None)
  d['levels'] = tuple(d['levels'])
  return Config(**d)


__all__ = ['Config', 'DEFAULT_LEVELS', 'DEFAULT_PATH', 'config_from_dataset', 'make_dataset_on',
           'eddy_kinetic_energy', 'make_dataset', 'open_dataset', 'simulate']

