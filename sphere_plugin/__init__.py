"""sphere_plugin: spherical CNNs for the NeuralGCM / dinosaur / xarray ecosystem."""

from sphere_plugin import grids
from sphere_plugin import sht

__version__ = '0.1.0'
