"""Old import path of `sphere_plugin.weather.held_suarez`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.held_suarez` in new code.
"""

from sphere_plugin.weather.held_suarez import *  # noqa: F401,F403
