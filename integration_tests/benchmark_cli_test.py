"""tools/benchmark.py --suites=reference without the reference implementation.

The reference (google-research/spherical-cnn) is not a dependency: when it
cannot be imported from --reference_path the suite must say why and where to
get it, on one line, and be skipped with exit status 0. No test needs the
reference itself.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*flags, env_extra=None):
  env = {k: v for k, v in os.environ.items() if k != 'SPHERE_PLUGIN_REFERENCE_PATH'}
  env.update(JAX_PLATFORMS='cpu', **(env_extra or {}))
  # --libraries=sphere_plugin: no ducc0/s2fft imports, which this suite does not use.
  return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'),
                         '--suites=reference', '--libraries=sphere_plugin', '--repeats=1',
                         *flags],
                        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def _skip_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('reference suite skipped')]


def test_reference_suite_is_skipped_when_the_path_has_no_reference(tmp_path):
  proc = _run(f'--reference_path={tmp_path}')
  assert proc.returncode == 0, proc.stderr
  lines = _skip_lines(proc.stderr)
  assert len(lines) == 1, proc.stderr
  assert str(tmp_path) in lines[0]
  assert 'https://github.com/google-research/spherical-cnn' in lines[0]
  assert '--reference_path=DIR' in lines[0]
  assert 'Reference suite skipped' in proc.stdout
  assert 'ours/reference' not in proc.stdout


def test_reference_path_defaults_to_the_environment_variable(tmp_path):
  proc = _run(env_extra={'SPHERE_PLUGIN_REFERENCE_PATH': str(tmp_path / 'missing')})
  assert proc.returncode == 0, proc.stderr
  lines = _skip_lines(proc.stderr)
  assert len(lines) == 1 and str(tmp_path / 'missing') in lines[0], proc.stderr
