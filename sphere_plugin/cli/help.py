"""Old import path of `sphere_plugin.io.flag_help`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.flag_help` in new code.
"""

from sphere_plugin.io.flag_help import *  # noqa: F401,F403
