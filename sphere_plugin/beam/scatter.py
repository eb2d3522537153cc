"""The scattering coefficients of a dataset (what tools/scatter.py caches), on Apache Beam.

    scatter_zarr('gs://b/era5.zarr', 'gs://b/era5.scattering.zarr', chunks={'time': 8},
                 J=3, N=2, depth=2, runner='DataflowRunner', pipeline_args=[...])

Like `sphere_plugin.beam.regrid`: the driver computes the first chunk
(`scattering_cache.scatter_dataset`) and makes the output's template from it;
each worker opens the input and builds the transform (its tables and jitted
program) once per process, then per chunk of `chunks` (time, level, ...)
computes `scatter_dataset` of that chunk and writes it into its region of
`<output>.partial-<pid>`, published as `output` when every chunk is written.
The result equals `scattering_cache.scatter_file` on the same input (same
values, dims, coordinates and `scattering_*` attrs, the source's content
digest included for a local input).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Mapping, Sequence

import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin import scattering_cache
from sphere_plugin.beam import pipelines
from sphere_plugin.io import atomic
from sphere_plugin.io import datasets
from sphere_plugin.io import interrupts
from sphere_plugin.nn import scattering


@dataclasses.dataclass(frozen=True)
class ScatterJob:
  """What a worker needs (small and picklable).

  Attributes:
    input_path: the input dataset.
    variables: the variables transformed.
    params: ((name, value), ...) `ScatteringTransform` arguments.
    chunks: ((dim, size), ...) the chunking.
    batch_size: fields per transform call.
  """
  input_path: str
  variables: tuple[str, ...]
  params: tuple[tuple[str, object], ...]
  chunks: tuple[tuple[str, int], ...]
  batch_size: int = 16


@functools.lru_cache(maxsize=4)
def opened(job: ScatterJob) -> xr.Dataset:
  """The input, opened once per process, with the transform built and jitted."""
  ds = datasets.open_dataset(job.input_path)
  transform = scattering.ScatteringTransform(grids_lib.from_dataset(ds), **dict(job.params))
  scattering_cache.compiled(transform)
  return ds


def scatter_chunk(job: ScatterJob, offsets: Mapping[str, int]) -> xr.Dataset:
  """The scattering coefficients of one chunk (the variables with a chunk dim that
  this chunk writes, `pipelines.chunk_names`), in memory."""
  interrupts.raise_if_stopped()  # in-process workers: stop soon after a swallowed SIGTERM
  ds = opened(job)
  chunks = dict(job.chunks)
  part = ds[list(job.variables)].isel({d: slice(o, o + chunks[d]) for d, o in offsets.items()})
  names = pipelines.chunk_names(part, offsets, chunks)
  out = scattering_cache.scatter_dataset(part, variables=names, batch_size=job.batch_size,
                                         **dict(job.params))
  return out.drop_encoding()


def scatter_zarr(input_path: str, output: str, *, chunks=None, variables=None,
                 batch_size: int = 16, overwrite: bool = False,
                 runner: str = 'DirectRunner', pipeline_args: Sequence[str] = (),
                 progress: bool = True, **params) -> str:
  """Writes the scattering coefficients of a dataset to a zarr store with Beam.

  Args:
    input_path: zarr store or netCDF file the workers can read.
    output: the zarr store written ('.zarr'; local path or fsspec URL).
    chunks: {dim: size} per work item, or 'time=8,level=1' (default 8 steps
      of the first time-like dim).
    variables: names to transform (default: every numeric spatial variable).
    batch_size: fields per transform call.
    overwrite: replace an existing output.
    runner, pipeline_args: the Beam runner and its options.
    progress: notes on stderr.
    **params: `ScatteringTransform` arguments (J, N, depth, lmax, dilation,
      oversampling, pooling, n_directions, coarse_grid).

  Returns:
    the output path. Per variable (*other dims, path, *coarse dims), float32,
    with path coordinates and `scattering_*` attrs, as `scatter_file`.
  """
  pipelines.require()
  if not output.rstrip('/').endswith('.zarr'):
    raise ValueError(f'the Beam path writes zarr only: give an output ending in .zarr '
                     f'(got {output!r})')
  atomic.check_output(output, overwrite)
  ds = datasets.open_dataset(input_path)
  grid = grids_lib.from_dataset(ds)
  spatial = grids_lib.spatial_dims(ds)
  names = scattering_cache.spatial_variables(ds, spatial, variables)
  if not names:
    raise ValueError(f'no variable has the spatial dims {spatial}')
  datasets.check_not_empty(ds[names], input_path)
  if chunks is None or isinstance(chunks, str):
    chunks = datasets.parse_chunks(chunks, ds[names], spatial)
  chunks = {d: min(int(n), ds.sizes[d]) for d, n in chunks.items()}
  transform = scattering.ScatteringTransform(grid, **params)
  job = ScatterJob(str(input_path), tuple(names), tuple(sorted(params.items())),
                   tuple(chunks.items()), batch_size)
  started = time.time()
  first = scattering_cache.scatter_dataset(
      datasets.load(ds[names].isel({d: slice(0, n) for d, n in chunks.items()})),
      variables=names, batch_size=batch_size, **params).drop_encoding()
  first.attrs.update(scattering_cache.scattering_attrs(transform, names))
  if '://' not in str(input_path):
    first.attrs.update(scattering_cache.source_attrs(input_path))
  else:
    first.attrs['scattering_source'] = os.path.basename(str(input_path).rstrip('/'))
  if progress:
    print(f'scatter: {len(pipelines.chunk_offsets(ds.sizes, chunks))} chunks of '
          f'{chunks or "the whole dataset"} on {runner} to {transform.coarse_grid}',
          file=sys.stderr)
  pipelines.chunks_to_zarr(output, overwrite=overwrite, first=first, ds=ds, chunks=chunks,
                           prepare=opened, compute=scatter_chunk, job=job, runner=runner,
                           pipeline_args=pipeline_args)
  if progress:
    print(f'wrote {output} in {time.time() - started:.1f} s on {runner}', file=sys.stderr)
  return output
