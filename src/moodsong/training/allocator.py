"""Memory-allocator settings for training processes.

Training allocates and frees the same large activation buffers at every step. glibc's
``malloc`` serves blocks above its mmap threshold (128 KiB, rising to at most 32 MiB) with
fresh ``mmap`` calls and returns them with ``munmap``, so every step page-faults its buffers
in again: on the 2-core development machine a WaveNet-NADE update (pop_wavenet, 8 x 256
frames) spent two thirds of its time in the kernel and ran 3x slower than with freed memory
kept for reuse (``python bench/allocator.py``).
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory in the heap for reuse (no mmap/munmap per large buffer).

    The process keeps its peak memory until it exits, which suits a training run.
    Returns ``True`` where the setting took effect (Linux with glibc), ``False``
    elsewhere; calling it again is harmless.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: leave it alone
        return False
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
