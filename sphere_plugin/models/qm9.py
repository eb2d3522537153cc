"""Old import path of `sphere_plugin.molecules.heads`, kept so that old code and stored gin configs work.

Import `sphere_plugin.molecules.heads` in new code.
"""

from sphere_plugin.molecules.heads import *  # noqa: F401,F403
