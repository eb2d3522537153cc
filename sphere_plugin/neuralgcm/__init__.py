"""Spherical CNNs inside NeuralGCM forecast stacks (NeuralGCM 1.2.2 legacy API).

Importing this package registers `SphericalCNNTower` with gin (and imports
NeuralGCM's legacy modules, which register theirs), so a NeuralGCM gin config
can say `NodalMapping.tower_factory = @SphericalCNNTower`. Import it in every
process that builds *or calls* such a model: NeuralGCM re-parses the gin
config inside every jitted call. See README "NeuralGCM plug-in".
"""

from __future__ import annotations

import neuralgcm.legacy.api  # noqa: F401  (registers NeuralGCM's configurables)

from sphere_plugin.neuralgcm.checkpoint import check_config
from sphere_plugin.neuralgcm.checkpoint import check_parsed_config
from sphere_plugin.neuralgcm.checkpoint import demo_checkpoint_path
from sphere_plugin.neuralgcm.checkpoint import load_checkpoint
from sphere_plugin.neuralgcm.checkpoint import load_pickle
from sphere_plugin.neuralgcm.checkpoint import RestrictedUnpickler
from sphere_plugin.neuralgcm.checkpoint import unresolved_references
from sphere_plugin.neuralgcm.checkpoint import UnsafePickleError
from sphere_plugin.neuralgcm.model import build_model
from sphere_plugin.neuralgcm.model import check_tower_grids
from sphere_plugin.neuralgcm.model import DECODER
from sphere_plugin.neuralgcm.model import ENCODER
from sphere_plugin.neuralgcm.model import fit_tower
from sphere_plugin.neuralgcm.model import init_params
from sphere_plugin.neuralgcm.model import PHYSICS
from sphere_plugin.neuralgcm.model import reconstruction_loss
from sphere_plugin.neuralgcm.model import split_params
from sphere_plugin.neuralgcm.model import tower_bindings
from sphere_plugin.neuralgcm.model import variable_scales
from sphere_plugin.neuralgcm.model import with_params
from sphere_plugin.neuralgcm.tower import resolve_grid
from sphere_plugin.neuralgcm.tower import SphericalCNNTower
from sphere_plugin.neuralgcm.tower import TowerNet
