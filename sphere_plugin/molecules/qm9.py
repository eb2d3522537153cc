"""QM9 (130,831 small organic molecules, B3LYP/6-31G(2df,p)) from the `qm9pack` package.

    from sphere_plugin.molecules import qm9
    data = qm9.load()                      # all molecules, targets in reporting units
    parts = qm9.split(len(data))           # the "qm9+" split: 110,000 / 10,000 / 10,831
    train = data.subset(parts['train'])

`qm9pack` is an optional dependency: `pip install 'sphere_plugin[molecules]'`.
Its CSV files are parsed once (about 6 s) and cached as `.cache/data/qm9_v1.npz`
under the repository root (git-ignored).

Targets (`TARGETS`, in this order) and their reporting units:

  mu     dipole moment                         D
  alpha  isotropic polarizability              a0^3
  homo   HOMO energy                           meV
  lumo   LUMO energy                           meV
  gap    HOMO-LUMO gap                         meV
  r2     electronic spatial extent <R^2>       a0^2
  zpve   zero-point vibrational energy         meV
  u0     atomization internal energy at 0 K    meV
  u      atomization internal energy, 298 K    meV
  h      atomization enthalpy, 298 K           meV
  g      atomization free energy, 298 K        meV
  cv     heat capacity at 298 K                cal/(mol K)

Hartree -> meV uses CODATA 2018 (1 Eh = 27.211386245988 eV). Atomization
energies subtract the isolated atoms' energies at the same level of theory
(QM9's `atomref` table, `ATOM_REFERENCE_HARTREE`).

The split: `np.random.default_rng(SPLIT_SEED).permutation(130831)` over the
molecules in QM9-index order; the first 110,000 train, the next 10,000
validation, the remaining 10,831 test (the sizes of the "qm9+" split used by
DimeNet, PaiNN and Spherical CNNs; the molecules differ from theirs).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from sphere_plugin.io import atomic
from sphere_plugin.io import cache

ELEMENTS = ('H', 'C', 'N', 'O', 'F')
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
# Atomic masses (u) of ELEMENTS, for centres of mass.
ATOMIC_MASSES = (1.008, 12.011, 14.007, 15.999, 18.998)
MAX_ATOMS = 29
NUM_MOLECULES = 130_831

HARTREE_TO_MEV = 27211.386245988

# Energies of the isolated atoms (Hartree), B3LYP/6-31G(2df,p), from QM9's atomref table.
ATOM_REFERENCE_HARTREE = {
    'u0': {'H': -0.500273, 'C': -37.846772, 'N': -54.583861, 'O': -75.064579, 'F': -99.718730},
    'u': {'H': -0.498857, 'C': -37.845355, 'N': -54.582445, 'O': -75.063162, 'F': -99.717314},
    'h': {'H': -0.497912, 'C': -37.844411, 'N': -54.581501, 'O': -75.062219, 'F': -99.716370},
    'g': {'H': -0.510927, 'C': -37.861317, 'N': -54.598897, 'O': -75.079532, 'F': -99.733544},
}


@dataclasses.dataclass(frozen=True)
class Target:
  """One regression target: its qm9pack column, unit and conversion.

  Attributes:
    name: short name (`mu`, `alpha`, ..., `cv`).
    column: qm9pack CSV column.
    unit: reporting unit.
    scale: factor from the column's unit to the reporting unit.
    description: what it is.
  """
  name: str
  column: str
  unit: str
  scale: float
  description: str

  @property
  def atomization(self) -> bool:
    """Whether the isolated atoms' energies are subtracted (u0, u, h, g)."""
    return self.name in ATOM_REFERENCE_HARTREE


