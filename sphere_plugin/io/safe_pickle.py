"""A memory-safe unpickler for array checkpoints (NeuralGCM's are pickles).

`pickle.load` runs whatever the file names. Refusing foreign globals is not
enough: NumPy's own constructors are dangerous too. `numpy.ndarray(shape,
dtype, buffer, offset, strides)` reads outside its buffer with a negative
offset, an object-dtype array over raw bytes dereferences forged PyObject
pointers (a segfault at first use), and `bytearray(n)` allocates n bytes from a
few bytes of file. `load` therefore never hands a pickle a real NumPy
constructor. It accepts:

- arrays as NumPy pickles them (`_reconstruct` + state, protocol 5's
  `_frombuffer`, and old or new JAX's `_reconstruct_array`), rebuilt from
  (dtype, shape, bytes) only: the dtype from a fixed set of numeric kinds
  (bool, signed/unsigned int, float, complex) in either byte order, the byte
  length checked against the shape, never buffers, offsets, strides, object
  or structured dtypes;
- NumPy scalars and dtypes of those kinds;
- everything pickle builds without globals: dicts, lists, tuples, sets,
  strings, bytes, numbers, None, booleans.

The arrays built may take at most as many bytes as the file has (a pickle can
name one stored byte string many times), and the stream's declared lengths are
checked before the C unpickler allocates anything. Everything else raises
`UnsafePickleError`; nothing is executed or allocated beyond that.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
from typing import Any

import numpy as np

# dtype strings NumPy writes for the allowed kinds: b1, i1..i8, u1..u8, f2..f16, c8..c32.
_NUMERIC = re.compile(r'^(b1|[iu][1248]|f(2|4|8|10|12|16)|c(8|16|20|24|32))$')
_BYTE_ORDERS = ('<', '>', '|', '=')
_MAX_NDIM = 64


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for something outside the allowed arrays and containers."""


def _numeric_dtype(name: Any, byteorder: str = '=') -> np.dtype:
  """A NumPy dtype of an allowed numeric kind, or UnsafePickleError."""
  if not isinstance(name, str) or not _NUMERIC.match(name):
    raise UnsafePickleError(f'refusing dtype {name!r}: only bool, integer, float and '
                            'complex arrays are allowed in a checkpoint')
  dtype = np.dtype(name)
  if byteorder in ('<', '>'):
    dtype = dtype.newbyteorder(byteorder)
  return dtype


class _Dtype:
  """Stand-in for `numpy.dtype(name, align, copy)` followed by its pickled state."""

  __slots__ = ('name', 'byteorder')

  def __init__(self, name, align=False, copy=False):
    del align, copy
    _numeric_dtype(name)
    self.name, self.byteorder = name, '='

  def __setstate__(self, state):
    if not isinstance(state, tuple) or len(state) not in (8, 9):
      raise UnsafePickleError(f'refusing a dtype state of {type(state).__name__}')
    _, byteorder, subarray, names, fields = state[:5]
    if subarray is not None or names is not None or fields is not None:
      raise UnsafePickleError('refusing a structured or subarray dtype')
    if byteorder not in _BYTE_ORDERS:
      raise UnsafePickleError(f'refusing dtype byte order {byteorder!r}')
    self.byteorder = byteorder

  def resolve(self) -> np.dtype:
    return _numeric_dtype(self.name, self.byteorder)


def _as_dtype(value) -> np.dtype:
  if isinstance(value, _Dtype):
    return value.resolve()
  raise UnsafePickleError(f'refusing {type(value).__name__} where a dtype belongs')


class _NdarrayClass:
  """What the pickle gets for `numpy.ndarray`: a token for `_reconstruct`, never callable."""

  __slots__ = ()

  def __call__(self, *args, **kwargs):
    raise UnsafePickleError('refusing numpy.ndarray(...) with a buffer, offset or strides: '
                            'arrays are rebuilt only from (dtype, shape, bytes)')


_NDARRAY = _NdarrayClass()


class _Array:
  """Stand-in for `numpy.core.multiarray._reconstruct(ndarray, ...)`; its state builds `value`."""

  __slots__ = ('_unpickler', 'value')

  def __init__(self, unpickler: 'RestrictedUnpickler'):
    self._unpickler, self.value = unpickler, None

  def __setstate__(self, state):
    if not isinstance(state, tuple) or len(state) != 5:
      raise UnsafePickleError('refusing an array state that is not (version, shape, dtype, '
                              'fortran, bytes)')
    _, shape, dtype, fortran, raw = state
    self.value = self._unpickler.array(raw, _as_dtype(dtype), shape, 'F' if fortran else 'C')


class _Global:
  """A stand-in callable handed to the pickle. No `__dict__`, so a BUILD opcode
  on it fails instead of setting attributes on our functions."""

  __slots__ = ('_fn',)

  def __init__(self, fn):
    self._fn = fn

  def __call__(self, *args):
    return self._fn(*args)


