"""QM9 property regression for the training loop (`sphere_plugin.train.Task`).

    python tools/train.py --gin_file=gin/qm9_small.gin --workdir=runs/qm9_small

Data: `sphere_plugin.data.qm9` (qm9pack; the "qm9+" split). The model
(`sphere_plugin.models.QM9Regressor`) regresses each target's residual from
the per-element linear baseline, in units of the residual's standard
deviation (both fitted on the training molecules only), so its outputs are
O(1) and the baseline is the natural point of comparison. Training batches
hold molecules of similar size (size-sorted chunks), padded to a few size
buckets so that only a few shapes are ever compiled; each molecule gets a
fresh random rotation every step. Validation reports the MAE per target in
reporting units; at the end of training `final_evaluation` scores the test
split, the baseline on the same molecules, and the model's invariance to
rotations, translations and atom permutations, and writes
`<workdir>/test_metrics.json`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterator, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from sphere_plugin.io import atomic
from sphere_plugin.molecules import heads as qm9_models
from sphere_plugin.molecules import qm9
from sphere_plugin.train import batching

BASELINE_FILENAME = 'qm9_baseline.json'
TEST_METRICS_FILENAME = 'test_metrics.json'


def random_rotations(rng: jax.Array, n: int) -> jax.Array:
  """(n, 3, 3) rotation matrices, uniform (Haar) on SO(3)."""
  q = jax.random.orthogonal(rng, 3, shape=(n,))
  flip = jnp.where(jnp.linalg.det(q) < 0, -1.0, 1.0)
  return q.at[:, :, 0].multiply(flip[:, None])


def _counts(atomic_numbers) -> jax.Array:
  """(B, 5) element counts from (B, A) atomic numbers."""
  z = jnp.asarray(atomic_numbers)
  return jnp.stack([jnp.sum(z == e, axis=1) for e in qm9.ATOMIC_NUMBERS], axis=1)


@gin.configurable(module='sphere_plugin.train')
class QM9Task:
  """Regression of QM9 targets with a `QM9Regressor`.

  Args:
    model: QM9Regressor class or factory, called with `targets=`.
    targets: target names (default all 12).
    size_buckets: padded atom counts of batches (the largest >= 29).
    chunk_batches: batches per size-sorted chunk (1: plain random batches).
    train_size: use only the first n molecules of the training split (tests,
      quick runs); None: all 110,000.
    valid_size: validation molecules scored during training (the first n of
      the validation split); None: all 10,000.
    test_size: test molecules scored by `final_evaluation`; None: all.
    loss: 'l1' (MAE, the reported metric) or 'l2'.
    augment: a random rotation of every molecule at every training step.
    cache: parsed-QM9 cache file (`sphere_plugin.data.qm9.load`).
    progress: progress bars in evaluation.
  """

  def __init__(self, model: Callable[..., qm9_models.QM9Regressor] = qm9_models.QM9Regressor,
               targets: Sequence[str] = qm9.TARGET_NAMES,
               size_buckets: Sequence[int] = (16, 19, 22, 29), chunk_batches: int = 32,
               train_size: int | None = None, valid_size: int | None = 2000,
               test_size: int | None = None, loss: str = 'l1', augment: bool = True,
               cache=qm9.DEFAULT_CACHE, progress: bool = True):
    if loss not in ('l1', 'l2'):
      raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
    self.targets = tuple(targets) if not isinstance(targets, str) else (targets,)
    self.columns = np.asarray(qm9.target_indices(self.targets))
    self.size_buckets = tuple(sorted(int(b) for b in size_buckets))
    if self.size_buckets[-1] < qm9.MAX_ATOMS:
      raise ValueError(f'the largest size bucket must be >= {qm9.MAX_ATOMS} (QM9 molecules '
                       f'have up to {qm9.MAX_ATOMS} atoms), got {self.size_buckets}')
    self.chunk_batches, self.loss_kind, self.augment = int(chunk_batches), loss, bool(augment)
    self.progress = progress
    data = qm9.load(cache)
    parts = qm9.split(len(data))
    cut = lambda rows, n: rows if n is None else rows[:int(n)]  # noqa: E731
    self.train = data.subset(cut(parts['train'], train_size))
    self.valid = data.subset(cut(parts['valid'], valid_size))
    self.test = data.subset(cut(parts['test'], test_size))
    self.baseline = qm9.LinearBaseline.fit(self.train, self.targets)
    self.model = model(targets=self.targets)
    self._predict_fn = jax.jit(self._normalised_prediction)

  # -- units ------------------------------------------------------------------

  def _constants(self):
    b = self.baseline
    return tuple(jnp.asarray(a, jnp.float32) for a in
                 (b.weights, b.bias, b.residual_mean, b.residual_std))

  def to_reporting_units(self, normalised, atomic_numbers) -> jax.Array:
    """(B, T) model outputs -> predictions in reporting units (adds the baseline)."""
    w, bias, mean, std = self._constants()
    return _counts(atomic_numbers).astype(jnp.float32) @ w + bias + mean + std * normalised

  def _normalised_targets(self, batch) -> jax.Array:
    w, bias, mean, std = self._constants()
    y = jnp.asarray(batch['targets'])[:, self.columns]
    base = _counts(batch['atomic_numbers']).astype(jnp.float32) @ w + bias
    return (y - base - mean) / std

  # -- Task protocol -----------------------------------------------------------

  def init_variables(self, rng) -> dict:
    """Flax variables of the regressor, from a dummy two-atom molecule."""
    z = jnp.zeros((1, self.size_buckets[0]), jnp.int32).at[0, :2].set(jnp.array([6, 8]))
    x = jnp.zeros((1, self.size_buckets[0], 3), jnp.float32).at[0, 1, 2].set(1.2)
    return dict(self.model.init(rng, z, x, False))

  def loss(self, variables, batch, rng, train: bool):
    """L1 (or L2) of the normalised residuals; metrics: MAE per target in reporting units."""
    positions = jnp.asarray(batch['positions'])
    if train and self.augment:
      rot = random_rotations(rng, positions.shape[0])
      positions = jnp.einsum('bij,baj->bai', rot, positions)
    params = variables['params']
    state = {k: v for k, v in variables.items() if k != 'params'}
    if train:
      pred, new_state = self.model.apply({'params': params, **state}, batch['atomic_numbers'],
                                         positions, True, mutable=list(state))
    else:
      pred, new_state = self.model.apply(variables, batch['atomic_numbers'], positions,
                                         False), state
    err = pred - self._normalised_targets(batch)
    loss = jnp.mean(jnp.abs(err)) if self.loss_kind == 'l1' else jnp.mean(err ** 2)
    std = self._constants()[3]
    mae = jnp.mean(jnp.abs(err), axis=0) * std
    metrics = {'loss': loss}
    metrics.update({f'mae_{t}': mae[k] for k, t in enumerate(self.targets)})
    return loss, (dict(new_state), metrics)

  def _bucket(self, num_atoms: int) -> int:
    return int(qm9.size_buckets_for(np.asarray([num_atoms]), self.size_buckets)[0])

  def train_batches(self, batch_size: int, *, seed: int, start_step: int,
                    process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Size-sorted batches, reshuffled every epoch; a pure function of (seed, step)."""
    per_epoch = len(self.train) // batch_size
    if per_epoch < 1:
      raise ValueError(f'batch_size {batch_size} exceeds the {len(self.train)} training '
                       'molecules')
    local = batch_size // process_count
    num_atoms = self.train.num_atoms
    step = start_step
    while True:
      rng, offset = batching.epoch_rng(seed, step, per_epoch)
      batches = qm9.size_sorted_batches(num_atoms, batch_size, rng, self.chunk_batches)
      for rows in batches[offset:]:
        size = self._bucket(int(num_atoms[rows].max()))
        rows = rows[process_index * local:(process_index + 1) * local]
        yield qm9.batch_arrays(self.train, rows, size)
        step += 1

  def _normalised_prediction(self, variables, atomic_numbers, positions):
    return self.model.apply(variables, atomic_numbers, positions, False)

  def predict(self, variables, molecules: qm9.Molecules, *, batch_size: int = 64,
              positions: np.ndarray | None = None, desc: str = 'predict') -> np.ndarray:
    """Predictions in reporting units, (M, T) float64, in the order of `molecules`.

    Molecules are batched by size (one compiled shape per size bucket).
    `positions` (M, MAX_ATOMS, 3) replaces the molecules' own coordinates.
    """
    positions = molecules.positions if positions is None else positions
    num_atoms = molecules.num_atoms
    order = np.argsort(num_atoms, kind='stable')
    out = np.empty((len(molecules), len(self.targets)))
    starts = range(0, len(order), batch_size)
    for start in tqdm.tqdm(starts, desc=desc, unit='batch', leave=False,
                           disable=not self.progress or len(starts) < 10):
      rows = order[start:start + batch_size]
      padded = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
      size = self._bucket(int(num_atoms[rows].max()))
      z = molecules.atomic_numbers[padded, :size].astype(np.int32)
      pred = self._predict_fn(variables, z, positions[padded, :size])
      pred = np.asarray(self.to_reporting_units(pred, z), np.float64)
      out[rows] = pred[:len(rows)]
    return out

  def _mae(self, pred: np.ndarray, molecules: qm9.Molecules) -> np.ndarray:
    return np.mean(np.abs(pred - molecules.targets[:, self.columns]), axis=0)

  def evaluate(self, variables, *, batch_size: int) -> dict[str, float]:
    """Validation MAE per target (reporting units) and their mean in units of each std."""
    mae = self._mae(self.predict(variables, self.valid, batch_size=batch_size,
                                 desc='validate'), self.valid)
    out = {f'valid_mae_{t}': float(m) for t, m in zip(self.targets, mae)}
    out['valid_mae_over_std'] = float(np.mean(mae / self.baseline.residual_std))
    return out

  def save_artifacts(self, workdir: str) -> None:
    """Writes the linear baseline and residual statistics (`qm9_baseline.json`)."""
    with atomic.atomic_path(os.path.join(workdir, BASELINE_FILENAME)) as tmp:
      with open(tmp, 'w') as f:
        json.dump({'split_seed': qm9.SPLIT_SEED, 'train_molecules': len(self.train),
                   **self.baseline.to_json()}, f, indent=1)

  # -- after training ----------------------------------------------------------

  def invariance(self, variables, *, num_molecules: int = 256, seed: int = 0,
                 batch_size: int = 64) -> dict[str, float]:
    """How much predictions change under rotations, translations, permutations.

    On the first `num_molecules` test molecules: each gets a random rotation
    and a random translation (up to 10 Angstrom) ('rotation'), and separately
    a random permutation of its atoms ('permutation'). Per target t: the
    median over molecules of |y' - y| / |y| (relative change in reporting
    units; large for targets near 0 such as mu), and the median and max of
    |y' - y| / std (the change in units of the target's residual std, the
    scale the model predicts on); the last two also over all targets.
    """
    mols = self.test.subset(np.arange(min(num_molecules, len(self.test))))
    base = self.predict(variables, mols, batch_size=batch_size, desc='invariance')
    rng = np.random.default_rng(seed)
    rot = np.asarray(random_rotations(jax.random.key(seed), len(mols)), np.float64)
    shift = rng.uniform(-10, 10, size=(len(mols), 1, 3))
    mask = (mols.atomic_numbers > 0)[..., None]
    moved = ((np.einsum('bij,baj->bai', rot, mols.positions) + shift) * mask).astype(np.float32)
    rotated = self.predict(variables, mols, batch_size=batch_size, positions=moved,
                           desc='invariance')
    z, x = mols.atomic_numbers.copy(), mols.positions.copy()
    for i, n in enumerate(mols.num_atoms):
      p = rng.permutation(n)
      z[i, :n], x[i, :n] = z[i, p], x[i, p]
    permuted = self.predict(variables, qm9.Molecules(z, x, mols.targets, mols.index),
                            batch_size=batch_size, desc='invariance')
    std = self.baseline.residual_std
    out = {}
    for name, other in (('rotation', rotated), ('permutation', permuted)):
      diff = np.abs(other - base)
      rel, in_std = diff / np.maximum(np.abs(base), 1e-12), diff / std
      for k, t in enumerate(self.targets):
        out[f'{name}_relative_median_{t}'] = float(np.median(rel[:, k]))
        out[f'{name}_over_std_median_{t}'] = float(np.median(in_std[:, k]))
        out[f'{name}_over_std_max_{t}'] = float(np.max(in_std[:, k]))
      out[f'{name}_over_std_median'] = float(np.median(in_std))
      out[f'{name}_over_std_max'] = float(np.max(in_std))
    return out

  def final_evaluation(self, variables, *, workdir: str, batch_size: int) -> dict[str, float]:
    """Test-split MAE per target for the model and the linear baseline, and invariance.

    Writes `<workdir>/test_metrics.json` (on process 0) and prints a table.
    """
    start = time.perf_counter()
    pred = self.predict(variables, self.test, batch_size=batch_size, desc='test')
    model_mae = self._mae(pred, self.test)
    base_mae = self._mae(self.baseline.predict(self.test), self.test)
    inv = self.invariance(variables, batch_size=batch_size)
    units = {t.name: t.unit for t in qm9.TARGETS}
    report = {
        'split': f'qm9+ seed {qm9.SPLIT_SEED}', 'test_molecules': len(self.test),
        'train_molecules': len(self.train),
        'targets': {t: {'unit': units[t], 'model_mae': float(m), 'baseline_mae': float(b)}
                    for t, m, b in zip(self.targets, model_mae, base_mae)},
        'invariance': inv, 'seconds': round(time.perf_counter() - start, 1)}
    if jax.process_index() == 0:
      with atomic.atomic_path(os.path.join(workdir, TEST_METRICS_FILENAME)) as tmp:
        with open(tmp, 'w') as f:
          json.dump(report, f, indent=1)
      print(format_report(report), flush=True)
    out = {f'test_mae_{t}': float(m) for t, m in zip(self.targets, model_mae)}
    out.update({f'baseline_mae_{t}': float(b) for t, b in zip(self.targets, base_mae)})
    out.update({f'invariance_{k}': v for k, v in inv.items()})
    return out