TARGETS = (
    Target('mu', 'Dipole_debye', 'D', 1.0, 'dipole moment'),
    Target('alpha', 'Polarizability_bohr3', 'a0^3', 1.0, 'isotropic polarizability'),
    Target('homo', 'HOMO_au', 'meV', HARTREE_TO_MEV, 'HOMO energy'),
    Target('lumo', 'LUMO_au', 'meV', HARTREE_TO_MEV, 'LUMO energy'),
    Target('gap', 'HOMO_LUMO_gap_au', 'meV', HARTREE_TO_MEV, 'HOMO-LUMO gap'),
    Target('r2', 'R2_bohr2', 'a0^2', 1.0, 'electronic spatial extent'),
    Target('zpve', 'ZPVE_au', 'meV', HARTREE_TO_MEV, 'zero-point vibrational energy'),
    Target('u0', 'InternalEnergy_0K_au', 'meV', HARTREE_TO_MEV,
           'atomization internal energy at 0 K'),
    Target('u', 'InternalEnergy_298K_au', 'meV', HARTREE_TO_MEV,
           'atomization internal energy at 298.15 K'),
    Target('h', 'Enthalphy_298K_au', 'meV', HARTREE_TO_MEV, 'atomization enthalpy at 298.15 K'),
    Target('g', 'GibbsFreeEnergy_298K_au', 'meV', HARTREE_TO_MEV,
           'atomization free energy at 298.15 K'),
    Target('cv', 'Heatcapacity_Cv_cal_mol_K', 'cal/(mol K)', 1.0, 'heat capacity at 298.15 K'),
)
TARGET_NAMES = tuple(t.name for t in TARGETS)

SPLIT_SEED = 0
SPLIT_SIZES = (110_000, 10_000)  # train, validation; the rest is test

FORMAT_VERSION = 1
DEFAULT_CACHE = cache.data_path(f'qm9_v{FORMAT_VERSION}.npz')  # see `sphere_plugin.io.cache`


def target_indices(names) -> tuple[int, ...]:
  """Positions of target names in `TARGETS`; a clear error for unknown ones."""
  names = (names,) if isinstance(names, str) else tuple(names)
  unknown = [n for n in names if n not in TARGET_NAMES]
  if unknown or not names:
    raise ValueError(f'unknown QM9 target(s) {unknown or names}; known: {", ".join(TARGET_NAMES)}')
  return tuple(TARGET_NAMES.index(n) for n in names)


@dataclasses.dataclass(frozen=True)
class Molecules:
  """A set of molecules, zero-padded to `MAX_ATOMS` atoms.

  Attributes:
    atomic_numbers: (M, MAX_ATOMS) int8; 0 marks padding (atoms come first).
    positions: (M, MAX_ATOMS, 3) float32, Angstrom; 0 at padding.
    targets: (M, 12) float64 in the reporting units of `TARGETS`.
    index: (M,) int32, the QM9 molecule index (1 .. 133,885, with gaps).
  """
  atomic_numbers: np.ndarray
  positions: np.ndarray
  targets: np.ndarray
  index: np.ndarray

  def __len__(self) -> int:
    return len(self.index)

  @property
  def num_atoms(self) -> np.ndarray:
    """(M,) number of atoms of each molecule."""
    return np.count_nonzero(self.atomic_numbers, axis=1)

  def element_counts(self) -> np.ndarray:
    """(M, 5) counts of H, C, N, O, F in each molecule."""
    return np.stack([np.count_nonzero(self.atomic_numbers == z, axis=1)
                     for z in ATOMIC_NUMBERS], axis=1)

  def subset(self, rows) -> Molecules:
    """The molecules at `rows` (indices or a boolean mask), in that order."""
    rows = np.asarray(rows)
    return Molecules(self.atomic_numbers[rows], self.positions[rows], self.targets[rows],
                     self.index[rows])


