"""Old import path of `sphere_plugin.io.errors`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.errors` in new code.
"""

from sphere_plugin.io.errors import *  # noqa: F401,F403
