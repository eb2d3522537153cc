"""Old import path of `sphere_plugin.io.datasets`, kept so that old code and stored gin configs work.

Import `sphere_plugin.io.datasets` in new code.
"""

from sphere_plugin.io.datasets import *  # noqa: F401,F403
