"""retain_freed_memory: freed blocks are reused instead of faulted in again.

Checked in a child process (the setting is process-wide) by counting the
kernel's minor page faults while a 48 MiB buffer is allocated, written and
freed repeatedly: glibc's default mmaps it afresh each time (one fault per
4 KiB page, ~12,000 per round); once retained, later rounds reuse the pages.
"""

import subprocess
import sys

import pytest

_CHILD = r'''
import ctypes
from sphere_plugin.io import allocator

libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def faults():
  return int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[7])

def rounds(n=5):
  start = faults()
  for _ in range(n):
    p = libc.malloc(48 << 20)  # as XLA allocates (numpy would ask for huge pages)
    ctypes.memset(p, 1, 48 << 20)
    libc.free(p)
  return (faults() - start) / n

before = rounds()
applied = allocator.retain_freed_memory()
rounds(1)  # the first round after the switch faults the pages in once
after = rounds()
allocator.retain_freed_memory(False)
print(applied, before, after)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='needs /proc and glibc')
def test_retained_memory_is_reused_without_page_faults():
  out = subprocess.run([sys.executable, '-c', _CHILD], capture_output=True, text=True,
                       check=True).stdout.split()
  applied, before, after = out[0] == 'True', float(out[1]), float(out[2])
  assert applied
  pages = (48 << 20) // 4096
  assert before > 0.9 * pages  # the default: every round faults every page
  assert after < 0.01 * pages
