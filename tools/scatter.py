"""Scattering coefficients of a dataset, computed once and cached next to it.

    python tools/scatter.py --input=era5_64x32.nc --J=3 --N=2 --depth=2
    # -> era5_64x32.scattering.nc: per variable (time, ..., path, longitude, latitude)
    #    on the coarse grid (gaussian:16x8 here); run again: reused, not recomputed.

The library function is `sphere_plugin.scattering_cache.scatter_file`; see
`sphere_plugin.nn.scattering` for the transform. Parameters are stored as
`scattering_*` attrs; an existing output with other parameters is an error
unless --overwrite. The output is written to a temporary path and renamed on
success. Errors are one line on stderr with exit status 1.
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags

from sphere_plugin import scattering_cache
from sphere_plugin.io import errors

_INPUT = flags.DEFINE_string('input', None, 'Input dataset: a .zarr store or a netCDF file.')
_OUTPUT = flags.DEFINE_string('output', None,
                              'Output (default: <input>.scattering.nc / .zarr next to it).')
_VARIABLES = flags.DEFINE_list('variables', None, 'Variables to transform (default: all spatial).')
_J = flags.DEFINE_integer('J', 3, 'Wavelet scales.')
_N = flags.DEFINE_integer('N', 2, 'Azimuthal band-limit of the wavelets (1 = axisymmetric).')
_DEPTH = flags.DEFINE_integer('depth', 2, 'Scattering depth (0, 1, 2).')
_LMAX = flags.DEFINE_integer('lmax', None, 'Band limit of the input analysis (default: the grid\'s).')
_DILATION = flags.DEFINE_float('dilation', 2.0, 'Wavelet dilation factor lambda.')
_OVERSAMPLING = flags.DEFINE_float('oversampling', 6.0, 'Modulus grid oversampling.')
_POOLING = flags.DEFINE_enum('pooling', 'rms', ['rms', 'mean'], 'Pooling over orientations.')
_N_DIRECTIONS = flags.DEFINE_integer('n_directions', None, "Orientations for --pooling=mean.")
_COARSE_GRID = flags.DEFINE_string('coarse_grid', None, 'Output grid (default: the smallest '
                                   'of the input kind that holds the scaling function).')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Fields per transform call.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Recompute over an output with other parameters.')


def main(argv) -> int:
  """absl main: one-line errors, exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not _INPUT.value:
    return errors.fail('scatter', '--input is required')
  started = time.time()
  try:
    out, computed = scattering_cache.scatter_file(
        _INPUT.value, _OUTPUT.value, overwrite=_OVERWRITE.value, variables=_VARIABLES.value,
        batch_size=_BATCH.value, J=_J.value, N=_N.value, depth=_DEPTH.value, lmax=_LMAX.value,
        dilation=_DILATION.value, oversampling=_OVERSAMPLING.value, pooling=_POOLING.value,
        n_directions=_N_DIRECTIONS.value, coarse_grid=_COARSE_GRID.value)
  except (ValueError, KeyError, OSError) as e:
    return errors.fail('scatter', errors.message(e))
  what = f'wrote {out} in {time.time() - started:.1f} s' if computed else (
      f'{out} is up to date (same parameters); nothing computed')
  print(what, file=sys.stderr)
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
