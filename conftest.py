"""Test setup shared by all tests: CPU JAX with a persistent compile cache."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

_CACHE = os.path.join(os.path.dirname(__file__), '.cache', 'jax')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
