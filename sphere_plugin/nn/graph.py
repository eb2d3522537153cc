"""Sphere graphs and their Laplacians (DeepSphere; Defferrard et al., ICLR 2020).

A grid's pixels become the nodes of a k-nearest-neighbour graph:

* Distances are 3-D **chord** distances between unit vectors,
  d_ij = ||x_i - x_j|| = 2 sin(angle / 2) (monotone in the great-circle
  angle, so the neighbours are the same either way).
* Each pixel links to its k nearest other pixels with weight
  a_ij = exp(-d_ij^2 / (4 t)) (Belkin & Niyogi 2005), t the kernel width.
* The graph is symmetrised by averaging, W = (A + A^T) / 2: a pair that is a
  k-neighbour one way only gets half the weight.
* W is stored as a fixed-degree neighbour list: `neighbors` (N, K) and
  `weights` (N, K), K the largest node degree (>= k); padding entries point
  to the node itself with weight 0.

Laplacians: combinatorial L = D - W and normalised L = I - D^-1/2 W D^-1/2
(D = diag of the row sums of W). `apply_laplacian` applies them with a gather
and a weighted sum (no sparse ops), so it runs on CPU, GPU and TPU alike;
`dense_laplacian` gives the (N, N) matrix for tests and studies.

Node order is the grid's flattened pixel order: RING for HEALPix,
C-order over (nlon, nlat) for lat-lon grids (index = i_lon * nlat + i_lat).

Kernel widths t per (nside, k) minimise the Laplacian's equivariance error
(`equivariance_errors`); the table `KERNEL_WIDTHS` comes from
`tools/graph_kernel_width.py`; see `kernel_width_for` for the fallback elsewhere.
Pooling, reordering and the flax layers are in `graph_layers.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import scipy.spatial
import scipy.special

from sphere_plugin import grids as grids_lib

LAPLACIANS = ('combinatorial', 'normalized')
DENSE_EIGEN_MAX_NODES = 3072  # laplacian_lmax: dense eigvalsh up to here, Lanczos above
NEIGHBOR_COUNTS = (8, 20, 40)  # the k with fitted kernel widths

# Optimal kernel widths t (unit sphere, chord distances) per (nside, k),
# minimising the mean of `equivariance_errors` E_l over l = 1..2*nside
# (`objective_degrees`), combinatorial Laplacian, for nside 1..32 (k < 12 nside^2).
# Regenerate with:
#   .venv/bin/python tools/graph_kernel_width.py
# (grid search over log2 t: 2^(j/2) steps, refined by 2^(j/8); see `search_kernel_width`).
# Other nsides (64 and up) and lat-lon grids: the fallback of `kernel_width_for`.
KERNEL_WIDTHS: dict[tuple[int, int], float] = {
    (1, 8): 0.236705,
    (2, 8): 0.0803514,
    (2, 20): 0.178264,
    (2, 40): 0.337388,
    (4, 8): 0.0165147,
    (4, 20): 0.0309437,
    (4, 40): 0.0649553,
    (8, 8): 0.00346828,
    (8, 20): 0.00596445,
    (8, 40): 0.0114515,
    (16, 8): 0.000795038,
    (16, 20): 0.00136863,
    (16, 40): 0.0024075,
    (32, 8): 0.000198778,
    (32, 20): 0.000313978,
    (32, 40): 0.000505997,
}


@dataclasses.dataclass(frozen=True, eq=False)
class SphereGraph:
  """A symmetric k-nearest-neighbour graph on a grid's pixels, padded to fixed degree.

  Attributes:
    grid: text form of the grid, e.g. 'healpix:16'.
    k: neighbours per node before symmetrisation.
    kernel_width: t in exp(-d^2 / (4 t)), unit-sphere chord distances.
    neighbors: (N, K) int32 neighbour indices; padding entries are the node itself.
    weights: (N, K) float64 edge weights W_ij > 0; padding entries are 0.
  """
  grid: str
  k: int
  kernel_width: float
  neighbors: np.ndarray
  weights: np.ndarray

  @property
  def num_nodes(self) -> int:
    """N, the number of pixels."""
    return self.neighbors.shape[0]

  @property
  def degree(self) -> np.ndarray:
    """Weighted degree d_i = sum_j W_ij, shape (N,)."""
    return self.weights.sum(axis=1)


def unit_vectors(grid) -> np.ndarray:
  """Pixel centres as unit vectors, shape (N, 3), in the graph's node order."""
  return grids_lib.unit_vectors(grid).reshape(-1, 3)


