"""The xarray accessor `ds.sphere` / `da.sphere`, registered on import of sphere_plugin.

    import sphere_plugin
    ds.sphere.grid                                  # the detected Grid
    ds.sphere.regrid('healpix:32', method='conservative')

Works by dimension name, whatever the dims order, latitude direction or
longitude convention ([0, 360) or [-180, 180)). Non-spatial dims (time, level,
member, ...) are carried through; dask-backed data stays lazy, so chunk a
dataset that is larger than memory (e.g. `ds.chunk(time=8)`) and write the
result with `to_zarr`, or use `tools/regrid.py`, which streams chunk by chunk.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Mapping

import numpy as np
import xarray as xr

from sphere_plugin import grids as grids_lib
from sphere_plugin import regrid as regrid_lib

# WeatherBench2 names of (eastward, northward) wind pairs, used by default.
WB2_VECTOR_PAIRS = (
    ('u_component_of_wind', 'v_component_of_wind'),
    ('10m_u_component_of_wind', '10m_v_component_of_wind'),
    ('100m_u_component_of_wind', '100m_v_component_of_wind'),
)

MISSING_NOTE = ('missing values (NaN) skipped: each target value is the weighted mean '
                 'over the valid part of its sources (weights renormalised); NaN where '
                 'no valid source overlaps')


# Frames in these packages are internals: a warning points at the first frame outside.
_INTERNAL_DIRS = tuple(os.path.dirname(m.__file__) + os.sep
                       for m in (sys.modules[__name__.rpartition('.')[0]], xr)) + tuple(
                           os.sep + p + os.sep for p in ('dask', 'toolz'))


def _caller_stacklevel() -> int:
  """The `stacklevel` of the first frame outside sphere_plugin / xarray / dask
  (counted from the caller of this function's caller, as `warnings.warn` does)."""
  frame, level = sys._getframe(2), 2  # pylint: disable=protected-access
  while frame is not None and not frame.f_code.co_filename.endswith('_test.py') and any(
      d in frame.f_code.co_filename for d in _INTERNAL_DIRS):
    frame, level = frame.f_back, level + 1
  return level


class RingingReport:
  """Says once per variable (per run of the CLI, per `regrid_dataset` call otherwise)
  that spectral regridding made a non-negative field negative (Gibbs ringing).

  Thread-safe: dask computes blocks on several threads.
  """

  def __init__(self):
    self._warned: set[str] = set()
    self._lock = threading.Lock()

  def check(self, name: str, x, y) -> None:
    """Warns about variable `name` if x >= 0 everywhere and its regridded y is not."""
    x, y = np.asarray(x), np.asarray(y)
    if not x.size or not y.size or np.isnan(x).any() or np.min(x) < 0 or np.min(y) >= 0:
      return
    with self._lock:
      if name in self._warned:
        return
      self._warned.add(name)
    warnings.warn(
        f'variable {name!r}: spectral regridding gave a non-negative field negative values '
        f'(Gibbs ringing at sharp features): min/max {np.min(y):.4g}/{np.max(y):.4g} after '
        f'regridding vs {np.min(x):.4g}/{np.max(x):.4g} before (in the first data where '
        "this was seen); use method='conservative' for precipitation-like fields, or a "
        'taper', regrid_lib.RingingWarning, stacklevel=_caller_stacklevel())


def _is_dask(da: xr.DataArray) -> bool:
  return da.chunks is not None


def _has_missing(da: xr.DataArray) -> bool:
  """Whether `da` has NaN (computed for dask-backed data: one read of it)."""
  if not np.issubdtype(da.dtype, np.inexact):
    return False
  return bool(da.isnull().any())


def _canonical(ds, dims: tuple[str, ...]):
  """Latitude ascending, longitudes in [0, 360) ascending starting at 0."""
  if len(dims) != 2:
    return ds
  lon_name, lat_name = dims
  lat = np.asarray(ds[lat_name].values, dtype=np.float64)
  lon = np.asarray(ds[lon_name].values, dtype=np.float64)
  # Grid index of each longitude (robust to -1e-11 standing for 0).
  index_of_lon = np.mod(np.round(lon * lon.size / 360.0), lon.size).astype(np.int64)
  lat_order, lon_order = np.argsort(lat, kind='stable'), np.argsort(index_of_lon, kind='stable')
  index = {}
  if np.any(lat_order != np.arange(lat.size)):
    index[lat_name] = lat_order
  if np.any(lon_order != np.arange(lon.size)):
    index[lon_name] = lon_order
  return ds.isel(index) if index else ds


def _target_coords(target: grids_lib.Grid, names: tuple[str, ...], ds,
                   order: str = 'ring') -> dict:
  if isinstance(target, grids_lib.HealpixGrid):
    return {k: xr.Variable(*v) for k, v in grids_lib.healpix_coords(target, order).items()}
  lon_name, lat_name = names
  # Keep the input's coordinate attrs (long_name, standard_name, ...) when it has them.
  lon_attrs = {'units': 'degrees_east', **(ds[lon_name].attrs if lon_name in ds.dims else {})}
  lat_attrs = {'units': 'degrees_north', **(ds[lat_name].attrs if lat_name in ds.dims else {})}
  return {lon_name: xr.Variable((lon_name,), target.longitudes, lon_attrs),
          lat_name: xr.Variable((lat_name,), target.latitudes, lat_attrs)}


def _restore_layout(out, source_ds, src_dims, tgt_dims):
  """Gives a lat-lon -> lat-lon result the input's dims order and conventions."""
  if len(src_dims) != 2 or len(tgt_dims) != 2:
    return out
  lon_name, lat_name = src_dims
  lat = np.asarray(source_ds[lat_name].values)
  if lat.size > 1 and lat[0] > lat[-1]:
    out = out.isel({lat_name: slice(None, None, -1)})
  if np.any(np.asarray(source_ds[lon_name].values) < 0):
    lon = np.mod(out[lon_name].values + 180.0, 360.0) - 180.0
    out = out.assign_coords({lon_name: (lon_name, lon, out[lon_name].attrs)})
    out = out.isel({lon_name: np.argsort(lon, kind='stable')})
  for name, var in out.data_vars.items():
    order = [d for d in source_ds[name].dims if d in var.dims] if name in source_ds else None
    if order and len(order) == var.ndim:
      out[name] = var.transpose(*order)
  return out


def _parse_pairs(vector_pairs, names) -> list[tuple[str, str]]:
  if vector_pairs is None:
    return []
  if isinstance(vector_pairs, str) and vector_pairs == 'auto':
    return [p for p in WB2_VECTOR_PAIRS if p[0] in names or p[1] in names]
  pairs = []
  for p in vector_pairs:
    if isinstance(p, str):
      if p.count(':') != 1:
        raise ValueError(f'vector pair {p!r} is not of the form "u_name:v_name"')
      p = tuple(p.split(':'))
    pairs.append(tuple(p))
  return pairs


def _check_order(target: grids_lib.Grid, order: str | None) -> str:
  """The HEALPix order to write ('ring' by default); refused for lat-lon targets."""
  if order is None:
    return 'ring'
  order = grids_lib.healpix_order(order)
  if not isinstance(target, grids_lib.HealpixGrid):
    raise ValueError(f'order={order!r} applies to HEALPix targets only; the target is '
                     f'{target}')
  if order == 'nested' and target.nside & (target.nside - 1):
    raise ValueError(f'NESTED order needs nside a power of two; the target is {target}')
  return order


def plan(ds: xr.Dataset, target, method: str = 'spectral', *, variables=None,
         vector_pairs='auto', lmax: int | None = None, taper: float | None = None,
         order: str | None = None):
  """Checks a regrid request without touching the data.

  HEALPix input in another order than RING (NESTED, or permuted cells given by
  cell ids) is reordered to RING here, lazily (`grids.to_ring`), before
  `variables` selects from it.

  Returns:
    (ds restricted to `variables`, source grid, target grid, spatial dims,
    names of the variables to regrid, names to drop, vector pairs,
    {method: Regridder} for every method the request may use: with 'auto',
    'conservative' as well, as the data decide).

  Raises:
    ValueError: unknown grid or method, not a global grid (partial-sky HEALPix
      included), missing variables, a vector pair with a component missing, an
      `order` for a lat-lon target.
  """
  target = grids_lib.parse(target)
  _check_order(target, order)
  source = grids_lib.from_dataset(ds)
  ds = grids_lib.to_ring(ds)
  src_dims = grids_lib.spatial_dims(ds)
  if variables is not None:
    variables = [variables] if isinstance(variables, str) else list(variables)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
      raise ValueError(f'variables {missing} not in the dataset; it has '
                       f'{sorted(map(str, ds.data_vars))}')
    ds = ds[variables]
  spatial = [n for n, v in ds.data_vars.items() if set(src_dims) <= set(v.dims)]
  partial = [n for n, v in ds.data_vars.items()
             if n not in spatial and set(src_dims) & set(v.dims)]
  not_numeric = [n for n in spatial if not (np.issubdtype(ds[n].dtype, np.number)
                                            or np.issubdtype(ds[n].dtype, np.bool_))]
  if not_numeric:
    raise ValueError(f'variables {not_numeric} are not numeric and cannot be regridded; '
                     'leave them out with variables=[...]')
  pairs = _parse_pairs(vector_pairs, spatial)
  for u, v in pairs:
    absent = [n for n in (u, v) if n not in spatial]
    if absent:
      raise ValueError(f'vector pair {u}:{v} is missing {absent} (spatial variables: '
                       f'{spatial}); give both components, or vector_pairs=None '
                       '(--vector_pairs=none on the command line) to regrid them as scalars')
  candidates = {m for n, (m, _) in regrid_lib.methods.choose(
      method, spatial, pairs, known=regrid_lib.METHODS,
      attrs={n: ds[n].attrs for n in spatial}).items()}
  if _undecided(method, spatial):  # 'auto' without data: NaN would make it conservative
    candidates.add('conservative')
  if not candidates:  # nothing to regrid: still check the grids and options
    candidates = {regrid_lib.methods.default(method).replace('auto', 'spectral')}
  regridders = _regridders(source, target, candidates, lmax, taper)
  return ds, source, target, src_dims, spatial, partial, pairs, regridders


def _undecided(method, names) -> bool:
  """Whether 'auto' leaves some of `names` to be decided by their data (NaN or not)."""
  if isinstance(method, Mapping):
    return any(method.get(n, method.get(regrid_lib.methods.DEFAULT_KEY)) == 'auto'
               for n in names)
  return method == 'auto' and bool(names)


def _regridders(source, target, methods, lmax, taper) -> dict:
  """{method: Regridder} for `methods` (built and cached); lmax and taper go to the
  spectral one, and are refused (by `regrid_lib.regridder`) when no method is spectral."""
  spectral_only = 'spectral' in methods
  return {m: regrid_lib.regridder(
      source, target, m,
      **({} if spectral_only and m != 'spectral' else dict(lmax=lmax, taper=taper)))
          for m in sorted(methods)}


def choose_methods(ds: xr.Dataset, method, spatial, pairs) -> dict[str, tuple[str, str]]:
  """The method of each variable of `spatial` in `ds`, with the reason
  (`sphere_plugin.regrid.methods.choose`; 'auto' reads the data of the variables
  its names and attrs leave undecided, once each, to look for NaN).

  Returns:
    {name: (method, reason)}.
  """
  return regrid_lib.methods.choose(
      method, spatial, pairs, known=regrid_lib.METHODS,
      attrs={n: ds[n].attrs for n in spatial}, has_missing=lambda n: _has_missing(ds[n]))


def method_attr(chosen: Mapping[str, tuple[str, str]]) -> str:
  """The dataset's `regrid_method` attr: the one method used, or 'mixed'."""
  used = {m for m, _ in chosen.values()}
  return used.pop() if len(used) == 1 else 'mixed'


def regrid_dataset(ds: xr.Dataset, target, method: str = 'spectral', *,
                   variables=None, vector_pairs='auto', lmax: int | None = None,
                   taper: float | None = None, order: str | None = None,
                   ringing: RingingReport | None = None) -> xr.Dataset:
  """Regrids every spatial variable of `ds` to `target`; see `DatasetAccessor.regrid`.

  Args:
    ds, target, method, variables, vector_pairs, lmax, taper, order: as
      `DatasetAccessor.regrid`.
    ringing: where the Gibbs-ringing warnings already given are recorded; pass
      one `RingingReport` to several calls (chunks of one run) to warn once per
      variable over all of them. Default: a new one (once per variable here).

  Returns:
    the regridded Dataset. Each variable keeps its own attrs (also both
    components of a vector pair); `regrid_missing_values` is added to the
    variables that had NaN (non-spectral methods skip them).
  """
  ringing = RingingReport() if ringing is None else ringing
  ds, source, target, src_dims, spatial, partial, pairs, _ = plan(
      ds, target, method, variables=variables, vector_pairs=vector_pairs, lmax=lmax,
      taper=taper, order=order)
  chosen = choose_methods(ds, method, spatial, pairs)
  methods = {n: m for n, (m, _) in chosen.items()}
  regridders = _regridders(source, target, set(methods.values()), lmax, taper)
  order = _check_order(target, order)
  # The source's HEALPix description (ids, grid mapping): not carried, not warned about.
  described = set()
  if isinstance(source, grids_lib.HealpixGrid):
    described = set(grids_lib.healpix_layout(ds).id_coords) | {
        'latitude', 'longitude', 'lat', 'lon'}
  mappings = grids_lib.healpix_metadata_names(ds)
  if partial:
    warnings.warn(f'dropping {partial}: they have some but not all of the spatial dims '
                  f'{src_dims}, so they cannot be regridded', stacklevel=3)
  dropped_coords = [n for n, c in ds.coords.items()
                    if n not in src_dims and set(src_dims) & set(c.dims) and n not in described]
  if dropped_coords:
    warnings.warn(f'dropping coordinates {dropped_coords} on the spatial dims; to regrid '
                  'them, make them data variables (ds.reset_coords())', stacklevel=3)
  paired = {n for p in pairs for n in p}

  canon = _canonical(ds, src_dims)
  names = src_dims if len(src_dims) == 2 else ('longitude', 'latitude')
  tgt_dims = ('pixel',) if isinstance(target, grids_lib.HealpixGrid) else names
  sizes = dict(zip(tgt_dims, target.shape))

  def apply(func, *arrays, nout=1):
    arrays = [a.chunk({d: -1 for d in src_dims}) if _is_dask(a) else a for a in arrays]
    dtype = regrid_lib.result_dtype(arrays[0].dtype)

    def regrid_block(*blocks):  # a plain named function: dask builds task keys from it
      return func(*blocks)

    # keep_attrs=False: with two outputs xarray would copy the first input's attrs
    # onto both (v would say 'eastward_wind'); each output gets its own input's below.
    outs = xr.apply_ufunc(
        regrid_block, *arrays, input_core_dims=[list(src_dims)] * len(arrays),
        output_core_dims=[list(tgt_dims)] * nout, exclude_dims=set(src_dims),
        dask='parallelized', output_dtypes=[dtype] * nout, keep_attrs=False,
        dask_gufunc_kwargs={'output_sizes': sizes})
    outs = outs if nout > 1 else (outs,)
    for o, a in zip(outs, arrays):
      o.attrs = dict(a.attrs)
    return outs if nout > 1 else outs[0]

  def named(names, *args, **kwargs):  # say which variable a refusal is about
    try:
      return apply(*args, **kwargs)
    except ValueError as e:
      hint = (' (for this variable only: method={name: "conservative"} or method="auto"; '
              'on the command line --method_for=NAME=conservative or --method=auto)'
              if 'non-finite' in str(e) else '')
      raise ValueError(f'variable {names}: {e}{hint}') from e

  def scalar(name):
    """The scalar regridding of variable `name`, checked for ringing when spectral."""
    regridder = regridders[methods[name]]
    if methods[name] != 'spectral':
      return regridder

    def regrid_and_check(x):
      y = regridder(x, warn=False)
      ringing.check(name, x, y)
      return y
    return regrid_and_check

  out = {}
  for n in spatial:
    if n not in paired:
      out[n] = named(repr(n), scalar(n), canon[n])
  for u, v in pairs:
    out[u], out[v] = named(f'pair {u}:{v}', regridders[methods[u]].vector, canon[u], canon[v],
                           nout=2)
  for n in spatial:
    out[n].attrs['regrid_method'] = methods[n]
    # Spectral refuses NaN; the others skip them: say so where done.
    if methods[n] != 'spectral' and _has_missing(canon[n]):
      out[n].attrs['regrid_missing_values'] = MISSING_NOTE
    else:
      out[n].attrs.pop('regrid_missing_values', None)
  rest = {n: v for n, v in ds.data_vars.items()
          if n not in spatial and n not in partial and n not in mappings}
  # Scalar coords travel with each DataArray: drop the source's grid mapping there too.
  out = {n: o.drop_vars([c for c in o.coords if c in mappings]) for n, o in out.items()}
  rest = {n: v.drop_vars([c for c in v.coords if c in mappings]) for n, v in rest.items()}
  # Variables, not DataArrays: a DataArray would bring the dataset's scalar coords along.
  coords = {n: c.variable for n, c in ds.coords.items()
            if not set(src_dims) & set(c.dims) and n not in mappings}
  for n in out:  # the source's HEALPix grid mapping does not describe the result
    mapping = out[n].attrs.get('grid_mapping')
    if mapping is not None and set(str(mapping).replace(':', ' ').split()) & mappings:
      out[n].attrs.pop('grid_mapping')
    if isinstance(target, grids_lib.HealpixGrid):
      out[n].attrs['grid_mapping'] = 'crs'
  if isinstance(target, grids_lib.HealpixGrid) and order == 'nested':
    # The regridders work in RING order: position i of the NESTED result is RING
    # pixel nested_to_ring[i] (`map_nested = map_ring[nested_to_ring]`).
    to_nested = grids_lib.nested_to_ring(target.nside)
    out = {n: o.isel(pixel=to_nested) for n, o in out.items()}
  coords.update(_target_coords(target, names, ds, order))
  result = xr.Dataset({**{n: out[n] if n in out else rest[n] for n in ds.data_vars
                          if n in out or n in rest}},
                      coords=coords, attrs=dict(ds.attrs))
  result = _restore_layout(result, ds, src_dims, tgt_dims)
  result.attrs.update({'grid': str(target), 'regrid_source_grid': str(source),
                       'regrid_method': method_attr(chosen)})
  if isinstance(source, grids_lib.HealpixGrid):  # stale now
    for key in ('nside', 'order', 'dggs', 'grid_mapping'):
      result.attrs.pop(key, None)
  if isinstance(target, grids_lib.HealpixGrid):
    result.attrs.update({'healpix_nside': target.nside,
                         'healpix_order': 'ring' if order == 'ring' else 'nest'})
  else:
    result.attrs.pop('healpix_nside', None)
    result.attrs.pop('healpix_order', None)
  return result


def stamped_missing(ds: xr.Dataset) -> set[str]:
  """Names of the variables `regrid_dataset` marked as having had missing values."""
  return {str(n) for n, v in ds.data_vars.items() if 'regrid_missing_values' in v.attrs}


def stamp_missing(store: str, names) -> None:
  """Adds the `regrid_missing_values` note to `names` in a written zarr (format 2)
  store (a path or an fsspec URL) and consolidates its metadata again: a streamed
  or chunked write keeps the first chunk's attrs, NaN may first appear later."""
  import zarr  # pylint: disable=g-import-not-at-top
  group = zarr.open_group(store, mode='r+', zarr_format=2)
  for name in sorted(names):
    group[name].attrs['regrid_missing_values'] = MISSING_NOTE
  zarr.consolidate_metadata(store, zarr_format=2)


def regrid_part(part: xr.Dataset, names, target, to_regrid, pairs, *, load=None,
                **options) -> xr.Dataset:
  """Regrids the variables `names` of one chunk of a planned dataset, in memory.

  What the streaming CLI and the Beam pipelines do to each chunk after the
  first (`plan` checked everything first, e.g. that vector pairs are whole).

  Args:
    part: the chunk (lazy or in memory), e.g. ds.isel(time=slice(8, 16)) of
      `plan`'s dataset.
    names: the variables to return.
    target: the target Grid.
    to_regrid, pairs: from `plan` (names among `to_regrid` are regridded, the
      others carried unchanged).
    load: Dataset -> Dataset reading it into memory (default `.load()`).
    **options: keyword arguments of `regrid_dataset`; a `method` mapping is
      restricted to the variables regridded here.

  Returns:
    Dataset of `names`, regridded, in memory.
  """
  load = load or (lambda d: d.load())
  spatial = [n for n in names if n in to_regrid]
  rest = load(part[[n for n in names if n not in to_regrid]])
  if not spatial:
    return rest
  present = [p for p in pairs if p[0] in spatial]
  method = options.pop('method', 'spectral')
  if isinstance(method, Mapping):
    method = {n: m for n, m in method.items() if n in spatial or n == '*'}
  out = regrid_dataset(load(part[spatial]), target, method, vector_pairs=present, **options)
  return out.assign({n: rest[n] for n in rest.data_vars})


class _Accessor:
  """What `ds.sphere` and `da.sphere` share: the wrapped object and its grid."""

  def __init__(self, obj):
    self._obj = obj

  @property
  def grid(self) -> grids_lib.Grid:
    """The detected Grid (see `sphere_plugin.grids.from_dataset`)."""
    return grids_lib.from_dataset(self._obj)


@xr.register_dataset_accessor('sphere')
class DatasetAccessor(_Accessor):
  """`ds.sphere`: grid detection, regridding and forecasting of an xarray Dataset."""

  def regrid(self, target, method: str | Mapping[str, str] = 'spectral', *, variables=None,
             vector_pairs='auto', lmax: int | None = None,
             taper: float | None = None, order: str | None = None) -> xr.Dataset:
    """Regrids the Dataset to `target`.

    The input may be any grid `grids.from_dataset` detects, HEALPix in RING or
    NESTED order (xdggs, CF 1.13, easy.gems conventions; cells permuted by cell
    ids) included: it is reordered to RING for the regridders, as the order
    attrs say. Partial-sky HEALPix is a ValueError (the transforms need the
    full sphere).

    Args:
      target: a Grid or its text form ('healpix:32', 'gaussian:128x64').
      method: 'spectral' (default), 'conservative', 'bilinear' or 'nearest'
        (see `sphere_plugin.regrid`) for every variable; 'auto': 'conservative'
        for variables with missing values (NaN; dask data are read once to
        look) and for non-negative fluxes and masks recognised by name or
        attrs (precipitation, radiation, sea ice, ...), 'spectral' for the
        rest; or a mapping {variable: method or 'auto'} whose '*' entry
        (default 'spectral') covers the others, e.g.
        {'sea_surface_temperature': 'conservative'}. Both components of a
        vector pair get one method (see `sphere_plugin.regrid.methods`).
      variables: names to keep (default: all data variables). Variables without
        spatial dims are carried unchanged; those with only some spatial dims
        are dropped with a warning.
      vector_pairs: (eastward, northward) pairs regridded as vectors: 'auto'
        (the WB2 wind names present), None, or a list of ('u', 'v') tuples or
        'u:v' strings. A pair with a component missing is an error.
      lmax, taper: spectral options.
      order: the pixel order of a HEALPix result: 'ring' (default) or 'nested'
        ('nest'; nside a power of two). An error for lat-lon targets.

    Returns:
      a Dataset on the target grid. Lat-lon targets have `longitude`/`latitude`
      dims (the input's names); from a lat-lon input the input's dims order,
      latitude direction and longitude convention are kept. HEALPix targets
      have a `pixel` dim of npix = 12 nside^2 cells in `order`, described for
      xdggs (`cell_ids` coordinate: grid_name, level, indexing_scheme), CF 1.13
      and easy.gems (`crs` grid mapping: grid_mapping_name='healpix',
      refinement_level, indexing_scheme, healpix_nside, healpix_order), a
      `pixel` coordinate (the ids; healpix_nside, healpix_order 'ring'/'nest')
      and per-pixel latitude/longitude (`grids.healpix_coords`); data variables
      get grid_mapping='crs'. attrs are kept; `grid`, `regrid_source_grid`,
      `regrid_method` (the one method used, or 'mixed') and healpix_nside /
      healpix_order are added to the Dataset's, `regrid_method` (the method
      that variable got) to each regridded variable's. Dask-backed
      input gives lazy output.
    """
    return regrid_dataset(self._obj, target, method, variables=variables,
                          vector_pairs=vector_pairs, lmax=lmax, taper=taper, order=order)

  def predict(self, model, steps: int = 1, *, batch_size: int = 8,
              regrid_method: str = 'conservative', progress: bool = True) -> xr.Dataset:
    """Runs a trained forecaster from every time of the Dataset.

    Args:
      model: a training workdir path or a loaded
        `sphere_plugin.forecast.TrainedForecaster`.
      steps: number of model time steps to roll out.
      batch_size: initial times per model call.
      regrid_method: how data on another grid is moved to the model grid and
        the forecast back (`sphere_plugin.regrid` methods).
      progress: a progress bar over the batches of initial times on stderr.

    Returns:
      Dataset with dims (time, prediction_timedelta, level, <spatial dims>)
      (WB2 forecast convention; `time` is the initial time, dropped when the
      input has a scalar time), on the input's grid and coordinates, with the
      input's variable attrs. `regrid_method` / `regrid_source_grid` say how
      the forecast was regridded from the model grid (absent when the input
      is on the model grid).

    Raises:
      ValueError: naming the variables or levels the model needs and the
        Dataset lacks.
    """
    from sphere_plugin.weather import inference  # pylint: disable=g-import-not-at-top
    if not isinstance(model, inference.TrainedForecaster):
      model = inference.load(model)
    return model.predict(self._obj, steps, batch_size=batch_size, regrid_method=regrid_method,
                         progress=progress)


@xr.register_dataarray_accessor('sphere')
class DataArrayAccessor(_Accessor):
  """`da.sphere`: grid detection and (scalar) regridding of an xarray DataArray."""

  def regrid(self, target, method: str = 'spectral', *, lmax: int | None = None,
             taper: float | None = None, order: str | None = None) -> xr.DataArray:
    """Regrids the DataArray as a scalar field; see `DatasetAccessor.regrid`."""
    name = self._obj.name if self._obj.name is not None else '__data__'
    ds = self._obj.to_dataset(name=name)
    # The array's own attrs may declare its grid (healpix_nside / healpix_order):
    # to_dataset keeps them on the variable only, where a NESTED declaration
    # would not be seen and the field would be read as RING.
    ds.attrs = {**self._obj.attrs, **ds.attrs}
    out = regrid_dataset(ds, target, method, vector_pairs=None, lmax=lmax, taper=taper,
                         order=order)
    da = out[name]
    da.attrs.update({k: out.attrs[k] for k in ('grid', 'regrid_source_grid', 'regrid_method',
                                               'healpix_nside', 'healpix_order')
                     if k in out.attrs})
    return da.rename(self._obj.name)
