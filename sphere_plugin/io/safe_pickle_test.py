"""The restricted unpickler: forged pickles are refused without crashing or allocating.

Every forged pickle is loaded in a fresh subprocess: a memory-unsafe loader
would segfault (or be killed for memory) there instead of taking pytest down,
and the test sees the exit status. The pickles are written opcode by opcode
(protocol 2) so each one is exactly the attack, not what `pickle.dumps` makes.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from sphere_plugin.io import safe_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _glob(module: str, name: str) -> bytes:
  return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _bytes(data: bytes) -> bytes:
  return b'B' + struct.pack('<I', len(data)) + data  # BINBYTES


def _str(text: str) -> bytes:
  return b'X' + struct.pack('<I', len(text)) + text.encode()  # BINUNICODE


def _int(n: int) -> bytes:
  return b'J' + struct.pack('<i', n)  # BININT


def _dtype(name: str) -> bytes:
  """numpy.dtype(name, False, True) with the little-endian state NumPy pickles."""
  state = (b'(' + _int(3) + _str('<') + b'NNN' + _int(-1) + _int(-1) + _int(0) + b't')
  return _glob('numpy', 'dtype') + b'(' + _str(name) + b'\x89\x88tR' + state + b'b'


def _array(dtype: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
  """NumPy's own array pickle: _reconstruct(ndarray, (0,), b'b') + BUILD state."""
  shape_ops = b'(' + b''.join(_int(n) for n in shape) + b't'
  return (_glob('numpy.core.multiarray', '_reconstruct') + b'(' + _glob('numpy', 'ndarray')
          + b'(' + _int(0) + b't' + _bytes(b'b') + b'tR'
          + b'(' + _int(1) + shape_ops + dtype + b'\x89' + _bytes(raw) + b'tb')


def _pickle(body: bytes) -> bytes:
  return b'\x80\x02' + body + b'.'


FORGED = {
    # An object array over raw bytes: forged PyObject pointers (segfault on use).
    'object dtype over raw bytes': (_pickle(_array(_dtype('O'), (1,), b'A' * 8)), 'dtype'),
    # numpy.ndarray(shape, dtype, buffer, offset) with a negative offset.
    'negative offset': (_pickle(_glob('numpy', 'ndarray') + b'(' + b'(' + _int(4) + b't'
                                + _dtype('f8') + _bytes(b'\0' * 8) + _int(-64) + b'tR'),
                        'buffer, offset'),
    # bytearray(n): a 34-byte file asking for 8 GiB.
    'bytearray bomb': (_pickle(_glob('builtins', 'bytearray') + b'(' + b'\x8a\x05'
                               + (8 << 30).to_bytes(5, 'little') + b'tR'), 'builtins.bytearray'),
    # A structured dtype with an object field, through the dtype state.
    'structured dtype': (_pickle(_glob('numpy', 'dtype') + b'(' + _str('V16') + b'\x89\x88tR'
                                 + b'(' + _int(3) + _str('|') + b'N' + b'(' + _str('a') + b't'
                                 + b'}' + _int(16) + _int(1) + _int(16) + b'tb'), 'V16'),
    # Shape and byte length disagree: reading past the buffer.
    'short data': (_pickle(_array(_dtype('f8'), (1000,), b'\0' * 8)), 'needs 8000 bytes'),
    # BINBYTES8 declaring 2**40 bytes with 3 present: the C unpickler would allocate first.
    'lying length': (_pickle(b'\x8e' + struct.pack('<Q', 1 << 40) + b'abc'), 'malformed'),
    # numpy.ndarray called directly with strides.
    'strides': (_pickle(_glob('numpy', 'ndarray') + b')R'), 'buffer, offset'),
}


def _amplified() -> bytes:
  """One 8 kB byte string (memoised once) referenced by 2000 arrays."""
  raw = b'\0' * 8000
  arrays = []
  for i in range(2000):
    data = (_bytes(raw) + b'q\x01') if i == 0 else b'h\x01'  # BINPUT 1 / BINGET 1
    arrays.append(_glob('numpy.core.multiarray', '_reconstruct') + b'(' + _glob('numpy', 'ndarray')
                  + b'(' + _int(0) + b't' + _bytes(b'b') + b'tR' + b'(' + _int(1) + b'('
                  + _int(1000) + b't' + _dtype('f8') + b'\x89' + data + b'tb')
  return _pickle(b'(' + b''.join(arrays) + b'l')