def format_report(report: dict) -> str:
  """The test metrics as a text table (what `final_evaluation` prints)."""
  inv = report['invariance']
  lines = [f'QM9 test split ({report["test_molecules"]} molecules, {report["split"]}; '
           f'trained on {report["train_molecules"]}):',
           f'{"target":7s} {"unit":12s} {"model MAE":>10s} {"baseline MAE":>13s} {"ratio":>6s}'
           f' {"rotated: rel. change":>21s} {"change/std":>11s}']
  for t, r in report['targets'].items():
    lines.append(f'{t:7s} {r["unit"]:12s} {r["model_mae"]:10.4g} {r["baseline_mae"]:13.4g} '
                 f'{r["model_mae"] / r["baseline_mae"]:6.3f} '
                 f'{inv[f"rotation_relative_median_{t}"]:21.2e} '
                 f'{inv[f"rotation_over_std_median_{t}"]:11.2e}')
  lines.append('(rotated: medians over molecules of the change under a random rotation and '
               'translation, relative and in units of the target\'s residual std; all '
               f'targets: median {inv["rotation_over_std_median"]:.2e}, max '
               f'{inv["rotation_over_std_max"]:.2e} std; atom permutations: max '
               f'{inv["permutation_over_std_max"]:.2e} std)')
  return '\n'.join(lines)


