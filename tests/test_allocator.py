"""The daemon's glibc malloc settings: after a large block is freed, bursts are still mmap'd
(and so returned to the system when freed) instead of growing the heap."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes, sys
from ptyd import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert allocator.tune()
big = bytearray(4 << 20)  # freed: glibc's dynamic threshold would now rise to 4 MiB
del big
before = libc.mallinfo2().hblks
# 1 MiB each: above the fixed threshold, under the raised one, and larger than any free heap
# chunk left by start-up (Debian's own python3 serves one 300 KiB block from such a chunk).
held = [bytearray(1 << 20) for _ in range(4)]
print(libc.mallinfo2().hblks - before)
"""


def mmapped_blocks(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_bursts_stay_mmapped_after_a_large_free() -> None:
    assert mmapped_blocks("plain") == 0  # glibc's default: the heap serves them from now on
    assert mmapped_blocks("tuned") == 4
