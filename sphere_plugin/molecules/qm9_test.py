"""Tests of sphere_plugin.data.qm9 against qm9pack's raw CSV and published facts."""

from __future__ import annotations

import csv
from importlib import resources
import json

import numpy as np
import pytest

from sphere_plugin.molecules import qm9


@pytest.fixture(scope='module')
def data():
  return qm9.load()


def _raw_row(i):
  """Row i of qm9pack's first CSV file, read with the csv module (not pandas)."""
  path = resources.files('qm9pack') / 'data' / 'qm9_part1.csv'
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    for k, row in enumerate(reader):
      if k == i:
        return row
  raise IndexError(i)


def test_all_molecules_with_their_atoms(data):
  assert len(data) == qm9.NUM_MOLECULES == 130_831
  assert data.atomic_numbers.shape == (130_831, 29) and data.positions.shape == (130_831, 29, 3)
  n = data.num_atoms
  assert n.min() == 3 and n.max() == 29 and abs(n.mean() - 18.03) < 0.01
  assert set(np.unique(data.atomic_numbers)) == {0, 1, 6, 7, 8, 9}
  # Atoms come first, padding after.
  filled = data.atomic_numbers > 0
  assert np.all(filled == (np.arange(29) < n[:, None]))
  assert np.all(data.positions[~filled] == 0)
  assert np.all(np.diff(data.index) > 0) and data.index[0] == 1 and data.index[-1] == 133_885


@pytest.mark.parametrize('row', [0, 1, 500])
def test_molecules_match_the_raw_csv(data, row):
  raw = _raw_row(row)
  k = int(np.searchsorted(data.index, int(raw['Index'])))
  symbols = [s.strip("'") for s in raw['Elements'].strip('[]').split(',')]
  z = [dict(zip(qm9.ELEMENTS, qm9.ATOMIC_NUMBERS))[s] for s in symbols]
  xyz = np.array(json.loads(raw['XYZ_Ang']))
  n = len(z)
  np.testing.assert_array_equal(data.atomic_numbers[k, :n], z)
  np.testing.assert_allclose(data.positions[k, :n], xyz, rtol=1e-6, atol=1e-6)
  y = data.targets[k]
  assert y[qm9.TARGET_NAMES.index('mu')] == pytest.approx(float(raw['Dipole_debye']))
  assert y[qm9.TARGET_NAMES.index('cv')] == pytest.approx(float(raw['Heatcapacity_Cv_cal_mol_K']))
  # HOMO in meV: Hartree * 27211.386 (CODATA 2018: 27.211386245988 eV).
  assert y[qm9.TARGET_NAMES.index('homo')] == pytest.approx(float(raw['HOMO_au']) * 27211.386,
                                                            rel=1e-6)
  # Atomization enthalpy: H minus the isolated atoms' H.
  atoms = {'H': -0.497912, 'C': -37.844411, 'N': -54.581501, 'O': -75.062219, 'F': -99.716370}
  h = (float(raw['Enthalphy_298K_au']) - sum(atoms[s] for s in symbols)) * 27211.386
  assert y[qm9.TARGET_NAMES.index('h')] == pytest.approx(h, rel=1e-6)


def test_methane_atomization_energy_is_the_published_value(data):
  # CH4: U0 = -40.47893 Ha; atomization U0 = -0.63107 Ha = -17.172 eV (QM9 paper's data).
  assert data.targets[0, qm9.TARGET_NAMES.index('u0')] == pytest.approx(-17172.2, abs=0.5)
  np.testing.assert_array_equal(data.element_counts()[0], [4, 1, 0, 0, 0])


def test_split_is_qm9_plus_sized_disjoint_and_fixed():
  parts = qm9.split()
  assert [len(parts[k]) for k in ('train', 'valid', 'test')] == [110_000, 10_000, 10_831]
  everything = np.concatenate([parts['train'], parts['valid'], parts['test']])
  np.testing.assert_array_equal(np.sort(everything), np.arange(130_831))
  # Pinned: a numpy change of the permutation stream would silently change the split.
  np.testing.assert_array_equal(parts['test'][:5], [63612, 128928, 43513, 111515, 57124])
  with pytest.raises(ValueError, match='no test molecules'):
    qm9.split(100, sizes=(90, 10))


def test_target_names_are_checked():
  assert qm9.target_indices(['h', 'mu']) == (9, 0)
  with pytest.raises(ValueError, match='unknown QM9 target.*known: mu, alpha'):
    qm9.target_indices(['enthalpy'])


def test_linear_baseline_recovers_an_exact_linear_law(data):
  mols = data.subset(np.arange(500))
  counts = mols.element_counts()
  law = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [2.0, 2.0], [0.5, -1.0]])
  targets = mols.targets.copy()
  targets[:, :2] = counts @ law + np.array([7.0, -3.0])
  fake = qm9.Molecules(mols.atomic_numbers, mols.positions, targets, mols.index)
  base = qm9.LinearBaseline.fit(fake, ('mu', 'alpha'))
  # F never occurs in the first 500 molecules, so only the other 4 weights are determined.
  np.testing.assert_allclose(base.predict(fake), targets[:, :2], atol=1e-8)
  np.testing.assert_allclose(base.residual_std, 0, atol=1e-8)
  again = qm9.LinearBaseline.from_json(json.loads(json.dumps(base.to_json())))
  np.testing.assert_allclose(again.predict(fake), base.predict(fake))


def test_size_sorted_batches_cover_an_epoch_once():
  n = np.random.default_rng(0).integers(3, 30, size=1000)
  batches = qm9.size_sorted_batches(n, 16, np.random.default_rng(1), chunk_batches=8)
  assert len(batches) == 62 and all(len(b) == 16 for b in batches)
  rows = np.concatenate(batches)
  assert len(np.unique(rows)) == len(rows) == 992
  spread = np.mean([np.ptp(n[b]) for b in batches])
  random = np.mean([np.ptp(n[b]) for b in np.array_split(np.arange(992), 62)])
  assert spread < random / 3  # sorted chunks: similar sizes in a batch
  np.testing.assert_array_equal(qm9.size_buckets_for(np.array([3, 16, 17, 29]), (16, 22, 29)),
                                [16, 16, 22, 29])
  with pytest.raises(ValueError, match='exceed the largest size bucket'):
    qm9.size_buckets_for(np.array([25]), (16, 22))


def test_batch_arrays_pad_and_refuse_too_small_a_bucket(data):
  b = qm9.batch_arrays(data, np.array([0, 1]), 8)
  assert b['atomic_numbers'].shape == (2, 8) and b['positions'].shape == (2, 8, 3)
  assert b['targets'].shape == (2, 12) and b['atomic_numbers'].dtype == np.int32
  with pytest.raises(ValueError, match='more than 4 atoms'):
    qm9.batch_arrays(data, np.array([0]), 4)
