"""How many cells a code point takes: the one width rule both emulator backends follow.

The pure backend asks :func:`char_width` at run time. The compiled engine never imports this
module (wcwidth's tables cost the daemon about 6 MiB): ``setup.py`` loads this file at build
time and compiles :func:`width_blocks` into the extension as a C table.
"""

from __future__ import annotations

from functools import lru_cache

from wcwidth import wcwidth

BLOCK = 256  # code points per block of the two-stage table
LAST_CODE_POINT = 0x10FFFF

_CELLS = {-1: 1, 0: 0, 1: 1, 2: 2}  # wcwidth's result -> cells (non-printables take one)


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells taken by a code point: 0 combines with the previous cell, else 1 or 2."""
    return _CELLS[wcwidth(ch)]


def width_table(start: int, stop: int) -> bytes:
    """``char_width`` of every code point in [start, stop)."""
    return bytes([_CELLS[wcwidth(chr(c))] for c in range(start, stop)])


def width_blocks() -> tuple[list[int], list[bytes]]:
    """The widths of all of Unicode as (block index per 256 code points, distinct blocks).

    ``width(cp) == blocks[index[cp >> 8]][cp & 0xFF]``. Most blocks are alike (all 1, all 2),
    so the table is about 40 KiB instead of 1.1 MiB, and only the blocks in use are paged in.
    Code points below U+0300 all take one cell.
    """
    index: list[int] = []
    blocks: list[bytes] = []
    seen: dict[bytes, int] = {}
    for start in range(0, LAST_CODE_POINT + 1, BLOCK):
        block = b"\x01" * BLOCK if start < 0x300 else width_table(start, start + BLOCK)
        if block not in seen:
            seen[block] = len(blocks)
            blocks.append(block)
        index.append(seen[block])
    return index, blocks
