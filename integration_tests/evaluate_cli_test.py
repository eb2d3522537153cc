"""tools/evaluate.py reports any failure in one line (issue 17, item 9)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_evaluate(*args):
  """Runs tools/evaluate.py with this checkout first on PYTHONPATH."""
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])}
  return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'evaluate.py'), *args],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_a_broken_workdir_is_one_line_and_verbose_adds_the_traceback(tmp_path):
  """A gin SyntaxError (not a ValueError) used to escape as a traceback."""
  for name, text in (('config.gin', 'this is not gin (\n'), ('normalization.json', '{}'),
                     ('template.nc', '')):
    (tmp_path / name).write_text(text)
  proc = run_evaluate(f'--workdir={tmp_path}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [  # the stored config's name and line
      "evaluate: error: SyntaxError: Couldn't parse statement, expected ':' or '='. "
      "(config.gin, line 1)"]
  proc = run_evaluate(f'--workdir={tmp_path}', '--verbose')
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and 'Traceback (most recent call last):' in lines
  assert lines[-1].startswith('evaluate: error: SyntaxError')
