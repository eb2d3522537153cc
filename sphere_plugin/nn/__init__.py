"""Rotation-equivariant spherical CNN layers (flax.linen, gin-configurable).

Layer tensors: spatial (*batch, *grid.shape, spin, channel) and spectral
(*batch, lmax+1, 2*lmax+1, spin, channel), complex. See README "Layers".
"""

from sphere_plugin.nn.blocks import SphericalCNN
from sphere_plugin.nn.blocks import SpinSphericalResidualBlock
from sphere_plugin.nn.conv import SpinSphericalConv
from sphere_plugin.nn.nonlinearities import MagnitudeNonlinearity
from sphere_plugin.nn.nonlinearities import PhaseCollapse
from sphere_plugin.nn.nonlinearities import PointwiseNonlinearity
from sphere_plugin.nn.norms import SpectralBatchNorm
from sphere_plugin.nn.norms import SphericalBatchNorm
from sphere_plugin.nn.pooling import SpectralPooling
from sphere_plugin.nn.pooling import SphericalPooling
from sphere_plugin.nn.pooling import pooled_grid
from sphere_plugin.nn.readout import invariants
from sphere_plugin.nn.scattering import ScatteringFrontEnd
from sphere_plugin.nn.scattering import ScatteringTransform
from sphere_plugin.nn.spectral import default_lmax
from sphere_plugin.nn.spectral import to_spatial
from sphere_plugin.nn.spectral import to_spectral
