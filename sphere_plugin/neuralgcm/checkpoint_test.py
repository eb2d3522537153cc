"""Tests of the restricted unpickler and the gin-reference checks."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin import neuralgcm as sng
from sphere_plugin.neuralgcm import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_refuses_code_execution(tmp_path):
  marker = tmp_path / 'pwned'
  data = pickle.dumps({'params': {'w': np.ones(3)}, 'x': _Evil(marker)})
  with pytest.raises(sng.UnsafePickleError, match=r'refusing to load (posix|os)\.system'):
    sng.load_pickle(data)
  assert not marker.exists()
  # Other callables that plain pickle would happily import are refused too.
  for obj in (getattr, eval, np.load):
    with pytest.raises(sng.UnsafePickleError):
      sng.load_pickle(pickle.dumps(obj))


def test_round_trips_arrays_and_containers(tmp_path):
  tree = {'a': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': [np.float64(2.5), (1, 'x')],
          'c': {'d': np.array([1 + 2j]), 'e': None, 'f': b'bytes'}}
  path = tmp_path / 'tree.pkl'
  path.write_bytes(pickle.dumps(tree))
  out = sng.load_pickle(path)
  np.testing.assert_array_equal(out['a'], tree['a'])
  assert out['a'].dtype == np.float32
  assert out['b'] == [2.5, (1, 'x')]
  np.testing.assert_array_equal(out['c']['d'], tree['c']['d'])
  assert out['c']['e'] is None and out['c']['f'] == b'bytes'


def test_jax_arrays_come_back_as_numpy():
  x = jnp.arange(5.0)
  out = sng.load_pickle(pickle.dumps({'x': x}))
  assert type(out['x']) is np.ndarray  # pylint: disable=unidiomatic-typecheck
  np.testing.assert_array_equal(out['x'], np.arange(5.0))


def test_loads_the_demo_checkpoint():
  ckpt = sng.load_checkpoint()
  assert set(ckpt) == {'model_config_str', 'aux_ds_dict', 'params'}
  leaves = [v for m in ckpt['params'].values() for v in m.values()]
  assert leaves and all(type(v) is np.ndarray for v in leaves)  # pylint: disable=unidiomatic-typecheck
  # Known entry of the toy model (a learned field on the TL63 128x64 nodes).
  key = [k for k in ckpt['params'] if k.endswith('learned_positional_features')][0]
  assert ckpt['params'][key]['learned_positional_features'].shape == (1, 128, 64)
  assert 'DimensionalLearnedWeatherbenchToPrimitiveEncoder.nodal_mapping_module' in (
      ckpt['model_config_str'])
  # Every configurable named by the shipped config is registered after our import.
  assert sng.unresolved_references(ckpt['model_config_str']) == []


def test_unresolved_references_and_refusal():
  cfg = textwrap.dedent("""
      # a comment naming @Commented is ignored
      A_MACRO = @NotRegisteredThing
      scope/AlsoMissing.x = 1
      NodalMapping.tower_factory = @enc/SphericalCNNTower
      NodalMapping.name = '@NotAReferenceInAString'
  """)
  assert sng.unresolved_references(cfg) == ['AlsoMissing', 'NotRegisteredThing']
  with pytest.raises(ValueError, match='AlsoMissing, NotRegisteredThing'):
    sng.check_config(cfg)
  with pytest.raises(ValueError, match='NoSuchTower'):
    sng.load_checkpoint(extra_bindings=['NodalMapping.tower_factory = @NoSuchTower'])


def test_not_a_checkpoint(tmp_path):
  path = tmp_path / 'x.pkl'
  path.write_bytes(pickle.dumps({'params': {}}))
  with pytest.raises(ValueError, match='not a NeuralGCM checkpoint'):
    sng.load_checkpoint(path)


def test_config_parsed_before_import_is_refused():
  """NeuralGCM parses with skip_unknown=True; importing us afterwards does not fix it."""
  script = textwrap.dedent("""
      import gin
      import neuralgcm.legacy.api
      gin.parse_config(['NodalMapping.tower_factory = @enc/SphericalCNNTower'],
                       skip_unknown=True)      # what NeuralGCM's loader does
      import sphere_plugin.neuralgcm as sng    # too late
      try:
        sng.check_parsed_config()
      except ValueError as e:
        print('REFUSED:', e)
      gin.clear_config()
      gin.parse_config(['NodalMapping.tower_factory = @enc/SphericalCNNTower'],
                       skip_unknown=True)
      sng.check_parsed_config()
      print('OK after re-parsing')
  """)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120, check=True).stdout
  assert 'REFUSED:' in out, out
  assert '@SphericalCNNTower (in NodalMapping.tower_factory)' in out
  assert ckpt_lib.IMPORT_HINT in out
  assert 'OK after re-parsing' in out
