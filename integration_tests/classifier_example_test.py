"""End to end: the README's gin-configured classifier example trains and is rotation invariant."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_classifier_example_learns_and_ignores_rotations():
  cmd = [sys.executable, 'tools/classifier_example.py', '--gin_file=gin/classifier_small.gin',
         '--gin_param=sphere_plugin.train.train.num_steps=120',
         '--gin_param=sphere_plugin.examples.ClassifierTask.num_train=512',
         '--gin_param=sphere_plugin.examples.ClassifierTask.num_test=128']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  m = re.search(r'test accuracy ([\d.]+) .* predictions unchanged by rotation: ([\d.]+)',
                proc.stdout)
  assert m, proc.stdout
  accuracy, agreement = float(m.group(1)), float(m.group(2))
  # 4 balanced classes: chance is 0.25. A full run (200 steps, 2048 fields)
  # reaches ~0.9, this short one (120 steps, 512 fields) ~0.8.
  assert accuracy > 0.45, proc.stdout
  # Rotating every test field changes almost no prediction (aliasing only).
  assert agreement > 0.9, proc.stdout
