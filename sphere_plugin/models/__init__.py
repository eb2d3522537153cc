"""Old home of the model backbones; re-exports them from their slices (gin names unchanged)."""

from sphere_plugin.examples.classifier import SphericalClassifier
from sphere_plugin.weather.forecaster import Forecaster
from sphere_plugin.molecules.encoder import molecule_spheres
from sphere_plugin.molecules.encoder import MoleculeEncoder
from sphere_plugin.molecules.heads import QM9Regressor
