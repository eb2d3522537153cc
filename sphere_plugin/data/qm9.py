"""Old import path of `sphere_plugin.molecules.qm9`, kept so that old code and stored gin configs work.

Import `sphere_plugin.molecules.qm9` in new code.
"""

from sphere_plugin.molecules.qm9 import *  # noqa: F401,F403
