"""Normalisation statistics of weather channels (`Normalizer`) and their JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

import numpy as np




NORMALIZER_FILENAME = 'normalization.json'
_NORMALIZER_FORMAT = 'sphere_plugin.data.weather.Normalizer'

# ----------------------------------------------------------------------------
# Normalisation statistics.


def _as_stat(x, n: int, what: str) -> np.ndarray:
  a = np.asarray(x, np.float32).reshape(-1)
  if a.shape != (n,):
    raise ValueError(f'{what} has {a.size} values for {n} channels')
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{what} has non-finite values: {a}')
  return a


@dataclasses.dataclass
class Normalizer:
  """Per-channel statistics, from the training period only.

  Attributes:
    channels: state channel names, C of them.
    mean: (C,) float32 area-weighted mean; 0 for vector components (a mean wind
      is not rotation invariant).
    std: (C,) float32 standard deviation; a (u, v) pair at one level shares ONE
      value sqrt(mean(u**2 + v**2) / 2), so normalisation commutes with
      rotations. A constant channel gets 1.
    diff_std: (C,) float32 standard deviation of the changes over one time
      step (pairs share sqrt(mean(du**2 + dv**2) / 2), no mean removed).
    forcing_channels: forcing channel names, F of them.
    forcing_mean, forcing_std: (F,) float32; a constant forcing gets std 1.
    attrs: JSON-able provenance (dataset path, periods, time step, ...).
  """
  channels: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray
  diff_std: np.ndarray
  forcing_channels: tuple[str, ...]
  forcing_mean: np.ndarray
  forcing_std: np.ndarray
  attrs: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.channels = tuple(str(c) for c in self.channels)
    self.forcing_channels = tuple(str(c) for c in self.forcing_channels)
    c, f = len(self.channels), len(self.forcing_channels)
    self.mean = _as_stat(self.mean, c, 'mean')
    self.std = _as_stat(self.std, c, 'std')
    self.diff_std = _as_stat(self.diff_std, c, 'diff_std')
    self.forcing_mean = _as_stat(self.forcing_mean, f, 'forcing_mean')
    self.forcing_std = _as_stat(self.forcing_std, f, 'forcing_std')
    for name in ('std', 'diff_std', 'forcing_std'):
      if np.any(getattr(self, name) <= 0):
        raise ValueError(f'{name} must be positive, got {getattr(self, name)}')

  @staticmethod
  def _check(x, n: int, what: str):
    if x.shape[-1:] != (n,):
      raise ValueError(f'{what} must have {n} channels on the last axis, got shape '
                       f'{tuple(x.shape)}')

  def normalize(self, state):
    """(..., C) physical state -> normalised (numpy or jax arrays)."""
    self._check(state, len(self.channels), 'state')
    return (state - self.mean) / self.std

  def denormalize(self, state):
    """(..., C) normalised state -> physical."""
    self._check(state, len(self.channels), 'state')
    return state * self.std + self.mean

  def normalize_diff(self, diff):
    """(..., C) physical one-step change -> in units of `diff_std`."""
    self._check(diff, len(self.channels), 'diff')
    return diff / self.diff_std

  def denormalize_diff(self, diff):
    """(..., C) change in units of `diff_std` -> physical change."""
    self._check(diff, len(self.channels), 'diff')
    return diff * self.diff_std

  @property
  def diff_scale(self) -> np.ndarray:
    """(C,) diff_std / std: a one-step change of 1 diff_std in normalised units."""
    return (self.diff_std / self.std).astype(np.float32)

  def normalize_forcings(self, forcings):
    """(..., F) physical forcings -> normalised."""
    self._check(forcings, len(self.forcing_channels), 'forcings')
    return (forcings - self.forcing_mean) / self.forcing_std

  def to_json(self) -> str:
    """The statistics as a JSON string (float32 values round-trip exactly)."""
    lists = lambda a: [float(v) for v in a]
    return json.dumps({
        'format': _NORMALIZER_FORMAT, 'version': 1,
        'channels': list(self.channels), 'mean': lists(self.mean),
        'std': lists(self.std), 'diff_std': lists(self.diff_std),
        'forcing_channels': list(self.forcing_channels),
        'forcing_mean': lists(self.forcing_mean), 'forcing_std': lists(self.forcing_std),
        'attrs': self.attrs}, indent=1)

  @classmethod
  def from_json(cls, text: str) -> Normalizer:
    """Inverse of `to_json`."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get('format') != _NORMALIZER_FORMAT:
      raise ValueError('not a sphere_plugin weather Normalizer file (no '
                       f'"format": "{_NORMALIZER_FORMAT}")')
    return cls(d['channels'], d['mean'], d['std'], d['diff_std'], d['forcing_channels'],
               d['forcing_mean'], d['forcing_std'], d.get('attrs', {}))

  def save(self, path: str | os.PathLike) -> None:
    """Writes the JSON file atomically (e.g. workdir/normalization.json)."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f'{path}.partial-{os.getpid()}-{threading.get_ident()}'
    try:
      with open(tmp, 'w', encoding='utf-8') as f:
        f.write(self.to_json())
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  @classmethod
  def load(cls, path: str | os.PathLike) -> Normalizer:
    """Reads a file written by `save`."""
    with open(os.fspath(path), encoding='utf-8') as f:
      return cls.from_json(f.read())


# ----------------------------------------------------------------------------
# The statistics behind a Normalizer, as mergeable partial results: one per chunk
# of times, merged in any order (the in-process loop and the Beam reduction,
# `sphere_plugin.weather.beam_statistics`, use the same ones).


@dataclasses.dataclass(frozen=True)
class Moments:
  """Area-weighted mean and spread of C channels over some samples (times).

  Merging follows Chan, Golub & LeVeque's pairwise update, so partial results
  combine in any order without the cancellation of raw sums of squares.

  Attributes:
    count: samples summarised.
    mean: (C,) float64 mean over samples of each field's area-weighted mean.
    m2: (C,) float64 sum over samples of the area-weighted mean of
      (x - mean)**2.
  """
  count: int
  mean: np.ndarray
  m2: np.ndarray

  @classmethod
  def empty(cls, channels: int) -> Moments:
    return cls(0, np.zeros(channels), np.zeros(channels))

  @classmethod
  def of(cls, x, weights) -> Moments:
    """Moments of samples x (N, *grid.shape, C) with area weights (*grid.shape, 1)
    summing to 1; computed in float64."""
    x = np.asarray(x, np.float64)
    if x.shape[0] == 0:
      return cls.empty(x.shape[-1])
    axes = tuple(range(x.ndim - 1))
    mean = np.sum(x * weights, axis=axes) / x.shape[0]
    dev = x - mean
    return cls(int(x.shape[0]), mean, np.sum(dev * dev * weights, axis=axes))

  def merge(self, other: Moments) -> Moments:
    """The moments of both sets of samples."""
    if not other.count:
      return self
    if not self.count:
      return other
    n = self.count + other.count
    delta = other.mean - self.mean
    return Moments(n, self.mean + delta * (other.count / n),
                   self.m2 + other.m2 + delta * delta * (self.count * other.count / n))

  @property
  def variance(self) -> np.ndarray:
    """(C,) area-weighted variance over all samples."""
    return np.maximum(self.m2 / max(self.count, 1), 0)

  @property
  def second_moment(self) -> np.ndarray:
    """(C,) E[x**2]."""
    return self.variance + self.mean**2


@dataclasses.dataclass(frozen=True)
class StatisticsSums:
  """Everything a Normalizer is computed from, for some chunk(s) of times.

  Attributes:
    state: Moments of the state channels (C).
    diff: Moments of the one-step changes (C), over the time-step pairs.
    forcing: Moments of the forcing channels (F).
  """
  state: Moments
  diff: Moments
  forcing: Moments

  def merge(self, other: StatisticsSums) -> StatisticsSums:
    return StatisticsSums(self.state.merge(other.state), self.diff.merge(other.diff),
                          self.forcing.merge(other.forcing))


def normalizer_from_sums(sums: StatisticsSums, channels, forcing_channels, vector_pairs,
                         attrs: dict | None = None) -> Normalizer:
  """The Normalizer of merged statistics (the rules of the `Normalizer` docstring).

  Args:
    sums: the merged StatisticsSums of the whole period.
    channels, forcing_channels: names, C and F of them.
    vector_pairs: ((u_index, v_index), ...) state channels sharing one std.
    attrs: provenance; 'times' and 'time_step_pairs' are added.
  """
  mean = sums.state.mean.copy()
  std = np.sqrt(sums.state.variance)
  diff_std = np.sqrt(sums.diff.variance)
  second, dsecond = sums.state.second_moment, sums.diff.second_moment
  for u, v in vector_pairs:
    mean[[u, v]] = 0
    std[[u, v]] = np.sqrt((second[u] + second[v]) / 2)
    diff_std[[u, v]] = np.sqrt((dsecond[u] + dsecond[v]) / 2)
  fmean, fstd = sums.forcing.mean, np.sqrt(sums.forcing.variance)

  def positive(s, m):
    # A constant channel (std 0 up to rounding) gets 1: nothing to scale.
    return np.where(s > 1e-6 * np.maximum(np.abs(m), 1e-30), s, 1.0)

  return Normalizer(
      channels=channels, mean=mean, std=positive(std, mean),
      diff_std=positive(diff_std, std), forcing_channels=forcing_channels,
      forcing_mean=fmean, forcing_std=positive(fstd, fmean),
      attrs={**(attrs or {}), 'times': int(sums.state.count),
             'time_step_pairs': int(sums.diff.count)})

