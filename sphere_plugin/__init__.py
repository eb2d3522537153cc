"""sphere_plugin: spherical CNNs for the NeuralGCM / dinosaur / xarray ecosystem."""

from sphere_plugin import grids
from sphere_plugin import sht
from sphere_plugin import regrid
from sphere_plugin import accessor  # registers ds.sphere / da.sphere

__version__ = '0.1.0'
