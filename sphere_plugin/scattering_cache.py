"""Apply the scattering transform to a dataset once and cache it next to the data.

    scatter_dataset(ds, J=3, N=2)              -> xr.Dataset (in memory)
    scatter_file('era5.nc', J=3, N=2)         -> 'era5.scattering.nc' (cached)

Every data variable with the grid's spatial dims is transformed; other dims
(time, level, ...) are kept and a `path` dim is added in front of the coarse
spatial dims: `(..., path, *coarse dims)`, with path coordinates `depth`, `j1`,
`j2` (-1 where a path has no such scale) and the labels of
`ScatteringTransform.path_labels`. The coarse grid's dims keep the input's
names (lat-lon: longitude/latitude ascending; HEALPix: a RING-order pixel dim
described as `grids.healpix_coords` does: xdggs `cell_ids`, a CF / easy.gems
`crs` grid mapping), so `grids.from_dataset` and `xdggs.decode` read it. HEALPix
input may be in any order the conventions declare (NESTED included): it is
reordered to RING first (`grids.to_ring`).
Parameters are stored as `scattering_*` attrs; `scatter_file` reuses an
existing output only when they and a SHA-256 digest of the source's content
match (size and mtime would miss data replaced by `cp -p` or rsync).
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import numpy as np
import tqdm
import xarray as xr

from sphere_plugin.io import atomic
from sphere_plugin import grids as grids_lib
from sphere_plugin.io import datasets
from sphere_plugin.nn import scattering

VERSION = 1


def _canonical(ds: xr.Dataset, grid) -> xr.Dataset:
  """Sorts lat-lon data to latitude ascending and longitude from 0, HEALPix data to
  RING order (our axis order)."""
  dims = grids_lib.spatial_dims(ds)
  if isinstance(grid, grids_lib.HealpixGrid):
    return grids_lib.to_ring(ds)
  lon, lat = dims
  ds = ds.assign_coords({lon: np.mod(ds[lon].values.astype(np.float64), 360.0)})
  return ds.sortby([lon, lat])


def _coarse_coords(ds: xr.Dataset, grid, coarse) -> dict:
  dims = grids_lib.spatial_dims(ds)
  if isinstance(coarse, grids_lib.HealpixGrid):
    name = dims[0] if isinstance(grid, grids_lib.HealpixGrid) else 'pixel'
    return {k: xr.Variable(*v) for k, v in grids_lib.healpix_coords(coarse, 'ring', name).items()
            if k in (name, 'cell_ids', 'crs')}
  lon, lat = dims if not isinstance(grid, grids_lib.HealpixGrid) else ('longitude', 'latitude')
  return {lon: xr.DataArray(coarse.longitudes, dims=(lon,), attrs={'units': 'degrees_east'}),
          lat: xr.DataArray(coarse.latitudes, dims=(lat,), attrs={'units': 'degrees_north'})}


@functools.lru_cache(maxsize=8)
def compiled(transform: scattering.ScatteringTransform):
  """The jitted transform, once per process (calls on later chunks reuse its programs)."""
  return jax.jit(transform.__call__)


def scattering_attrs(transform: scattering.ScatteringTransform, variables) -> dict:
  """The attrs that identify a cached result."""
  attrs = {f'scattering_{k}': v for k, v in transform.config().items()}
  attrs['scattering_variables'] = ','.join(variables)
  attrs['scattering_version'] = VERSION
  return attrs


def spatial_variables(ds, spatial, variables=None) -> list[str]:
  """The variables to transform: `variables` (checked: present, with the spatial
  dims), or every numeric variable with the spatial dims."""
  if variables is None:
    return [n for n, v in ds.data_vars.items()
            if set(spatial) <= set(v.dims) and np.issubdtype(v.dtype, np.number)]
  missing = [n for n in variables if n not in ds.data_vars]
  if missing:
    raise ValueError(f'variables {missing} not in the dataset (it has {list(ds.data_vars)})')
  flat = [n for n in variables if not set(spatial) <= set(ds[n].dims)]
  if flat:
    raise ValueError(f'variables {flat} lack the spatial dims {spatial}')
  return list(variables)


def scatter_dataset(ds: xr.Dataset, *, variables=None, batch_size: int = 16,
                    progress: bool = False, **params) -> xr.Dataset:
  """Scattering coefficients of every spatial variable of a dataset.

  Args:
    ds: dataset on a grid `grids.from_dataset` detects (read lazily; loaded
      `batch_size` fields at a time).
    variables: names to transform (default: every numeric variable with the
      spatial dims).
    batch_size: fields per transform call.
    progress: tqdm progress bar on stderr.
    **params: `ScatteringTransform` arguments (J, N, depth, lmax, dilation,
      oversampling, pooling, n_directions, coarse_grid).

  Returns:
    Dataset: per variable (*other dims, path, *coarse dims), float32 (complex64
    for complex input), with path coordinates and `scattering_*` attrs.
  """
  grid = grids_lib.from_dataset(ds)
  spatial = grids_lib.spatial_dims(ds)
  names = spatial_variables(ds, spatial, variables)
  if not names:
    raise ValueError(f'no variable has the spatial dims {spatial}')
  ds = _canonical(ds, grid)
  transform = scattering.ScatteringTransform(grid, **params)
  coarse = transform.coarse_grid
  coords = _coarse_coords(ds, grid, coarse)
  cdims = tuple(k for k, v in coords.items() if v.dims == (k,))
  paths = transform.paths
  path_coords = {
      'path': ('path', list(transform.path_labels)),
      'depth': ('path', [len(p) for p in paths]),
      'j1': ('path', [p[0] if p else -1 for p in paths]),
      'j2': ('path', [p[1] if len(p) > 1 else -1 for p in paths]),
  }
  run = compiled(transform)
  out = {}
  jobs = []
  for name in names:
    da = ds[name]
    other = [d for d in da.dims if d not in spatial]
    da = da.transpose(*other, *spatial)
    n = int(np.prod([da.sizes[d] for d in other], dtype=np.int64))
    jobs.append((name, da, other, n))

  def steps(da, other):
    """Slices along the first non-spatial dim, about batch_size fields each."""
    if not other:
      return [{}]
    rest = int(np.prod([da.sizes[d] for d in other[1:]], dtype=np.int64))
    step = max(1, batch_size // max(rest, 1))
    return [{other[0]: slice(i, i + step)} for i in range(0, da.sizes[other[0]], step)]

  total = sum(len(steps(da, other)) for _, da, other, _ in jobs)
  bar = tqdm.tqdm(total=total, desc=f'scatter to {coarse}', unit='chunk', disable=not progress,
                  file=sys.stderr)
  for name, da, other, n in jobs:
    shape = tuple(da.sizes[d] for d in other)
    complex_ = np.iscomplexobj(np.zeros((), da.dtype))
    dtype = np.complex64 if complex_ else np.float32
    res = np.empty((n, len(paths)) + coarse.shape, dtype)
    i = 0
    for sel in steps(da, other):
      x = np.asarray(da.isel(sel).values, dtype).reshape((-1,) + grid.shape)
      res[i:i + len(x)] = np.asarray(run(x))
      i += len(x)
      bar.update(1)
    res = res.reshape(shape + res.shape[1:])
    attrs = dict(da.attrs)
    if isinstance(coarse, grids_lib.HealpixGrid):
      attrs['grid_mapping'] = 'crs'
    else:
      attrs.pop('grid_mapping', None)
    out[name] = xr.DataArray(res, dims=(*other, 'path', *cdims),
                             coords={d: da[d] for d in other if d in da.coords},
                             attrs=attrs)
  bar.close()
  result = xr.Dataset(out).assign_coords(path_coords).assign_coords(coords)
  for c, v in ds.coords.items():  # non-spatial coords (time, level, ...)
    if c not in result.coords and not set(v.dims) & set(spatial) and set(v.dims) <= set(result.dims):
      result = result.assign_coords({c: v})
  result.attrs = scattering_attrs(transform, names)
  return result


def default_output(input_path: str) -> str:
  """`<input stem>.scattering.zarr` for zarr stores, `.scattering.nc` otherwise."""
  path = os.fspath(input_path).rstrip('/')
  stem, ext = os.path.splitext(path)
  return stem + ('.scattering.zarr' if ext == '.zarr' or os.path.isdir(path) else '.scattering.nc')


def source_attrs(input_path: str) -> dict:
  """What identifies the source data: its name and a digest of its content
  (`scatter_file` reuses an output only when they match)."""
  return {'scattering_source': os.path.basename(os.path.abspath(input_path).rstrip('/')),
          'scattering_source_sha256': datasets.content_digest(input_path)}


def _same(a, b) -> bool:
  if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
    return np.isclose(float(a), float(b), rtol=1e-12, atol=0)
  return str(a) == str(b)


def scatter_file(input_path: str, output: str | None = None, *, overwrite: bool = False,
                 variables=None, batch_size: int = 16, progress: bool = True,
                 **params) -> tuple[str, bool]:
  """Computes (or reuses) the scattering coefficients of a dataset file.

  Args:
    input_path: netCDF file or zarr store.
    output: where to write (default `default_output(input_path)`: next to it).
      '.zarr' -> zarr (format 2), else netCDF; written through a temporary
      path renamed on success (`sphere_plugin.atomic`).
    overwrite: recompute when an output with other parameters exists.
    variables, batch_size, progress, **params: as `scatter_dataset`.

  Returns:
    (output path, whether it was computed now). An existing output whose
    `scattering_*` attrs match is reused without computing.

  Raises:
    FileExistsError: the output exists with other parameters and not overwrite.
  """
  output = default_output(input_path) if output is None else os.fspath(output).rstrip('/')
  ds = datasets.open_dataset(input_path)
  grid = grids_lib.from_dataset(ds)
  names = spatial_variables(ds, grids_lib.spatial_dims(ds), variables)
  transform = scattering.ScatteringTransform(grid, **params)
  expected = {**scattering_attrs(transform, names), **source_attrs(input_path)}
  if os.path.exists(output):
    with datasets.open_dataset(output) as old:
      found = dict(old.attrs)
    diff = [k for k, v in expected.items() if k not in found or not _same(found[k], v)]
    if not diff:
      return output, False
    if not overwrite:
      what = ('was computed from other data than the current ' + repr(input_path)
              if diff == ['scattering_source_sha256'] else
              f'exists with other scattering parameters ({", ".join(diff)})')
      raise FileExistsError(f'{output!r} {what}; pass overwrite=True (--overwrite) or choose '
                            'another output')
  result = scatter_dataset(ds, variables=names, batch_size=batch_size, progress=progress,
                           **params)
  result.attrs.update(expected)
  with atomic.atomic_path(output) as tmp:
    if output.endswith('.zarr'):
      result.to_zarr(tmp, mode='w', zarr_format=2)
    else:
      result.to_netcdf(tmp)
  return output, True