def _parse_qm9pack() -> dict[str, np.ndarray]:
  """Reads qm9pack's CSV files into padded arrays (about 6 s)."""
  try:
    import pandas as pd  # pylint: disable=g-import-not-at-top
    from importlib import resources  # pylint: disable=g-import-not-at-top
    data_dir = resources.files('qm9pack') / 'data'
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        f'QM9 needs the optional dependency {e.name!r}: '
        "pip install 'sphere_plugin[molecules]' (qm9pack carries the data)") from e
  columns = ['Index', 'N_atoms', 'Elements', 'XYZ_Ang'] + [t.column for t in TARGETS]
  parts = [pd.read_csv(data_dir / f'qm9_part{i}.csv', usecols=columns) for i in (1, 2, 3)]
  df = pd.concat(parts, ignore_index=True).sort_values('Index', kind='stable')
  if len(df) != NUM_MOLECULES:
    raise ValueError(f'qm9pack holds {len(df)} molecules, expected {NUM_MOLECULES}')
  n = df['N_atoms'].to_numpy()
  flat_xyz = ','.join(df['XYZ_Ang'].str.replace('[', '', regex=False)
                      .str.replace(']', '', regex=False))
  xyz = np.array(flat_xyz.split(','), dtype=np.float64).reshape(-1, 3)
  symbols = ','.join(df['Elements'].str.slice(1, -1)).replace("'", '').split(',')
  lookup = dict(zip(ELEMENTS, ATOMIC_NUMBERS))
  z = np.array([lookup[s.strip()] for s in symbols], dtype=np.int8)
  if len(z) != n.sum() or len(xyz) != n.sum():
    raise ValueError('qm9pack: atom counts do not match the element and coordinate lists')
  m = len(n)
  mol = np.repeat(np.arange(m), n)
  slot = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
  numbers = np.zeros((m, MAX_ATOMS), np.int8)
  positions = np.zeros((m, MAX_ATOMS, 3), np.float32)
  numbers[mol, slot] = z
  positions[mol, slot] = xyz
  counts = np.stack([np.count_nonzero(numbers == a, axis=1) for a in ATOMIC_NUMBERS], axis=1)
  targets = np.empty((m, len(TARGETS)), np.float64)
  for k, t in enumerate(TARGETS):
    y = df[t.column].to_numpy(np.float64)
    if t.atomization:
      y = y - counts @ np.array([ATOM_REFERENCE_HARTREE[t.name][e] for e in ELEMENTS])
    targets[:, k] = y * t.scale
  return dict(atomic_numbers=numbers, positions=positions, targets=targets,
              index=df['Index'].to_numpy(np.int32))


def load(cache: str | os.PathLike | None = DEFAULT_CACHE) -> Molecules:
  """All 130,831 molecules, in QM9-index order.

  Args:
    cache: npz file holding the parsed arrays; read if it exists, else written
      (write-then-rename). None: always parse qm9pack, write nothing.

  Returns:
    Molecules with targets in reporting units (see the module docstring).

  Raises:
    ModuleNotFoundError: qm9pack (or pandas) is not installed.
  """
  if cache is not None and os.path.exists(cache):
    with np.load(cache) as f:
      arrays = {k: f[k] for k in f.files}
  else:
    arrays = _parse_qm9pack()
    if cache is not None:
      os.makedirs(os.path.dirname(os.fspath(cache)), exist_ok=True)
      with atomic.atomic_path(os.fspath(cache)) as tmp:
        with open(tmp, 'wb') as f:
          np.savez(f, **arrays)
  return Molecules(**arrays)


def split(num_molecules: int = NUM_MOLECULES, seed: int = SPLIT_SEED,
          sizes: tuple[int, int] = SPLIT_SIZES) -> dict[str, np.ndarray]:
  """The train / valid / test row indices ("qm9+" sizes by default).

  Args:
    num_molecules: number of rows (130,831 for QM9).
    seed: permutation seed.
    sizes: (train, valid); test is the rest.

  Returns:
    {'train': (sizes[0],), 'valid': (sizes[1],), 'test': (rest,)} int64 rows.
  """
  n_train, n_valid = sizes
  if n_train + n_valid >= num_molecules:
    raise ValueError(f'split sizes {sizes} leave no test molecules out of {num_molecules}')
  perm = np.random.default_rng(seed).permutation(num_molecules)
  return {'train': perm[:n_train], 'valid': perm[n_train:n_train + n_valid],
          'test': perm[n_train + n_valid:]}