def _shape(shape) -> tuple[int, ...]:
  if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
      or not all(type(n) is int and n >= 0 for n in shape)):  # pylint: disable=unidiomatic-typecheck
    raise UnsafePickleError(f'refusing array shape {shape!r}')
  return shape


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler for array checkpoints: numeric arrays, dtypes, scalars, plain containers.

  Args:
    file: a binary file object.
    max_bytes: the most bytes all arrays together may take (`load` passes the
      file's size).
  """

  def __init__(self, file, *, max_bytes: int):
    super().__init__(file)
    self._left = max_bytes
    self._globals = {name: _Global(getattr(self, name))
                     for name in ('_jax_array', '_reconstruct', '_scalar', '_frombuffer')}

  def array(self, raw, dtype: np.dtype, shape, order: str) -> np.ndarray:
    """A new array from exactly prod(shape) * itemsize bytes of `raw`."""
    shape = _shape(shape)
    if not isinstance(raw, (bytes, bytearray)):
      raise UnsafePickleError(f'refusing array data of type {type(raw).__name__}')
    nbytes = math.prod(shape) * dtype.itemsize
    if len(raw) != nbytes:
      raise UnsafePickleError(f'refusing an array of shape {shape} {dtype}: it needs {nbytes} '
                              f'bytes, the pickle holds {len(raw)}')
    self._spend(nbytes)
    return np.frombuffer(raw, dtype).reshape(shape, order=order).copy(order='K')

  def _spend(self, nbytes: int) -> None:
    self._left -= nbytes
    if self._left < 0:
      raise UnsafePickleError('refusing a pickle whose arrays need more memory than the file '
                              'holds (one stored byte string used many times)')

  def _reconstruct(self, subtype, shape, typecode):
    del shape, typecode  # NumPy always writes ((0,), b'b'); the state sets both
    if subtype is not _NDARRAY:
      raise UnsafePickleError('refusing an array of a class other than numpy.ndarray')
    return _Array(self)

  def _frombuffer(self, buf, dtype, shape, order):
    """Protocol 5's in-band array: (bytes, dtype, shape, 'C' | 'F')."""
    if order not in ('C', 'F'):
      raise UnsafePickleError(f'refusing array order {order!r}')
    return self.array(buf, _as_dtype(dtype), shape, order)

  def _scalar(self, dtype, raw):
    return self.array(raw, _as_dtype(dtype), (), 'C')[()]

  def _jax_array(self, fun, args, arr_state, aval_state):
    """Stand-in for `jax._src.array._reconstruct_array`: the NumPy array (aval dropped)."""
    del aval_state  # the old abstract value (e.g. named_shape) is not needed
    if fun is not self._globals['_reconstruct'] or not isinstance(args, tuple) or len(args) != 3:
      raise UnsafePickleError('refusing a JAX array built by an unexpected function')
    stub = self._reconstruct(*args)
    stub.__setstate__(arr_state)
    return stub.value

  def find_class(self, module: str, name: str):
    """The stand-in for the allowed global `module.name`; UnsafePickleError for any other."""
    multiarray = module in ('numpy.core.multiarray', 'numpy._core.multiarray')
    numeric = module in ('numpy.core.numeric', 'numpy._core.numeric')
    if (module, name) == ('jax._src.array', '_reconstruct_array'):
      return self._globals['_jax_array']
    if (module, name) == ('numpy', 'ndarray'):
      return _NDARRAY
    if (module, name) == ('numpy', 'dtype'):
      return _Dtype
    if multiarray and name == '_reconstruct':
      return self._globals['_reconstruct']
    if multiarray and name == 'scalar':
      return self._globals['_scalar']
    if numeric and name == '_frombuffer':
      return self._globals['_frombuffer']
    raise UnsafePickleError(
        f'refusing to load {module}.{name} from a pickle: only NumPy/JAX array '
        'reconstruction and plain containers are allowed in a checkpoint')


def _finish(obj, memo: dict[int, Any]):
  """Replaces the stand-ins left in containers by real arrays and dtypes."""
  key = id(obj)
  if key in memo:
    return memo[key]
  if isinstance(obj, _Array):
    if obj.value is None:
      raise UnsafePickleError('refusing an array without its state')
    return obj.value
  if isinstance(obj, _Dtype):
    return obj.resolve()
  if callable(obj) or isinstance(obj, _NdarrayClass):
    raise UnsafePickleError(f'refusing a pickle that returns {type(obj).__name__}')
  if isinstance(obj, list):
    memo[key] = obj
    obj[:] = [_finish(v, memo) for v in obj]
  elif isinstance(obj, dict):
    memo[key] = obj
    items = [(_finish(k, memo), _finish(v, memo)) for k, v in obj.items()]
    obj.clear()
    obj.update(items)
  elif isinstance(obj, (tuple, set, frozenset)):
    memo[key] = obj  # a cycle through a tuple/set keeps the original (no stand-ins in cycles)
    memo[key] = type(obj)(_finish(v, memo) for v in obj)
  return memo.get(key, obj)


def _check_stream(data: bytes) -> None:
  """Walks the opcodes: declared lengths must fit the data (no early allocation)."""
  try:
    for _ in pickletools.genops(data):
      pass
  except (ValueError, EOFError) as e:
    raise UnsafePickleError(f'refusing a malformed pickle: {e}') from None


def load(source: str | os.PathLike | bytes) -> Any:
  """Loads a pickle through `RestrictedUnpickler`.

  Args:
    source: a path or the pickle's bytes.

  Returns:
    The unpickled object; arrays (NumPy or JAX) come back as NumPy arrays.

  Raises:
    UnsafePickleError: the pickle refers to anything else, or is malformed.
  """
  if isinstance(source, (bytes, bytearray)):
    data = bytes(source)
  else:
    with open(source, 'rb') as f:
      data = f.read()
  _check_stream(data)
  try:
    obj = RestrictedUnpickler(io.BytesIO(data), max_bytes=len(data)).load()
    return _finish(obj, {})
  except RecursionError:
    raise UnsafePickleError('refusing a pickle nested too deeply') from None
  except UnsafePickleError:
    raise
  except (TypeError, ValueError, AttributeError, IndexError, KeyError, EOFError,
          pickle.UnpicklingError) as e:
    raise UnsafePickleError(f'refusing a malformed pickle: {type(e).__name__}: {e}') from None
