"""Evaluate a trained forecaster (see sphere_plugin/cli/evaluate.py).

    python tools/evaluate.py --workdir=runs/forecaster_small
"""

from sphere_plugin.cli import evaluate

if __name__ == '__main__':
  evaluate.run()
