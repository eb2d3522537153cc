"""Old import path of `sphere_plugin.weather.inference`, kept so that old code and stored gin configs work.

Import `sphere_plugin.weather.inference` in new code.
"""

from sphere_plugin.weather.inference import *  # noqa: F401,F403
