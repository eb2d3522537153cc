"""Old import path of `sphere_plugin.weather`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather` in new code.
"""

from sphere_plugin.weather import *  # noqa: F401,F403
