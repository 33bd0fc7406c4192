"""moodsong.training.allocator: large training buffers come from the reusable heap, not from fresh mmap calls."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Prints whether the setting took effect and how many bytes glibc holds in mmap'ed blocks while a
# 128 MB buffer is alive (mallinfo2's hblkhd): such blocks are unmapped on free and faulted in anew.
PROBE = """
import ctypes, sys
import numpy as np
from moodsong.training.allocator import reuse_freed_memory
ok = reuse_freed_memory() if sys.argv[1] == "on" else False
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
a = np.ones(16 * 2**20)
print(ok, libc.mallinfo2().hblkhd)
"""


def _glibc_has_mallinfo2() -> bool:
    try:
        import ctypes

        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_has_mallinfo2(), reason="glibc only")
def test_reuse_freed_memory_keeps_large_buffers_off_mmap():
    def run(mode):
        run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        out = run.stdout.split()
        return out[0] == "True", int(out[1])

    ok_on, mapped_on = run("on")
    ok_off, mapped_off = run("off")
    assert ok_on and not ok_off
    assert mapped_off >= 128 * 2**20  # by default the buffer is its own mmap'ed block
    assert mapped_on < 16 * 2**20  # with the setting it lives in the heap (the rest: blocks mapped at import)


def test_reuse_freed_memory_is_idempotent():
    from moodsong.training.allocator import reuse_freed_memory

    first = reuse_freed_memory()
    assert reuse_freed_memory() == first == sys.platform.startswith("linux")
