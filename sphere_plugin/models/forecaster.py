"""Old import path of `sphere_plugin.weather.forecaster`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.forecaster` in new code.
"""

from sphere_plugin.weather.forecaster import *  # noqa: F401,F403
