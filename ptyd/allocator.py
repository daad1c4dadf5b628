"""glibc malloc settings for a long-running daemon, so that freed memory goes back to the system.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); from then on
bursts (flood batches, snapshots, big frames) come from the heap, and heap memory freed in the
middle stays with the process. Every thread that allocates may also get an arena of its own.
In a soak of floods and attach churn (``python -m benchmarks.soak``) this grew the daemon from
31 to about 165 MiB where it settled; a fixed threshold and two arenas remove the growth.
Elsewhere (musl, other platforms) this does nothing.
"""

from __future__ import annotations

import ctypes

MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed: large blocks are mmap'd
ARENA_MAX = 2  # the loop thread and the worker threads share at most two arenas

_M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
_M_ARENA_MAX = -8


def tune() -> bool:
    """Apply the settings (call before threads start); True if this libc took them."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_ARENA_MAX, ARENA_MAX)
    )
