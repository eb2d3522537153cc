"""Old import path of `sphere_plugin.molecules.qm9_task`, kept so that old code and stored gin configs work.

Import `sphere_plugin.molecules.qm9_task` in new code.
"""

from sphere_plugin.molecules.qm9_task import *  # noqa: F401,F403
