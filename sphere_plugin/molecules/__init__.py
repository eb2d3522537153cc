"""Molecules (QM9): the application slice over the core.

    qm9        QM9 from qm9pack: targets in reporting units, qm9+ split, baseline
    encoder    atoms' spherical signals (on device) and MoleculeEncoder
    heads      QM9Regressor: per-target heads and aggregations
    qm9_task   QM9Task on the shared training loop; TrainedQM9 (a workdir's model)
"""