class TrainedQM9:
  """A trained QM9 model, rebuilt from its workdir (config.gin + a checkpoint).

      model = TrainedQM9('runs/qm9_small')
      y = model.predict(atomic_numbers, positions)     # (M, T), reporting units
      e = model.embed(atomic_numbers, positions)       # per-atom / per-molecule embeddings

  Args (constructor): workdir; step (default the latest checkpoint);
  progress; bindings: gin lines overriding the run's config, e.g.
  `["sphere_plugin.nn.SphericalCNN.grids = ('gaussian:32x16',)"]` to run the
  trained filters on a finer grid (less aliasing, see the README).

  Attributes:
    task: the QM9Task of the run (its gin config is parsed into gin's global
      config).
    variables: the checkpoint's flax variables.
    step: the checkpoint's step.
    targets: the target names, in prediction column order.
  """

  def __init__(self, workdir: str, step: int | None = None, progress: bool = False,
               bindings: Sequence[str] = ()):
    from sphere_plugin.train import loop  # pylint: disable=g-import-not-at-top
    self.task = loop.task_from_config(workdir, bindings)
    self.task.progress = progress
    self.variables, self.step = loop.restore(workdir, self.task, step=step)
    self.targets = self.task.targets

  @staticmethod
  def _molecules(atomic_numbers, positions) -> qm9.Molecules:
    z = np.asarray(atomic_numbers)
    x = np.asarray(positions, np.float32)
    if z.ndim != 2 or x.shape != z.shape + (3,) or z.shape[1] > qm9.MAX_ATOMS:
      raise ValueError(f'atomic_numbers (M, A <= {qm9.MAX_ATOMS}) and positions (M, A, 3) '
                       f'expected, got {z.shape} and {x.shape}')
    bad = sorted(set(np.unique(z)) - {0, *qm9.ATOMIC_NUMBERS})
    if bad:
      raise ValueError(f'atomic numbers {bad} are not among the QM9 elements H, C, N, O, F')
    pad = qm9.MAX_ATOMS - z.shape[1]
    z = np.pad(z, ((0, 0), (0, pad))).astype(np.int8)
    x = np.pad(x, ((0, 0), (0, pad), (0, 0))) * (z > 0)[..., None]
    nan = np.full((len(z), len(qm9.TARGETS)), np.nan)
    return qm9.Molecules(z, x, nan, np.zeros(len(z), np.int32))

  def predict(self, atomic_numbers, positions, *, batch_size: int = 64) -> np.ndarray:
    """Predicted targets in reporting units.

    Args:
      atomic_numbers: (M, A) int, 0 at padding (atoms first), A <= 29.
      positions: (M, A, 3) Angstrom.

    Returns:
      (M, len(targets)) float64.
    """
    return self.task.predict(self.variables, self._molecules(atomic_numbers, positions),
                             batch_size=batch_size)

  def embed(self, atomic_numbers, positions) -> dict[str, np.ndarray]:
    """The trained encoder's embeddings: {'atoms': (M, A, F), 'molecule': (M, F)}."""
    z = jnp.asarray(atomic_numbers, jnp.int32)
    encoder = self.task.model.encoder
    sub = {k: v['encoder'] for k, v in self.variables.items() if 'encoder' in v}
    out = encoder.apply(sub, z, jnp.asarray(positions, jnp.float32), False)
    return {'atoms': np.asarray(out['atoms']), 'molecule': np.asarray(out['molecule'])}
