"""Old import path of `sphere_plugin.examples.classifier`, kept so that old code and stored gin configs work.

Import `sphere_plugin.examples.classifier` in new code.
"""

from sphere_plugin.examples.classifier import *  # noqa: F401,F403
