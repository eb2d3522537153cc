"""Makes `--help` of a tool list the tool's own flags.

absl's `--help` lists only the key flags of the main module (`sys.argv[0]`:
tools/regrid.py, or the console script), and our tools define their flags in
`sphere_plugin.cli.*` / `sphere_plugin.train.cli`, so `--help` said only "Try
--helpfull". `declare_key_flags(module)` registers a module's flags as key
flags of the main module.
"""

from __future__ import annotations

import sys

from absl import flags


def declare_key_flags(module_name: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Registers the flags defined in `module_name` as key flags of the main module.

  Args:
    module_name: the defining module's `__name__`.
    flag_values: the FlagValues holding them.
  """
  for flag in flag_values.flags_by_module_dict().get(module_name, []):
    flag_values.register_key_flag_for_module(sys.argv[0], flag)
