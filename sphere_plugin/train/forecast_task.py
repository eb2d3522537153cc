"""Old import path of `sphere_plugin.weather.forecast_task`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.forecast_task` in new code.
"""

from sphere_plugin.weather.forecast_task import *  # noqa: F401,F403
