"""Old import path of `sphere_plugin.molecules.encoder`, kept so that old code and stored gin configs work.

Import `sphere_plugin.molecules.encoder` in new code.
"""

from sphere_plugin.molecules.encoder import *  # noqa: F401,F403
