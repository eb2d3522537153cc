"""pyproject.toml uses the SPDX license string (PEP 639), which needs setuptools>=77;
the TOML-table form gives a SetuptoolsDeprecationWarning on every install (issue 22.4)."""

import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_license_is_an_spdx_string_and_setuptools_is_new_enough():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)
  assert project['project']['license'] == 'Apache-2.0'
  setuptools = [r for r in project['build-system']['requires'] if r.startswith('setuptools')]
  assert len(setuptools) == 1
  version = re.fullmatch(r'setuptools>=(\d+)(\.\d+)*', setuptools[0].replace(' ', ''))
  assert version and int(version.group(1)) >= 77, setuptools
  # License classifiers may not accompany a license expression (setuptools>=77 refuses).
  assert not any(c.startswith('License ::') for c in project['project'].get('classifiers', []))
