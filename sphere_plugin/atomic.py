"""Old import path of `sphere_plugin.io.atomic`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.atomic` in new code.
"""

from sphere_plugin.io.atomic import *  # noqa: F401,F403
