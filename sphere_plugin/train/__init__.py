"""Data-parallel training: the Task protocol and the gin-configured loop.

    from sphere_plugin import train
    state = train.train('/tmp/run', task=MyTask(), num_steps=1000)
    variables, step = train.restore('/tmp/run')   # inference, from config.gin

Modules: `loop` (the loop and what a run writes into its workdir), `optimizers`,
`checkpoints`, `workdir` (stored config, rebuilding a run), `batching` (seeded
batches, prefetch), `state`, `task` (the Task protocol), `toy` (a test task);
`tools/train.py` is the command line.
"""

from sphere_plugin.train.checkpoints import checkpoint_steps
from sphere_plugin.train.checkpoints import CheckpointCorruptError
from sphere_plugin.train.checkpoints import CheckpointMismatchError
from sphere_plugin.train.checkpoints import latest_variables
from sphere_plugin.train.loop import create_state
from sphere_plugin.train.loop import make_mesh
from sphere_plugin.train.loop import make_train_step
from sphere_plugin.train.loop import train
from sphere_plugin.train.optimizers import optimizer
from sphere_plugin.train.state import TrainState
from sphere_plugin.train.workdir import restore
from sphere_plugin.train.workdir import task_from_config
from sphere_plugin.train.task import as_task
from sphere_plugin.train.task import Task
