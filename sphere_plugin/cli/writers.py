"""Old import path of `sphere_plugin.io.writers`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.writers` in new code.
"""

from sphere_plugin.io.writers import *  # noqa: F401,F403
