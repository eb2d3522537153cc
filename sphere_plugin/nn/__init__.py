"""Rotation-equivariant spherical CNN layers (flax.linen, gin-configurable).

Layer tensors: spatial (*batch, *grid.shape, spin, channel) and spectral
(*batch, lmax+1, 2*lmax+1, spin, channel), complex. See README "Layers".
"""

from sphere_plugin.nn.blocks import SphericalCNN
from sphere_plugin.nn.blocks import SpinSphericalResidualBlock
from sphere_plugin.nn.conv import SpinSphericalConv
from sphere_plugin.nn.graph import apply_laplacian
from sphere_plugin.nn.graph import dense_laplacian
from sphere_plugin.nn.graph import kernel_width_for
from sphere_plugin.nn.graph import laplacian_lmax
from sphere_plugin.nn.graph import sphere_graph
from sphere_plugin.nn.graph import SphereGraph
from sphere_plugin.nn.graph_layers import ChebConv
from sphere_plugin.nn.graph_layers import GraphFrontEnd
from sphere_plugin.nn.graph_layers import GraphUNet
from sphere_plugin.nn.graph_layers import healpix_pool
from sphere_plugin.nn.graph_layers import healpix_unpool
from sphere_plugin.nn.graph_layers import HealpixPooling
from sphere_plugin.nn.graph_layers import HealpixUnpooling
from sphere_plugin.nn.graph_layers import to_nested
from sphere_plugin.nn.graph_layers import to_ring
from sphere_plugin.nn.nonlinearities import apply_nonlinearity
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
from sphere_plugin.nn.spectral import PartlyKnown
from sphere_plugin.nn.spectral import spin_coefficients
from sphere_plugin.nn.spectral import to_spatial
from sphere_plugin.nn.spectral import to_spectral