@dataclasses.dataclass(frozen=True)
class LinearBaseline:
  """Per-element linear regression on atom counts: y ~ counts @ weights + bias.

  The standard trivial QM9 baseline ("dressed atoms"); the models also use it
  as an offset and regress the residual.

  Attributes:
    weights: (5, T) per-element contribution of each target.
    bias: (T,).
    residual_mean, residual_std: (T,) statistics of y - prediction on the
      data the baseline was fitted on.
    targets: the T target names.
  """
  weights: np.ndarray
  bias: np.ndarray
  residual_mean: np.ndarray
  residual_std: np.ndarray
  targets: tuple[str, ...]

  @classmethod
  def fit(cls, molecules: Molecules, targets=TARGET_NAMES) -> LinearBaseline:
    """Least-squares fit on `molecules` (use the training split only)."""
    cols = target_indices(targets)
    x = np.concatenate([molecules.element_counts(), np.ones((len(molecules), 1))], axis=1)
    y = molecules.targets[:, cols]
    coef = np.linalg.lstsq(x.astype(np.float64), y, rcond=None)[0]
    residual = y - x @ coef
    return cls(coef[:-1], coef[-1], residual.mean(axis=0), residual.std(axis=0),
               tuple(targets) if not isinstance(targets, str) else (targets,))

  def predict(self, molecules: Molecules) -> np.ndarray:
    """(M, T) predictions in reporting units."""
    return molecules.element_counts() @ self.weights + self.bias

  def to_json(self) -> dict:
    """A JSON-serialisable dict (see `from_json`)."""
    return {'targets': list(self.targets), 'weights': self.weights.tolist(),
            'bias': self.bias.tolist(), 'residual_mean': self.residual_mean.tolist(),
            'residual_std': self.residual_std.tolist()}

  @classmethod
  def from_json(cls, d: dict) -> LinearBaseline:
    """Inverse of `to_json`."""
    return cls(np.asarray(d['weights'], np.float64), np.asarray(d['bias'], np.float64),
               np.asarray(d['residual_mean'], np.float64),
               np.asarray(d['residual_std'], np.float64), tuple(d['targets']))


def size_buckets_for(num_atoms: np.ndarray, buckets) -> np.ndarray:
  """The padded atom count of each molecule: the smallest bucket >= its size.

  Args:
    num_atoms: (M,) atom counts.
    buckets: increasing padded sizes; the last must be >= num_atoms.max().

  Returns:
    (M,) int bucket sizes.
  """
  b = np.asarray(sorted(buckets))
  pos = np.searchsorted(b, num_atoms)
  if np.any(pos >= len(b)):
    raise ValueError(f'molecules with {int(num_atoms.max())} atoms exceed the largest size '
                     f'bucket {int(b[-1])}')
  return b[pos]


def batch_arrays(molecules: Molecules, rows: np.ndarray, num_atoms: int) -> dict[str, np.ndarray]:
  """One batch: the molecules at `rows`, padded to `num_atoms` atoms.

  Returns:
    {'atomic_numbers': (B, num_atoms) int32, 'positions': (B, num_atoms, 3)
    float32, 'targets': (B, 12) float32}.
  """
  rows = np.asarray(rows)
  z = molecules.atomic_numbers[rows]
  if np.any(z[:, num_atoms:]):
    raise ValueError(f'a molecule in the batch has more than {num_atoms} atoms')
  return {'atomic_numbers': z[:, :num_atoms].astype(np.int32),
          'positions': molecules.positions[rows, :num_atoms],
          'targets': molecules.targets[rows].astype(np.float32)}


def size_sorted_batches(num_atoms: np.ndarray, batch_size: int, rng: np.random.Generator,
                        chunk_batches: int = 32) -> list[np.ndarray]:
  """Shuffled batches of molecules of similar size (one epoch, remainder dropped).

  The rows are shuffled, cut into chunks of `chunk_batches * batch_size`, each
  chunk sorted by atom count and cut into batches; the batch order is then
  shuffled. Batches padded to a size bucket then waste little.

  Args:
    num_atoms: (M,) atom counts.
    batch_size: molecules per batch.
    rng: the epoch's generator.
    chunk_batches: batches per sorted chunk (1: plain random batches).

  Returns:
    M // batch_size arrays of batch_size row indices.
  """
  perm = rng.permutation(len(num_atoms))
  n_batches = len(perm) // batch_size
  perm = perm[:n_batches * batch_size]
  batches = []
  chunk = chunk_batches * batch_size
  for start in range(0, len(perm), chunk):
    rows = perm[start:start + chunk]
    rows = rows[np.argsort(num_atoms[rows], kind='stable')]
    batches.extend(rows.reshape(-1, batch_size))
  order = rng.permutation(len(batches))
  return [batches[i] for i in order]
