"""Old import path of `sphere_plugin.io.safe_pickle`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.safe_pickle` in new code.
"""

from sphere_plugin.io.safe_pickle import *  # noqa: F401,F403
