"""Benchmark of sphere_plugin's spherical harmonic transforms against ducc0 and s2fft.

Run from the repository root:

  .venv/bin/python tools/benchmark.py                 # sizes 64,128,256; batches 1,64
  .venv/bin/python tools/benchmark.py --quick         # sizes 32,64; batches 1,8 (~1 min)
  .venv/bin/python tools/benchmark.py --sizes=128 --batches=1 --spins=0 \
      --libraries=sphere_plugin,ducc0 --output=/tmp/bench.md
  .venv/bin/python tools/benchmark.py --suites=reference \
      --reference_path=/path/to/spherical-cnn --repeats=2

Suites (--suites, default transforms,blocks):
  transforms  the SHT table below, against ducc0 and s2fft.
  blocks      one SpinSphericalResidualBlock per --block_grids grid, with a
              planar ResNet block as a yardstick.
  reference   ours against the reference implementation of "Scaling Spherical
              CNNs", https://github.com/google-research/spherical-cnn, in the
              same process: the batched forward and inverse transforms on the
              reference's N x N grid with both poles (ours on
              equiangular_with_poles:NxN, the same points) at 64x64 batch 8 and
              128x128 batch 64, spins (0, 1), 32 channels; and one residual
              block (64x64, lmax 31, batch 8, 32 channels, spins (0, 1)),
              forward and forward+backward, with parameter counts. The
              reference is not a dependency: pass --reference_path=DIR (or set
              $SPHERE_PLUGIN_REFERENCE_PATH), DIR holding its spherical_cnn/
              package, with `spherical` and `einshape` installed; otherwise the
              suite logs why and is skipped (exit status 0).

What is timed. For each band-limit L (lmax = L - 1), spin s, batch size B and
direction (forward = analysis, map -> coefficients; inverse = synthesis,
coefficients -> map), in float32, on the Gauss-Legendre grid with L rings:

* sphere_plugin: `sht.forward` / `sht.inverse` on `gaussian:(2L)x(L)` under
  `jax.jit`, with `jax.block_until_ready`, after one warm-up call (so compile
  time and table building are excluded). Spin 0 maps are real (the fast real
  path), spin != 0 maps complex64; coefficients complex64 (B, L, 2L-1).
* ducc0: `ducc0.sht.analysis_2d` (forward: the exact GL quadrature inverse of
  synthesis, which is what our forward computes) and `ducc0.sht.synthesis_2d`
  (inverse) with geometry='GL', ntheta=L, nphi=2L, nthreads=--ducc0_threads
  (default 2). Inputs and outputs are float32 maps and complex64 alm (ducc0
  accepts single precision). Spin 0 is one real map; spin s > 0 is the usual
  2-component real map (the real and imaginary part of the spin field) with 2
  alm sets (gradient/curl). ducc0 transforms one (or one 2-component) map per
  call, so a batch is a Python loop over the maps writing into preallocated
  output arrays (`map=` / `alm=`).
* s2fft: `s2fft.precompute_transforms.spherical.forward` / `inverse` with
  method='jax', sampling='gl', and the precomputed Wigner-d kernels of
  `s2fft.precompute_transforms.construct.spin_spherical_kernel_jax` (built once
  per (L, spin, direction), in float64 under `jax.enable_x64` -- s2fft's GL
  weights do not converge in float32 -- then cast to float32; not timed), passed
  as a jit argument. reality=True for spin 0 (real maps), complex64 otherwise.
  Note that s2fft's GL grid has L rings x (2L-1) longitudes (ours and ducc0's
  have 2L). A batch is `jax.vmap` of the single-map transform under one
  `jax.jit`; batch 1 is the plain single-map call.

Any library's case whose warm-up call plus --repeats + 1 runs would take more
than --max_case_seconds (60 s; one probe run measures it, made only when the
warm-up call, which includes compilation, is slow enough to make that possible)
prints 'skipped (too slow)'. (A prediction from the batch-1 time overestimates
badly: batched calls are matrix-matrix products and run 10-40x faster per map.)

Every library gets its native layout (ours (B, 2L, L) longitude-major, ducc0
(2, L, 2L) ring-major, s2fft (L, 2L-1)); no transposes are timed. Libraries are
interleaved per configuration (one run of each library in turn, --repeats
times) and the minimum over the repeats is reported, in milliseconds per call
(per whole batch, not per map). A library that fails to import prints 'not
installed' and its columns are left out.

Columns of the table:
  L           band-limit (lmax = L - 1); grid gaussian:(2L)x(L)
  spin        spin weight s
  batch       number of maps per call
  dir         forward (analysis) or inverse (synthesis)
  <lib> ms    minimum wall time of one call over --repeats runs, in ms
  <lib>/ours  that library's time divided by sphere_plugin's: > 1 means
              sphere_plugin is faster, < 1 slower

After the table the tool prints the jit compile time of our forward at the
largest L (trace + lower, and XLA compile, with JAX's caches cleared and the
host tables already built) and the time to build the float64 transform tables
(`sphere_plugin.sht.tables.get_tables`) from an empty cache, per (L, spin).
Progress goes to stderr; the report to stdout (and to --output if given, as
markdown).
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
import traceback
from typing import Callable

from absl import app
from absl import flags

import numpy as np

_SIZES = flags.DEFINE_string('sizes', '64,128,256', 'Comma-separated band-limits L (lmax = L - 1).')
_BATCHES = flags.DEFINE_string('batches', '1,64', 'Comma-separated batch sizes.')
_SPINS = flags.DEFINE_string('spins', '0,1', 'Comma-separated spin weights (>= 0).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs per library and case; the minimum is reported.')
_LIBRARIES = flags.DEFINE_string('libraries', 'sphere_plugin,ducc0,s2fft',
                                 'Comma-separated libraries among sphere_plugin, ducc0, s2fft.')
_OUTPUT = flags.DEFINE_string('output', None, 'Optional path to write the report (markdown) to.')
_QUICK = flags.DEFINE_bool('quick', False, 'Small run: sizes 32,64 and batches 1,8 (overrides '
                           '--sizes and --batches).')
_DUCC0_THREADS = flags.DEFINE_integer('ducc0_threads', 2, 'nthreads for ducc0.')
_MAX_CASE_SECONDS = flags.DEFINE_float(
    'max_case_seconds', 60.0, 'Skip a (library, case) whose warm-up plus repeats + 1 runs '
    'would take longer than this (measured on one probe run when the warm-up is slow).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random inputs.')
_SUITES = flags.DEFINE_string('suites', 'transforms,blocks',
                              'Comma-separated parts to run: transforms, blocks, reference.')
_REFERENCE_PATH = flags.DEFINE_string(
    'reference_path', os.environ.get('SPHERE_PLUGIN_REFERENCE_PATH'),
    'Directory holding the spherical_cnn/ package of google-research/spherical-cnn, for '
    '--suites=reference (default: $SPHERE_PLUGIN_REFERENCE_PATH). Without it the suite is '
    'skipped.')
_RETAIN_FREED_MEMORY = flags.DEFINE_bool(
    'retain_freed_memory', True,
    'Keep freed memory in the process (sphere_plugin.allocator), as the tools do; '
    'applies to every library in the run. --noretain_freed_memory measures glibc defaults.')
_BLOCK_GRIDS = flags.DEFINE_string(
    'block_grids', 'equiangular_with_poles:64x64,gaussian:128x64,healpix:32',
    'Grids of the residual-block benchmark (one block per grid, same grid in and out).')

OURS = 'sphere_plugin'
KNOWN_LIBRARIES = ('sphere_plugin', 'ducc0', 's2fft')
DIRECTIONS = ('forward', 'inverse')
SUITES = ('transforms', 'blocks', 'reference')


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


class Skip(Exception):
  """A case a library does not run; the message goes into the table."""


def _complex_normal(rng, shape):
  return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _shape(batch, shape):
  return shape if batch == 1 else (batch,) + shape


# ----------------------------------------------------------------------------
# Library adapters: `make` returns a zero-argument callable that runs one call
# to completion (results ready), with its inputs already in place.


class SpherePlugin:
  name = 'sphere_plugin'

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    from sphere_plugin import grids, sht  # pylint: disable=g-import-not-at-top
    self.jax, self.grids, self.sht = jax, grids, sht

  def version(self):
    import sphere_plugin  # pylint: disable=g-import-not-at-top
    return getattr(sphere_plugin, '__version__', 'dev')

  def grid(self, L):
    return self.grids.parse(f'gaussian:{2 * L}x{L}')

  def make(self, L, spin, batch, direction, rng):
    jax, sht = self.jax, self.sht
    grid, lmax = self.grid(L), L - 1
    if direction == 'forward':
      shape = _shape(batch, grid.shape)
      x = (rng.standard_normal(shape).astype(np.float32) if spin == 0
           else _complex_normal(rng, shape))
      fn = jax.jit(lambda v: sht.forward(v, grid, lmax=lmax, spin=spin))
    else:
      x = _complex_normal(rng, _shape(batch, (L, 2 * L - 1)))
      fn = jax.jit(lambda v: sht.inverse(v, grid, spin=spin))
    x = jax.device_put(x)
    return lambda: jax.block_until_ready(fn(x))


class Ducc0:
  name = 'ducc0'

  def __init__(self):
    import ducc0  # pylint: disable=g-import-not-at-top
    self.ducc0 = ducc0

  def version(self):
    return self.ducc0.__version__

  def make(self, L, spin, batch, direction, rng):
    sht = self.ducc0.sht
    lmax, nthreads = L - 1, _DUCC0_THREADS.value
    ncomp = 1 if spin == 0 else 2
    nalm = (lmax + 1) * (lmax + 2) // 2
    kw = dict(spin=spin, lmax=lmax, geometry='GL', nthreads=nthreads)
    if direction == 'forward':
      maps = rng.standard_normal((batch, ncomp, L, 2 * L)).astype(np.float32)
      out = np.zeros((batch, ncomp, nalm), np.complex64)

      def run():
        for i in range(batch):
          sht.analysis_2d(map=maps[i], alm=out[i], **kw)
        return out
    else:
      alm = _complex_normal(rng, (batch, ncomp, nalm))
      alm[..., :lmax + 1].imag = 0  # m = 0 coefficients of real maps are real
      out = np.zeros((batch, ncomp, L, 2 * L), np.float32)

      def run():
        for i in range(batch):
          sht.synthesis_2d(alm=alm[i], map=out[i], ntheta=L, nphi=2 * L, **kw)
        return out
    return run


class S2fft:
  name = 's2fft'

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    import s2fft  # pylint: disable=g-import-not-at-top,unused-import
    from s2fft.precompute_transforms import construct  # pylint: disable=g-import-not-at-top
    from s2fft.precompute_transforms import spherical  # pylint: disable=g-import-not-at-top
    self.jax, self.construct, self.spherical = jax, construct, spherical
    self._kernels = {}

  def version(self):
    try:
      from importlib import metadata  # pylint: disable=g-import-not-at-top
      return metadata.version('s2fft')
    except Exception:  # pylint: disable=broad-except
      return '?'

  def kernel(self, L, spin, forward):
    key = (L, spin, forward)
    if key not in self._kernels:
      # Keep the kernels of one L only (they are O(L^3)).
      self._kernels = {k: v for k, v in self._kernels.items() if k[0] == L}
      t0 = time.perf_counter()
      with self.jax.enable_x64(True):
        k = self.construct.spin_spherical_kernel_jax(
            L, spin, reality=(spin == 0), sampling='gl', forward=forward)
        k = np.asarray(k, dtype=np.float32)
      self._kernels[key] = self.jax.device_put(k)
      log(f'    s2fft kernel L={L} spin={spin} {"forward" if forward else "inverse"} '
          f'{k.shape} built in {time.perf_counter() - t0:.1f} s')
    return self._kernels[key]

  def make(self, L, spin, batch, direction, rng):
    jax, spherical = self.jax, self.spherical
    reality = spin == 0
    forward = direction == 'forward'
    kernel = self.kernel(L, spin, forward)
    if forward:
      shape = _shape(batch, (L, 2 * L - 1))
      x = (rng.standard_normal(shape).astype(np.float32) if reality
           else _complex_normal(rng, shape))
      one = lambda f, k: spherical.forward(f, L, spin, kernel=k, sampling='gl',
                                           reality=reality, method='jax')
    else:
      x = _complex_normal(rng, _shape(batch, (L, 2 * L - 1)))
      one = lambda f, k: spherical.inverse(f, L, spin, kernel=k, sampling='gl',
                                           reality=reality, method='jax')
    fn = jax.jit(one if batch == 1 else jax.vmap(one, in_axes=(0, None)))
    x = jax.device_put(x)
    return lambda: jax.block_until_ready(fn(x, kernel))


ADAPTERS = {'sphere_plugin': SpherePlugin, 'ducc0': Ducc0, 's2fft': S2fft}


# ----------------------------------------------------------------------------


def _ints(text):
  return [int(t) for t in str(text).split(',') if t.strip()]


def _fmt_ms(v):
  if isinstance(v, str):
    return v
  if v >= 100:
    return f'{v:.0f}'
  if v >= 10:
    return f'{v:.1f}'
  if v >= 1:
    return f'{v:.2f}'
  return f'{v:.3f}'


def _markdown_table(header, rows):
  out = ['| ' + ' | '.join(header) + ' |',
         '|' + '|'.join('---' for _ in header) + '|']
  out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(out)


def run_benchmark(libs, sizes, spins, batches, repeats, max_case_seconds, seed):
  """Returns rows of (L, spin, batch, direction, {lib: ms or str}).

  A (library, case) is skipped when its warm-up call plus repeats + 1 runs
  (measured on one probe run, made only when the warm-up call alone suggests
  the case may exceed the budget) would take more than max_case_seconds.
  """
  rng = np.random.default_rng(seed)
  rows = []
  cases = [(L, s, b, d) for L in sizes for s in spins for b in batches for d in DIRECTIONS]
  for n, (L, spin, batch, direction) in enumerate(cases, 1):
    log(f'[{n}/{len(cases)}] L={L} spin={spin} batch={batch} {direction}')
    calls, result = {}, {}
    for name, lib in libs.items():
      try:
        call = lib.make(L, spin, batch, direction, rng)
        t0 = time.perf_counter()
        call()  # warm-up: compiles, builds and uploads tables
        t_warm = time.perf_counter() - t0
        log(f'    {name}: warm-up {t_warm:.2f} s')
        if t_warm * repeats > max_case_seconds:
          # Possibly too slow: one probe run (compile is out of the way now).
          t0 = time.perf_counter()
          call()
          t_probe = time.perf_counter() - t0
          if t_warm + t_probe * (repeats + 1) > max_case_seconds:
            raise Skip(f'skipped (too slow): warm-up {t_warm:.2f} s, {t_probe:.3f} s per call')
        calls[name] = call
      except Skip as e:
        result[name] = 'skipped (too slow)'
        log(f'    {name}: {e}')
      except Exception as e:  # pylint: disable=broad-except
        result[name] = f'error: {type(e).__name__}'
        log(f'    {name}: error\n{traceback.format_exc()}')
    best = {name: float('inf') for name in calls}
    for _ in range(repeats):
      for name, call in calls.items():  # interleaved: one run of each library in turn
        t0 = time.perf_counter()
        call()
        best[name] = min(best[name], time.perf_counter() - t0)
    for name in calls:
      result[name] = best[name] * 1e3
    log('    ' + ', '.join(f'{k} {_fmt_ms(v)}' + (' ms' if isinstance(v, float) else '')
                          for k, v in result.items()))
    rows.append((L, spin, batch, direction, result))
    del calls
    gc.collect()
  return rows


def compile_times(ours, L, spins, batches, rng):
  """(spin, batch, trace+lower s, compile s) of our jitted forward at L."""
  jax, sht = ours.jax, ours.sht
  grid = ours.grid(L)
  out = []
  for spin in spins:
    for batch in batches:
      shape = _shape(batch, grid.shape)
      x = (rng.standard_normal(shape).astype(np.float32) if spin == 0
           else _complex_normal(rng, shape))
      x = jax.device_put(x)
      jax.clear_caches()
      fn = jax.jit(lambda v, s=spin: sht.forward(v, grid, lmax=L - 1, spin=s))
      t0 = time.perf_counter()
      lowered = fn.lower(x)
      t1 = time.perf_counter()
      lowered.compile()
      t2 = time.perf_counter()
      out.append((spin, batch, t1 - t0, t2 - t1))
      log(f'    compile L={L} spin={spin} batch={batch}: trace+lower {t1 - t0:.2f} s, '
          f'compile {t2 - t1:.2f} s')
  return out


def table_build_times(sizes, spins):
  """(L, spin, seconds) of get_tables on an empty cache."""
  from sphere_plugin import grids  # pylint: disable=g-import-not-at-top
  from sphere_plugin.sht import tables  # pylint: disable=g-import-not-at-top
  out = []
  for L in sizes:
    grid = grids.parse(f'gaussian:{2 * L}x{L}')
    for spin in spins:
      tables._build.cache_clear()  # pylint: disable=protected-access
      t0 = time.perf_counter()
      tables.get_tables(grid, L - 1, spin, spin == 0)
      dt = time.perf_counter() - t0
      out.append((L, spin, dt))
      log(f'    tables L={L} spin={spin}: {dt:.3f} s')
  return out


# ----------------------------------------------------------------------------
# Residual block benchmark.

BLOCK_BATCH, BLOCK_CHANNELS, BLOCK_SPINS = 8, 32, (0, 1)


def _timed(fn, args, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best * 1e3


def _xla_memory(fn, args):
  """Bytes of XLA buffers (arguments + outputs + temporaries) of a jitted fn."""
  m = fn.lower(*args).compile().memory_analysis()
  if m is None:
    return float('nan')
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)


def _train_step_fns(model, variables, x):
  """Jitted forward (train-mode BN) and forward+backward (grads of params and input)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def loss(params, x):
    out, _ = model.apply({**variables, 'params': params}, x, train=True,
                         mutable=['batch_stats'])
    return jnp.mean(jnp.abs(out) ** 2)

  return jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1)))


