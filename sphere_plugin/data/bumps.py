"""Old import path of `sphere_plugin.examples.bumps`, kept so that old code and stored gin configs work.

Import `sphere_plugin.examples.bumps` in new code.
"""

from sphere_plugin.examples.bumps import *  # noqa: F401,F403
