"""Data-parallel training: the Task protocol and the gin-configured loop.

    from sphere_plugin import train
    state = train.train('/tmp/run', task=MyTask(), num_steps=1000)
    variables, step = train.restore('/tmp/run')   # inference, from config.gin

See `sphere_plugin/train/loop.py` for what a run writes into its workdir, and
`tools/train.py` for the command line.
"""

from sphere_plugin.train.loop import checkpoint_steps
from sphere_plugin.train.loop import create_state
from sphere_plugin.train.loop import latest_variables
from sphere_plugin.train.loop import make_mesh
from sphere_plugin.train.loop import make_train_step
from sphere_plugin.train.loop import optimizer
from sphere_plugin.train.loop import restore
from sphere_plugin.train.loop import task_from_config
from sphere_plugin.train.loop import train
from sphere_plugin.train.loop import TrainState
from sphere_plugin.train.task import as_task
from sphere_plugin.train.task import Task
