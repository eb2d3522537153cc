"""The cache directory: a checkout's .cache, an env override, never site-packages."""

from __future__ import annotations

import pathlib

from sphere_plugin.io import cache


def test_checkout_uses_its_dot_cache(monkeypatch):
  monkeypatch.delenv(cache.ENV_VAR, raising=False)
  root = pathlib.Path(__file__).resolve().parents[2]
  assert cache.cache_dir() == root / '.cache'


def test_environment_variable_wins(monkeypatch, tmp_path):
  monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
  assert cache.data_path('x.zarr') == tmp_path / 'data' / 'x.zarr'


def test_installed_package_uses_the_user_cache(monkeypatch, tmp_path):
  # An installed wheel: the package sits in site-packages with no pyproject.toml beside it.
  site = tmp_path / 'site-packages'
  (site / 'sphere_plugin').mkdir(parents=True)
  monkeypatch.setattr(cache, '_CHECKOUT', site)
  monkeypatch.delenv(cache.ENV_VAR, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert cache.cache_dir() == tmp_path / 'xdg' / 'sphere_plugin'
