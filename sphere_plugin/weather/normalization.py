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