def pixel_coordinates(grid) -> tuple[np.ndarray, np.ndarray]:
  """(latitude, longitude) in radians per node, each shape (N,), in node order."""
  grid = grids_lib.parse(grid)
  if isinstance(grid, grids_lib.HealpixGrid):
    return np.radians(grid.latitudes), np.radians(grid.longitudes)
  lon, lat = np.meshgrid(np.radians(grid.longitudes), np.radians(grid.latitudes), indexing='ij')
  return lat.ravel(), lon.ravel()


@functools.lru_cache(maxsize=32)
def _knn(grid_text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(N, k) squared chord distances and indices of each node's k nearest others."""
  x = unit_vectors(grid_text)
  n = x.shape[0]
  if not 1 <= k < n:
    raise ValueError(f'k must be in [1, {n - 1}] for {grid_text} ({n} pixels), got {k}')
  dist, idx = scipy.spatial.cKDTree(x).query(x, k=k + 1)
  # Drop each node itself (distance 0; coincident pole pixels may come first).
  not_self = idx != np.arange(n)[:, None]
  keep = np.cumsum(not_self, axis=1) <= k
  sel = not_self & keep
  idx = idx[sel].reshape(n, k)
  dist = dist[sel].reshape(n, k)
  return dist**2, idx


def mean_neighbor_distance_squared(grid, k: int) -> float:
  """Mean squared chord distance from each pixel to its k nearest neighbours."""
  return float(_knn(str(grids_lib.parse(grid)), int(k))[0].mean())


def _padded(w: scipy.sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
  n = w.shape[0]
  counts = np.diff(w.indptr)
  width = int(counts.max())
  nbr = np.repeat(np.arange(n, dtype=np.int32)[:, None], width, axis=1)
  wts = np.zeros((n, width))
  pos = np.arange(w.nnz) - np.repeat(w.indptr[:-1], counts)
  rows = np.repeat(np.arange(n), counts)
  nbr[rows, pos] = w.indices
  wts[rows, pos] = w.data
  return nbr, wts


def sphere_graph(grid, k: int = 8, kernel_width: float | None = None) -> SphereGraph:
  """The symmetrised k-NN graph of a grid's pixels (see the module docstring).

  Args:
    grid: a Grid or text ('healpix:16', 'gaussian:64x32').
    k: nearest neighbours per pixel (DeepSphere uses 8, 20 or 40).
    kernel_width: t in exp(-d^2 / (4 t)); default `kernel_width(grid, k)`.

  Returns:
    A SphereGraph with N = prod(grid.shape) nodes.
  """
  grid = grids_lib.parse(grid)
  text = str(grid)
  t = kernel_width_for(grid, k) if kernel_width is None else float(kernel_width)
  if not t > 0:
    raise ValueError(f'kernel_width must be > 0, got {kernel_width}')
  return _build_graph(text, int(k), t)


@functools.lru_cache(maxsize=64)
def _build_graph(text: str, k: int, t: float) -> SphereGraph:
  d2, idx = _knn(text, k)
  n = idx.shape[0]
  a = scipy.sparse.csr_matrix((np.exp(-d2 / (4 * t)).ravel(), idx.ravel(),
                               np.arange(0, n * k + 1, k)), shape=(n, n))
  w = ((a + a.T) * 0.5).tocsr()
  w.sort_indices()
  nbr, wts = _padded(w)
  nbr.flags.writeable = False
  wts.flags.writeable = False
  return SphereGraph(text, k, t, nbr, wts)


def check_laplacian_kind(kind: str) -> None:
  """Raises ValueError unless kind is one of LAPLACIANS."""
  if kind not in LAPLACIANS:
    raise ValueError(f'unknown Laplacian kind {kind!r}; expected one of {LAPLACIANS}')


def laplacian_parts(graph: SphereGraph, kind: str = 'combinatorial'
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """L as diagonal + off-diagonal neighbour weights: (L f)_i = diag_i f_i - sum_k off_ik f_nbr_ik.

  Returns:
    (neighbors (N, K) int32, off (N, K) float64, diag (N,) float64).
  """
  check_laplacian_kind(kind)
  d = graph.degree
  if kind == 'combinatorial':
    return graph.neighbors, graph.weights, d
  inv = 1.0 / np.sqrt(np.maximum(d, np.finfo(float).tiny))
  return graph.neighbors, graph.weights * inv[:, None] * inv[graph.neighbors], np.ones_like(d)


def gather_apply(neighbors, off, diag, x):
  """y_i = diag_i x_i - sum_k off_ik x_{neighbors_ik} on the node axis -2 (jnp).

  Args:
    neighbors: (N, K) int.
    off: (N, K) weights.
    diag: (N,) weights.
    x: (*batch, N, C) real or complex.

  Returns:
    (*batch, N, C), the dtype of x.
  """
  rdtype = jnp.finfo(x.dtype).dtype
  gathered = jnp.take(x, jnp.asarray(neighbors), axis=-2)  # (*batch, N, K, C)
  y = jnp.einsum('nk,...nkc->...nc', jnp.asarray(off, rdtype), gathered)
  return jnp.asarray(diag, rdtype)[:, None] * x - y


def apply_laplacian(graph: SphereGraph, x, kind: str = 'combinatorial'):
  """L x with a gather and a weighted sum (no sparse ops).

  Args:
    graph: the graph.
    x: signals (*batch, N, C), real or complex (jnp or numpy).
    kind: 'combinatorial' (D - W) or 'normalized' (I - D^-1/2 W D^-1/2).

  Returns:
    (*batch, N, C) jnp array.
  """
  x = jnp.asarray(x)
  if x.ndim < 2 or x.shape[-2] != graph.num_nodes:
    raise ValueError(f'apply_laplacian: signals must be (*batch, {graph.num_nodes}, C) '
                     f'on {graph.grid}, got shape {x.shape}')
  return gather_apply(*laplacian_parts(graph, kind), x)


def _sparse_laplacian(graph: SphereGraph, kind: str) -> scipy.sparse.csr_matrix:
  nbr, off, diag = laplacian_parts(graph, kind)
  n, k = nbr.shape
  m = scipy.sparse.csr_matrix((off.ravel(), nbr.ravel(), np.arange(0, n * k + 1, k)),
                              shape=(n, n))
  return (scipy.sparse.diags(diag) - m).tocsr()


def dense_laplacian(graph: SphereGraph, kind: str = 'combinatorial') -> np.ndarray:
  """The Laplacian as a dense (N, N) float64 matrix (tests and studies)."""
  return _sparse_laplacian(graph, kind).toarray()


def laplacian_lmax(graph: SphereGraph, kind: str = 'combinatorial') -> float:
  """Largest eigenvalue of L, used to rescale it to [-1, 1] for Chebyshev filters.

  Computed, not bounded: exactly (dense `eigvalsh`) for N <= DENSE_EIGEN_MAX_NODES
  (3072), otherwise
  by Lanczos (`scipy.sparse.linalg.eigsh`, tolerance 1e-10, fixed start
  vector, so it is deterministic). For the normalised Laplacian 2 is an upper
  bound, but the computed value maps the spectrum onto all of [-1, 1].
  """
  return _laplacian_lmax(graph, kind)


@functools.lru_cache(maxsize=64)
def _laplacian_lmax(graph: SphereGraph, kind: str) -> float:
  lap = _sparse_laplacian(graph, kind)
  if graph.num_nodes <= DENSE_EIGEN_MAX_NODES:
    return float(scipy.linalg.eigvalsh(lap.toarray(), subset_by_index=[graph.num_nodes - 1] * 2)[0])
  v0 = np.cos(np.arange(graph.num_nodes) * 0.7) + 1.5
  return float(scipy.sparse.linalg.eigsh(lap, k=1, which='LA', tol=1e-10, v0=v0)[0][0])


# ----------------------------------------------------------------------------
# Equivariance error and kernel widths.

def harmonic_basis(grid, l: int) -> np.ndarray:
  """Real orthonormal spherical harmonics of degree l at the pixels, shape (N, 2l+1).

  Columns: Y_l0, sqrt(2) Re Y_lm and sqrt(2) Im Y_lm for m = 1..l (scipy's
  `sph_harm_y`, evaluated once per distinct latitude).
  """
  lat, lon = pixel_coordinates(grid)
  ulat, inv = np.unique(lat, return_inverse=True)
  m = np.arange(l + 1)
  p = scipy.special.sph_harm_y(l, m[:, None], np.pi / 2 - ulat[None, :], 0.0).real  # (l+1, U)
  p = p[:, inv]  # (l+1, N)
  cols = [p[0]]
  for mm in range(1, l + 1):
    cols.append(np.sqrt(2) * p[mm] * np.cos(mm * lon))
    cols.append(np.sqrt(2) * p[mm] * np.sin(mm * lon))
  return np.stack(cols, axis=1)


def equivariance_errors(graphs: Sequence[SphereGraph], degrees: Sequence[int],
                        kind: str = 'combinatorial', num_samples: int = 16,
                        seed: int = 0) -> np.ndarray:
  """Per-degree equivariance error E_l of each graph's Laplacian.

  A rotation-equivariant operator maps each degree-l harmonic subspace into
  itself (Schur), so the degree-l harmonics are its eigenvectors. For degree l
  let V_l be the span of the real degree-l harmonics sampled at the pixels
  (`harmonic_basis`), P_l the orthogonal projection onto it (Euclidean inner
  product over pixels: equal-area on HEALPix), and f_1..f_n (n =
  `num_samples`) random band-limited signals of pure degree l: f_j = Q c_j
  with Q an orthonormal basis of V_l and c_j ~ N(0, I) (seeded by (seed, l),
  the same draws for every graph). Then

    E_l = sqrt( sum_j ||(I - P_l) L f_j||^2 / sum_j ||L f_j||^2 ),

  the fraction of the energy of L f outside degree l (0 for an exactly
  equivariant L; DeepSphere v2, Defferrard et al. ICLR 2020, Fig. 3). l = 0 is
  meaningless (L f = 0 for constants).

  Args:
    graphs: graphs on one grid (e.g. the same k with several kernel widths).
    degrees: degrees l >= 1.
    kind: Laplacian kind.
    num_samples: random signals per degree.
    seed: random seed.

  Returns:
    (len(graphs), len(degrees)) float64.
  """
  grids = {g.grid for g in graphs}
  if len(grids) != 1:
    raise ValueError(f'equivariance_errors: graphs must share one grid, got {sorted(grids)}')
  return operator_equivariance_errors(grids.pop(), [_sparse_laplacian(g, kind) for g in graphs],
                                      degrees, num_samples, seed)


def operator_equivariance_errors(grid, operators, degrees: Sequence[int], num_samples: int = 16,
                                 seed: int = 0) -> np.ndarray:
  """E_l (see `equivariance_errors`) of any linear operators on a grid's pixels.

  Args:
    grid: the grid (node order as in this module).
    operators: (N, N) matrices (numpy or scipy.sparse; anything with `@`).
    degrees: degrees l >= 1.
    num_samples: random signals per degree.
    seed: random seed.

  Returns:
    (len(operators), len(degrees)) float64.
  """
  out = np.zeros((len(operators), len(degrees)))
  for j, l in enumerate(degrees):
    if l < 1:
      raise ValueError(f'equivariance error needs degrees l >= 1, got {l}')
    q, _ = np.linalg.qr(harmonic_basis(grid, int(l)))
    c = np.random.default_rng([seed, int(l)]).normal(size=(q.shape[1], num_samples))
    f = q @ c
    for i, op in enumerate(operators):
      g = op @ f
      r = g - q @ (q.T @ g)
      out[i, j] = np.sqrt(np.sum(r**2) / np.sum(g**2))
  return out


def objective_degrees(grid) -> np.ndarray:
  """Degrees averaged in the kernel-width objective: l = 1..2*nside on HEALPix."""
  grid = grids_lib.parse(grid)
  if not isinstance(grid, grids_lib.HealpixGrid):
    raise ValueError(f'kernel widths are fitted on HEALPix only, got {grid}')
  return np.arange(1, 2 * grid.nside + 1)


def search_kernel_width(nside: int, k: int, num_samples: int = 16) -> tuple[float, float]:
  """Kernel width t minimising the mean E_l over `objective_degrees` (combinatorial L).

  Grid search in log2 t: a coarse pass over t0 * 2^(j/2), j = -8..8 (t0 the
  mean squared k-neighbour distance), moved outwards while the minimum sits on
  an end, then a fine pass over t* * 2^(j/8), j = -4..4, around the coarse
  minimum t*. Deterministic (fixed random signals), so rerunning reproduces
  `KERNEL_WIDTHS`.

  Returns:
    (t, mean error at t).
  """
  grid = grids_lib.healpix(nside)
  degrees = objective_degrees(grid)
  t0 = mean_neighbor_distance_squared(grid, k)

  def best(ts):
    errs = equivariance_errors([sphere_graph(grid, k, t) for t in ts], degrees,
                               num_samples=num_samples).mean(axis=1)
    i = int(np.argmin(errs))
    return i, ts[i], errs[i]

  ts = t0 * 2.0 ** (np.arange(-8, 9) / 2)
  i, t, _ = best(ts)
  while i in (0, len(ts) - 1):
    ts = t * 2.0 ** (np.arange(-4, 5) / 2)
    i, t, _ = best(ts)
  _, t, err = best(t * 2.0 ** (np.arange(-4, 5) / 8))
  return float(t), float(err)


def kernel_width_for(grid, k: int) -> float:
  """Kernel width t for a grid and k: the table, else a scaled table entry.

  HEALPix (nside, k) in `KERNEL_WIDTHS`: the fitted value. Elsewhere (other
  nside, lat-lon grids): t = r_k * mean_neighbor_distance_squared(grid, k),
  where r_k = t / mean squared k-neighbour distance at the largest tabulated
  nside for this k (the optimum scales with the squared pixel spacing;
  DeepSphere v2 finds t ~ n^beta). Lat-lon grids are not fitted: their pixels
  are not equal-area, so this is only a reasonable default. Without any table
  entry for k, r_k = 0.5 (the 2018 DeepSphere heuristic, half the mean squared
  distance).
  """
  grid = grids_lib.parse(grid)
  k = int(k)
  if isinstance(grid, grids_lib.HealpixGrid) and (grid.nside, k) in KERNEL_WIDTHS:
    return KERNEL_WIDTHS[(grid.nside, k)]
  return _width_ratio(k) * mean_neighbor_distance_squared(grid, k)


@functools.lru_cache(maxsize=None)
def _width_ratio(k: int) -> float:
  nsides = [n for (n, kk) in KERNEL_WIDTHS if kk == k]
  if not nsides:
    return 0.5
  ref = max(nsides)
  return KERNEL_WIDTHS[(ref, k)] / mean_neighbor_distance_squared(grids_lib.healpix(ref), k)