# One stored byte string rebuilt 2000 times: 16 MB of arrays from a 200 kB file.
FORGED['memo amplification'] = (_amplified(), 'more memory than the file')


def _load_in_subprocess(tmp_path, data: bytes) -> subprocess.CompletedProcess:
  path = tmp_path / 'forged.pkl'
  path.write_bytes(data)
  code = ('import sys, resource\n'
          'resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n'
          'from sphere_plugin import safe_pickle\n'
          'try:\n'
          f'  obj = safe_pickle.load({str(path)!r})\n'
          'except safe_pickle.UnsafePickleError as e:\n'
          '  print("REFUSED", e); sys.exit(0)\n'
          'print("LOADED", repr(obj)[:200])\n')  # repr touches every element
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                        timeout=120, env={**os.environ, 'PYTHONPATH': ROOT})


@pytest.mark.parametrize('name', sorted(FORGED))
def test_forged_pickles_are_refused_in_a_process_that_survives(tmp_path, name):
  data, why = FORGED[name]
  proc = _load_in_subprocess(tmp_path, data)
  assert proc.returncode == 0, f'loader crashed (exit {proc.returncode}): {proc.stderr[-500:]}'
  assert proc.stdout.startswith('REFUSED'), proc.stdout + proc.stderr[-500:]
  assert why in proc.stdout, proc.stdout


def test_forged_pickles_are_small():
  # The sizes: the attacks need no large file.
  assert len(FORGED['object dtype over raw bytes'][0]) < 300
  assert len(FORGED['bytearray bomb'][0]) < 40


@pytest.mark.parametrize('protocol', [4, 5])  # 2 and 3 pickle bytes and sets through globals: refused
def test_round_trips_numeric_arrays_of_every_kind(protocol):
  tree = {
      'f4': np.arange(6, dtype=np.float32).reshape(2, 3),
      'fortran': np.asfortranarray(np.arange(12.0).reshape(3, 4)),
      'big-endian': np.arange(4, dtype='>i4'),
      'bool': np.array([True, False]),
      'u1': np.arange(3, dtype=np.uint8), 'c16': np.array([1 + 2j]),
      'f2': np.ones((2, 0), np.float16), 'scalar': np.float64(2.5), 'i8': np.int64(-3),
      'dtype': np.dtype('f8'),
      'containers': [(1, 'x'), {'n': None, 'b': b'raw'}, {1, 2}, frozenset({3})],
  }
  out = safe_pickle.load(pickle.dumps(tree, protocol=protocol))
  for key in ('f4', 'fortran', 'big-endian', 'bool', 'u1', 'c16', 'f2'):
    np.testing.assert_array_equal(out[key], tree[key])
    assert out[key].dtype == tree[key].dtype and out[key].shape == tree[key].shape
    assert out[key].flags.writeable
  assert out['fortran'].flags.f_contiguous
  assert out['scalar'] == 2.5 and type(out['scalar']) is np.float64  # pylint: disable=unidiomatic-typecheck
  assert out['i8'] == -3 and out['dtype'] == np.dtype('f8')
  assert out['containers'] == tree['containers']


def test_jax_arrays_and_shared_arrays():
  x = jnp.arange(5.0)
  shared = np.ones(3)
  out = safe_pickle.load(pickle.dumps({'x': x, 'pair': [shared, shared]}))
  assert type(out['x']) is np.ndarray  # pylint: disable=unidiomatic-typecheck
  np.testing.assert_array_equal(out['x'], np.arange(5.0))
  assert out['pair'][0] is out['pair'][1]  # pickle's memo is kept


@pytest.mark.parametrize('obj', [np.array([None, 1], dtype=object), np.array(['ab']),
                                 np.zeros(2, dtype=[('a', 'f4'), ('b', 'O')]),
                                 np.datetime64('2020-01-01'), np.load, getattr])
def test_other_numpy_objects_are_refused(obj):
  with pytest.raises(safe_pickle.UnsafePickleError):
    safe_pickle.load(pickle.dumps(obj))


def test_self_referencing_containers():
  a = [1]
  a.append(a)
  out = safe_pickle.load(pickle.dumps({'a': a, 'arr': np.ones(2)}))
  assert out['a'][1] is out['a']
