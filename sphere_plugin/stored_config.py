"""Old import path of `sphere_plugin.io.stored_config`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.stored_config` in new code.
"""

from sphere_plugin.io.stored_config import *  # noqa: F401,F403
