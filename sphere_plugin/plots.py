"""Old import path of `sphere_plugin.weather.plots`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.plots` in new code.
"""

from sphere_plugin.weather.plots import *  # noqa: F401,F403