def _time_block(model, inp, repeats):
  """(real parameters, fwd ms, fwd+bwd ms, fwd+bwd XLA memory MiB) of a flax block.

  Real degrees of freedom: ours stores complex weights as (..., 2) float32,
  the reference as complex64 (counted twice).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  variables = model.init(jax.random.key(0), inp, train=True)
  fwd, grad = _train_step_fns(model, variables, inp)
  args = (variables['params'], inp)
  n_params = sum(p.size * (2 if jnp.iscomplexobj(p) else 1)
                 for p in jax.tree.leaves(variables['params']))
  return (n_params, _timed(fwd, args, repeats), _timed(grad, args, repeats),
          _xla_memory(grad, args) / 2 ** 20)


class _PlanarBlock:
  """A planar ResNet block (3x3 conv, BN, relu, 3x3 conv, BN, skip) for scale."""

  def __init__(self, channels):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top

    class Block(nn.Module):
      @nn.compact
      def __call__(self, x, train=True):
        h = nn.Conv(channels, (3, 3))(x)
        h = nn.relu(nn.BatchNorm(use_running_average=not train)(h))
        h = nn.Conv(channels, (3, 3))(h)
        h = nn.BatchNorm(use_running_average=not train)(h)
        return nn.relu(h + x)

    self.module = Block()


def block_benchmark(grid_texts, repeats, seed):
  """Rows (grid, lmax, model, params, fwd ms, fwd+bwd ms, memory MiB)."""
  import jax  # pylint: disable=g-import-not-at-top
  from sphere_plugin import grids as grids_lib  # pylint: disable=g-import-not-at-top
  from sphere_plugin import nn as snn  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  rows = []
  for text in grid_texts:
    grid = grids_lib.parse(text)
    lmax = snn.default_lmax(grid)
    shape = (BLOCK_BATCH,) + grid.shape + (len(BLOCK_SPINS), BLOCK_CHANNELS)
    x = jax.device_put(_complex_normal(rng, shape))
    cases = [('SpinSphericalResidualBlock',
              snn.SpinSphericalResidualBlock(BLOCK_CHANNELS, spins_in=BLOCK_SPINS,
                                             spins_out=BLOCK_SPINS, input_grid=grid), x)]
    if isinstance(grid, grids_lib.LatLonGrid):
      # Same numbers per point (2 spins x 32 complex channels = 128 reals).
      xp = jax.device_put(rng.standard_normal(
          (BLOCK_BATCH,) + grid.shape + (4 * BLOCK_CHANNELS,)).astype(np.float32))
      cases.append(('planar 3x3 ResNet block (flax)', _PlanarBlock(4 * BLOCK_CHANNELS).module,
                    xp))
    for name, model, inp in cases:
      log(f'  block {name} on {grid}')
      rows.append((str(grid), lmax if 'Spin' in name else '-', name,
                   *_time_block(model, inp, repeats)))
  return rows


# ----------------------------------------------------------------------------
# Reference suite: google-research/spherical-cnn ("Scaling Spherical CNNs").

REFERENCE_URL = 'https://github.com/google-research/spherical-cnn'
# (n, batch) of the transform cases (grids n x n).
REFERENCE_TRANSFORM_CASES = ((64, 8), (128, 64))
REFERENCE_BLOCK_N = 64


class ReferenceUnavailable(Exception):
  """The reference cannot be imported; the message says why."""


class Reference:
  """google-research/spherical-cnn, imported from a source directory.

  `path` is the directory holding the `spherical_cnn/` package (a clone of
  REFERENCE_URL, or a copy of its `__init__.py`, `sphere_utils.py`,
  `spin_spherical_harmonics.py` and `layers.py`, with an optional SNAPSHOT
  file whose `commit ...` line names the commit copied). It needs `spherical`
  (moble, for Wigner d) and `einshape` besides jax and flax; none of them is a
  dependency of ours.

  Layouts (the reference's own): spatial layer tensors are (batch, n, n, spin,
  channel) on the n x n Huffenberger-Wandelt grid (colatitude pi*k/(n-1) from
  the north pole, both poles included; longitude 2*pi*j/n); spectral ones are
  (batch, ell_max+1, 2*ell_max+1, spin, channel) with ell_max = n//2 - 1 and
  (l, m) at [l, ell_max+m]. Its transform constants (Wigner Deltas, quadrature
  weights, forward constants) live in the flax "constants" collection of a
  `SpinSphericalFourierTransformer`, built once per model as its models do.
  """

  name = 'reference'

  def __init__(self, path, spins=BLOCK_SPINS, channels=BLOCK_CHANNELS):
    if not path:
      raise ReferenceUnavailable('no --reference_path given and $SPHERE_PLUGIN_REFERENCE_PATH '
                                 'is not set')
    path = os.path.abspath(os.path.expanduser(path))
    package = os.path.join(path, 'spherical_cnn')
    if not os.path.isfile(os.path.join(package, 'layers.py')):
      raise ReferenceUnavailable(f'{path} has no spherical_cnn/layers.py')
    sys.path.insert(0, path)
    try:
      import spherical_cnn  # pylint: disable=g-import-not-at-top
      from spherical_cnn import layers  # pylint: disable=g-import-not-at-top
      from spherical_cnn import spin_spherical_harmonics  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ReferenceUnavailable(f'importing spherical_cnn from {path} failed: {e} (it needs '
                                 '`pip install spherical einshape`)') from e
    finally:
      sys.path.remove(path)
    found = os.path.dirname(os.path.abspath(layers.__file__))
    if found != package:
      raise ReferenceUnavailable(f'spherical_cnn was imported from {found}, not from {path}')
    import jax  # pylint: disable=g-import-not-at-top
    self.jax, self.path, self.package = jax, path, spherical_cnn
    self.layers, self.ssh = layers, spin_spherical_harmonics
    self.spins, self.channels = tuple(spins), channels

  def version(self):
    """`__version__` plus the commit: from git, or from a SNAPSHOT file beside the package."""
    import subprocess  # pylint: disable=g-import-not-at-top
    text = f'spherical_cnn {getattr(self.package, "__version__", "?")}'
    commit = None
    if os.path.exists(os.path.join(self.path, '.git')):
      try:
        commit = subprocess.run(['git', '-C', self.path, 'rev-parse', 'HEAD'], check=True,
                                capture_output=True, text=True).stdout.strip()
      except (OSError, subprocess.CalledProcessError):
        pass
    snapshot = os.path.join(self.path, 'SNAPSHOT')
    if commit is None and os.path.isfile(snapshot):
      with open(snapshot) as f:
        commit = ' '.join(line.strip() for line in f if line.startswith('commit')) or None
    return f'{text}, {commit or "commit unknown"}, from {self.path}'

  def transformer(self, n):
    """A SpinSphericalFourierTransformer for one n x n resolution and self.spins."""
    return self.ssh.SpinSphericalFourierTransformer(resolutions=(n,), spins=self.spins)

  def transform_fn(self, n, direction):
    """Jitted fn(constants, x) of the batched forward or inverse transform.

    forward: x complex64 (batch, n, n, S, C) -> (batch, n//2, n-1, S, C);
    inverse: the converse. Batched with jax.vmap, as the reference's layers do.
    """
    jax, spins = self.jax, self.spins
    transformer = self.transformer(n)
    if direction == 'forward':
      one = lambda m, x: m.swsft_forward_spins_channels(x, spins)
    else:
      one = lambda m, x: m.swsft_backward_spins_channels(x, spins)

    def fn(constants, x):
      return transformer.apply(constants, x, method=lambda m, x: jax.vmap(
          lambda v: one(m, v))(x))

    constants = transformer.init(jax.random.key(0), method=lambda m: m.validate(n, spins[0]))
    return jax.jit(fn), constants

  def make(self, n, batch, direction, rng):
    """A zero-argument callable running one transform of a random batch."""
    jax = self.jax
    fn, constants = self.transform_fn(n, direction)
    shape = ((batch, n, n) if direction == 'forward' else (batch, n // 2, n - 1))
    x = jax.device_put(_complex_normal(rng, shape + (len(self.spins), self.channels)))
    return lambda: jax.block_until_ready(fn(constants, x))

  def residual_block(self, n):
    """The reference's SpinSphericalResidualBlock on n x n, as its models build it.

    The transformer is a submodule made in setup (as in SpinSphericalClassifier)
    and shared with the block; no pooling; full filters (num_filter_params None).
    Call: (batch, n, n, S, C) complex64, train -> the same shape.
    """
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    layers, ssh, spins, channels = self.layers, self.ssh, self.spins, self.channels

    class ReferenceResidualBlock(nn.Module):

      def setup(self):
        self.transformer = ssh.SpinSphericalFourierTransformer(resolutions=(n,), spins=spins)
        self.block = layers.SpinSphericalResidualBlock(
            num_channels=channels, spins_in=spins, spins_out=spins, downsampling_factor=1,
            spectral_pooling=False, axis_name=None, transformer=self.transformer)

      def __call__(self, x, train=True):
        return self.block(x, train=train)

    return ReferenceResidualBlock()


class _OursLayerTransforms:
  """Our layer-level transforms (`sphere_plugin.nn.spectral`) on equiangular_with_poles:nxn.

  That grid is the reference's n x n grid with both poles, stored our way:
  spatial (batch, nlon=n, nlat=n, S, C) with latitude ascending (south to
  north); spectral (batch, lmax+1, 2*lmax+1, S, C), lmax = n//2 - 1, the
  reference's layout.
  """

  def __init__(self, spins=BLOCK_SPINS, channels=BLOCK_CHANNELS):
    import jax  # pylint: disable=g-import-not-at-top
    from sphere_plugin import grids  # pylint: disable=g-import-not-at-top
    from sphere_plugin.nn import spectral  # pylint: disable=g-import-not-at-top
    self.jax, self.grids, self.spectral = jax, grids, spectral
    self.spins, self.channels = tuple(spins), channels

  def grid(self, n):
    return self.grids.equiangular_with_poles(n, n)

  def transform_fn(self, n, direction):
    """Jitted fn(x): forward (batch, n, n, S, C) -> (batch, n//2, n-1, S, C), or inverse."""
    grid, spins, spectral = self.grid(n), self.spins, self.spectral
    lmax = n // 2 - 1
    if lmax != spectral.default_lmax(grid):
      raise ValueError(f'{grid}: default lmax {spectral.default_lmax(grid)} != {lmax}')
    if direction == 'forward':
      return self.jax.jit(lambda x: spectral.to_spectral(x, grid, lmax, spins))
    return self.jax.jit(lambda a: spectral.to_spatial(a, grid, spins))

  def make(self, n, batch, direction, rng):
    jax = self.jax
    fn = self.transform_fn(n, direction)
    shape = ((batch, n, n) if direction == 'forward' else (batch, n // 2, n - 1))
    x = jax.device_put(_complex_normal(rng, shape + (len(self.spins), self.channels)))
    return lambda: jax.block_until_ready(fn(x))


def reference_agreement(ref, ours, n=16):
  """Max |a_ours - a_ref| / max |a| of both forward transforms of one band-limited field.

  The field is the reference's inverse transform of random coefficients (zero
  where l < |s| or |m| > l), batch 1, on n x n; it is moved to our layout
  (latitude ascending, longitude first) for ours. A small value shows that the
  two sides compute the same coefficients, in the same (l, m) layout and
  conventions.
  """
  rng = np.random.default_rng(0)
  lmax, spins = n // 2 - 1, ref.spins
  a = _complex_normal(rng, (1, lmax + 1, 2 * lmax + 1, len(spins), ref.channels))
  l = np.arange(lmax + 1)[:, None, None]
  m = np.arange(-lmax, lmax + 1)[None, :, None]
  s = np.abs(np.asarray(spins))[None, None, :]
  a = a * ((np.abs(m) <= l) & (l >= s))[None, ..., None]
  inv, constants = ref.transform_fn(n, 'inverse')
  x_ref = inv(constants, a)
  fwd, constants = ref.transform_fn(n, 'forward')
  a_ref = np.asarray(fwd(constants, x_ref))
  x_ours = np.swapaxes(np.asarray(x_ref)[:, ::-1], 1, 2)  # (b, colat, lon) -> (b, lon, lat)
  a_ours = np.asarray(ours.transform_fn(n, 'forward')(x_ours))
  scale = np.abs(a).max()
  return float(np.abs(a_ours - a_ref).max() / scale), float(np.abs(a_ref - a).max() / scale)


def reference_benchmark(ref, repeats, seed):
  """Times ours against the reference in one process.

  Returns (transform rows, block rows, agreement): transform rows are
  (direction, n, batch, ours ms, reference ms); block rows are (model, real
  parameters (a complex one counts twice), fwd ms, fwd+bwd ms, XLA memory MiB
  of fwd+bwd), ours first; agreement is `reference_agreement`'s pair.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from sphere_plugin import nn as snn  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  ours = _OursLayerTransforms(ref.spins, ref.channels)
  log('  reference: forward-transform agreement on a band-limited field (n=16)')
  agreement = reference_agreement(ref, ours)
  trows = []
  for n, batch in REFERENCE_TRANSFORM_CASES:
    for direction in DIRECTIONS:
      log(f'  reference: {direction} transform n={n} batch={batch}')
      times = []
      for side in (ours, ref):
        call = side.make(n, batch, direction, rng)
        times.append(_timed(call, (), repeats))
        del call
        gc.collect()
      trows.append((direction, n, batch, *times))

  n = REFERENCE_BLOCK_N
  grid = ours.grid(n)
  x = _complex_normal(rng, (BLOCK_BATCH, n, n, len(ref.spins), ref.channels))
  cases = [
      ('sphere_plugin SpinSphericalResidualBlock',
       snn.SpinSphericalResidualBlock(ref.channels, spins_in=ref.spins, spins_out=ref.spins,
                                      input_grid=grid),
       jax.device_put(np.swapaxes(x[:, ::-1], 1, 2))),  # same field in our layout
      ('reference SpinSphericalResidualBlock', ref.residual_block(n), jax.device_put(x)),
  ]
  brows = []
  for name, model, inp in cases:
    log(f'  reference: block {name}')
    brows.append((name, *_time_block(model, inp, repeats)))
  return trows, brows, agreement


def reference_report(ref, trows, brows, agreement, repeats):
  """Markdown lines of the reference suite."""
  spins, channels = ref.spins, ref.channels
  n = REFERENCE_BLOCK_N
  lines = ['', '## Reference: google-research/spherical-cnn ("Scaling Spherical CNNs")', '',
           f'Reference: {ref.version()}.',
           f'Grid: ours equiangular_with_poles:NxN (nlon x nlat, latitude ascending) = the '
           f'reference\'s N x N grid (colatitude pi*k/(N-1), both poles), lmax = N/2 - 1 on '
           f'both; spins {spins}, {channels} channels, complex64, each side in its native '
           'layout (no transposes timed). Transforms: ours sphere_plugin.nn.spectral.'
           'to_spectral / to_spatial, reference SpinSphericalFourierTransformer.'
           'swsft_forward/backward_spins_channels under jax.vmap over the batch with its '
           '"constants" collection passed in; both jitted, after a warm-up call, minimum of '
           f'{repeats} runs, ms per call (whole batch). ours/reference < 1 means sphere_plugin '
           'is faster.',
           f'Check: on a band-limited random field at 16x16 our forward coefficients differ '
           f'from the reference\'s by {agreement[0]:.1e} of the largest coefficient (reference '
           f'round trip: {agreement[1]:.1e}).', '']
  grid = lambda size: f'{size}x{size} (ours equiangular_with_poles:{size}x{size})'
  rows = []
  for direction, tn, batch, t_ours, t_ref in trows:
    rows.append([f'{direction} transform', grid(tn), batch, _fmt_ms(t_ours), _fmt_ms(t_ref),
                 f'{t_ours / t_ref:.2f}'])
  block_ours, block_ref = brows
  for label, k in (('residual block fwd', 2), ('residual block fwd+bwd', 3)):
    rows.append([label, grid(n), BLOCK_BATCH, _fmt_ms(block_ours[k]), _fmt_ms(block_ref[k]),
                 f'{block_ours[k] / block_ref[k]:.2f}'])
  lines.append(_markdown_table(['case', 'grid', 'batch', 'ours ms', 'reference ms',
                                'ours/reference'], rows))
  lines += ['', f'Residual blocks ({n}x{n}, lmax {n // 2 - 1}, batch {BLOCK_BATCH}, spins '
            f'{spins}, {channels} -> {channels} channels, full filters, batch norm in train mode; '
            'fwd = loss of the output, fwd+bwd = gradients with respect to parameters and input; '
            'params = real parameters, a complex one counting twice). The reference '
            'block always adds a Dense + spectral batch norm projection on the skip (its '
            '`residual.shape != self.num_channels` test compares a shape with an int); ours '
            'projects only when spins or channels change.', '',
            _markdown_table(['model', 'real params', 'fwd+bwd XLA memory MiB'],
                            [[name, f'{p:,}', f'{mem:.0f}'] for name, p, _, _, mem in brows])]
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  t_start = time.perf_counter()
  sizes = [32, 64] if _QUICK.value else _ints(_SIZES.value)
  batches = [1, 8] if _QUICK.value else _ints(_BATCHES.value)
  spins = _ints(_SPINS.value)
  repeats = max(1, _REPEATS.value)
  if any(s < 0 for s in spins):
    raise app.UsageError('spins must be >= 0 (ducc0 takes |s|)')
  requested = [t.strip() for t in _LIBRARIES.value.split(',') if t.strip()]
  for name in requested:
    if name not in KNOWN_LIBRARIES:
      raise app.UsageError(f'unknown library {name!r}; known: {", ".join(KNOWN_LIBRARIES)}')

  notes = []
  if _RETAIN_FREED_MEMORY.value:
    from sphere_plugin.io import allocator  # pylint: disable=g-import-not-at-top
    applied = allocator.retain_freed_memory()
    notes.append('freed memory retained (allocator.retain_freed_memory)' if applied
                 else 'allocator settings unavailable (glibc defaults)')
  else:
    notes.append('glibc allocator defaults')
  libs = {}
  for name in requested:
    try:
      libs[name] = ADAPTERS[name]()
      notes.append(f'{name} {libs[name].version()}')
    except ImportError as e:
      log(f'{name}: not installed ({e})')
      notes.append(f'{name}: not installed')
  import jax  # pylint: disable=g-import-not-at-top
  env = (f'{platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, '
         f'jax {jax.__version__} ({jax.default_backend()}, {len(jax.devices())} device(s)), '
         f'numpy {np.__version__}; ' + ', '.join(notes))
  log(f'environment: {env}')
  log(f'sizes {sizes}, spins {spins}, batches {batches}, repeats {repeats}')

  suites = [t.strip() for t in _SUITES.value.split(',') if t.strip()]
  for name in suites:
    if name not in SUITES:
      raise app.UsageError(f'unknown suite {name!r}; known: {", ".join(SUITES)}')
  rows = []
  if 'transforms' in suites:
    rows = run_benchmark(libs, sizes, spins, batches, repeats, _MAX_CASE_SECONDS.value,
                         _SEED.value)

  names = list(libs)
  others = [n for n in names if n != OURS]
  header = ['L', 'spin', 'batch', 'dir'] + [f'{n} ms' for n in names]
  if OURS in libs:
    header += [f'{n}/ours' for n in others]
  table_rows = []
  for L, spin, batch, direction, res in rows:
    row = [L, spin, batch, direction] + [_fmt_ms(res.get(n, '-')) for n in names]
    if OURS in libs:
      ours = res.get(OURS)
      for n in others:
        theirs = res.get(n)
        ok = isinstance(ours, float) and isinstance(theirs, float)
        row.append(f'{theirs / ours:.2f}' if ok else '-')
    table_rows.append(row)

  extra = []
  if OURS in libs and 'transforms' in suites:
    log('compile time of our forward at the largest L')
    rng = np.random.default_rng(_SEED.value + 1)
    ct = compile_times(libs[OURS], max(sizes), spins, batches, rng)
    extra.append(f'\nJit compile time of sphere_plugin forward at L={max(sizes)} '
                 '(jax caches cleared, host tables prebuilt):\n')
    extra.append(_markdown_table(
        ['spin', 'batch', 'trace+lower s', 'XLA compile s', 'total s'],
        [[s, b, f'{a:.2f}', f'{c:.2f}', f'{a + c:.2f}'] for s, b, a, c in ct]))
    log('table build times')
    tb = table_build_times(sizes, spins)
    extra.append('\nTable build time, sphere_plugin.sht.tables.get_tables on an empty cache '
                 '(float64 host tables; layout real for spin 0, complex otherwise):\n')
    extra.append(_markdown_table(['L', 'spin', 'seconds'],
                                 [[L, s, f'{t:.3f}'] for L, s, t in tb]))

  lines = [
      '# sphere_plugin SHT benchmark',
      '',
      f'Environment: {env}.',
  ]
  if 'transforms' in suites:
    lines.append(f'float32, Gauss-Legendre grids gaussian:(2L)x(L), lmax = L-1; minimum of '
                 f'{repeats} interleaved runs, ms per call (whole batch); compile/tables '
                 'excluded. <lib>/ours > 1 means sphere_plugin is faster.')
  if 'ducc0' in libs and 'transforms' in suites:
    lines.append(f'ducc0: analysis_2d (forward) / synthesis_2d (inverse), geometry GL, '
                 f'nthreads={_DUCC0_THREADS.value}, float32 maps / complex64 alm, spin>0 as '
                 '2-component maps, batch = Python loop over maps.')
  if 's2fft' in libs and 'transforms' in suites:
    lines.append('s2fft: precompute_transforms.spherical forward/inverse, method jax, sampling '
                 'gl (L x (2L-1) grid), precomputed float32 Wigner-d kernels, jit (+ vmap for '
                 'batch > 1), reality=True for spin 0.')
  if 'transforms' in suites:
    lines += ['', _markdown_table(header, table_rows)] + extra
  if 'blocks' in suites:
    log('residual block benchmark')
    brows = block_benchmark([t.strip() for t in _BLOCK_GRIDS.value.split(',') if t.strip()],
                            repeats, _SEED.value)
    lines += ['', f'## Residual block: batch {BLOCK_BATCH}, {BLOCK_CHANNELS} channels, spins '
              f'{BLOCK_SPINS}, float32, batch norm in train mode', '',
              'fwd = loss of the block output; fwd+bwd = gradients with respect to parameters '
              'and input; memory = XLA buffers (arguments, outputs, temporaries) of the fwd+bwd '
              'program. The planar block (same spatial array, 128 real channels = 2 spins x 32 '
              'complex) is a yardstick, not an equivalent model; ratio = planar time / ours.', '']
    btable = []
    planar = {r[0]: r for r in brows if r[2].startswith('planar')}
    for g, lmax, name, n, tf, tg, mem in brows:
      p = planar.get(g)
      ratio = f'{p[5] / tg:.2f}' if p and not name.startswith('planar') else '-'
      btable.append([g, lmax, name, n, f'{tf:.1f}', f'{tg:.1f}', f'{mem:.0f}', ratio])
    lines.append(_markdown_table(['grid', 'lmax', 'model', 'params', 'fwd ms', 'fwd+bwd ms',
                                  'memory MiB', 'planar/ours (fwd+bwd)'], btable))
  if 'reference' in suites:
    try:
      ref = Reference(_REFERENCE_PATH.value)
    except ReferenceUnavailable as e:
      log(f'reference suite skipped: {e}. Get the reference from {REFERENCE_URL} and pass '
          '--reference_path=DIR (the directory holding spherical_cnn/).')
      lines += ['', f'Reference suite skipped: {e}.']
    else:
      log(f'reference: {ref.version()}')
      trows, brows, agreement = reference_benchmark(ref, repeats, _SEED.value)
      lines += reference_report(ref, trows, brows, agreement, repeats)
  lines.append(f'\nTotal benchmark wall time: {time.perf_counter() - t_start:.0f} s')
  report = '\n'.join(lines) + '\n'
  print(report, flush=True)
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(report)
    log(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
