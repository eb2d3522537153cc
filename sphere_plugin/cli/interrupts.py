"""Old import path of `sphere_plugin.io.interrupts`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.interrupts` in new code.
"""

from sphere_plugin.io.interrupts import *  # noqa: F401,F403
