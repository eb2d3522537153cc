"""Old import path of `sphere_plugin.weather.evaluation`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.evaluation` in new code.
"""

from sphere_plugin.weather.evaluation import *  # noqa: F401,F403
