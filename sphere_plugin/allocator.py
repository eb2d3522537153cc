"""Old import path of `sphere_plugin.io.allocator`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.allocator` in new code.
"""

from sphere_plugin.io.allocator import *  # noqa: F401,F403
