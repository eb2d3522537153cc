"""Train a gin-configured task (see sphere_plugin/train/cli.py and loop.py).

    python tools/train.py --gin_file=gin/toy.gin --workdir=/tmp/toy
"""

from sphere_plugin.train import cli

if __name__ == '__main__':
  cli.run()
