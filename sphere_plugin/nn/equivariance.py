"""Old import path of `sphere_plugin.testing.equivariance`, kept so that old code and stored gin configs work.

Import `sphere_plugin.testing.equivariance` in new code.
"""

from sphere_plugin.testing.equivariance import *  # noqa: F401,F403
