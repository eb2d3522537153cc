"""`--help` of every tool lists the tool's own flags (issue 22.3), not only
'Try --helpfull'."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('tool, expected', [
    ('regrid.py', ['--input', '--output', '--grid', '--method', '--chunk']),
    ('train.py', ['--gin_file', '--gin_param', '--workdir']),
    ('evaluate.py', ['--workdir', '--output_dir', '--split']),
])
def test_help_lists_the_tools_flags(tool, expected):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])}
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', tool), '--help'],
                        capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
  assert 'Try --helpfull' in proc.stdout, proc.stderr  # absl's --help (exit status 1)
  for flag in expected:
    assert f'  {flag}' in proc.stdout, (flag, proc.stdout)
