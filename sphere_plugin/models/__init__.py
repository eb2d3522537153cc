"""Model backbones built from `sphere_plugin.nn`."""

from sphere_plugin.models.classifier import SphericalClassifier
from sphere_plugin.models.forecaster import Forecaster
from sphere_plugin.models.molecule_encoder import molecule_spheres
from sphere_plugin.models.molecule_encoder import MoleculeEncoder
from sphere_plugin.models.qm9 import QM9Regressor
