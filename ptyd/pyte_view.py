"""pyte's screen API over a ptyd screen state, for tools and tests written against pyte.

Kept apart from ``ptyd.emulator`` so that the compiled daemon never imports pyte: only code that
asks an emulator for ``.screen`` loads it.
"""

from __future__ import annotations

from typing import NamedTuple

import pyte

from .emulator import (
    ATTR_BLINK,
    ATTR_BOLD,
    ATTR_ITALIC,
    ATTR_REVERSE,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    COLOR_INDEXED,
    COLOR_RGB,
    ScreenState,
)


class CursorView(NamedTuple):
    x: int
    y: int
    hidden: bool


class CellView(NamedTuple):
    """A cell with pyte's ``Char`` field names (colours as ``"default"``, a name or hex)."""

    data: str
    fg: str
    bg: str
    bold: bool
    italics: bool
    underscore: bool
    strikethrough: bool
    reverse: bool
    blink: bool


_PYTE_DECCKM = 1 << 5  # pyte stores private mode n as n << 5 and has no DECCKM constant
_PYTE_NAMES = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")


def _pyte_color(color: int) -> str:
    if color & COLOR_RGB:
        return f"{color & 0xFFFFFF:06x}"
    if color & COLOR_INDEXED:
        n = color & 0xFF
        if n < 8:
            return _PYTE_NAMES[n]
        if n < 16:
            return "bright" + _PYTE_NAMES[n - 8].replace("brown", "yellow")
        return str(n)
    return "default"


class ScreenView:
    """A read-only, pyte-compatible view (``display``, ``cursor``, ``buffer``, ``mode``, ...).

    Tests and tools written against ``pyte.Screen`` work unchanged on either backend.
    """

    def __init__(self, state: ScreenState) -> None:
        self.columns = state.cols
        self.lines = state.rows
        self.cursor = CursorView(state.cursor_x, state.cursor_y, not state.cursor_visible)
        self.title = state.title
        self.margins = pyte.screens.Margins(state.scroll_top, state.scroll_bottom)
        self.buffer = [
            [
                CellView(
                    text,
                    _pyte_color(fg),
                    _pyte_color(bg),
                    bool(flags & ATTR_BOLD),
                    bool(flags & ATTR_ITALIC),
                    bool(flags & ATTR_UNDERLINE),
                    bool(flags & ATTR_STRIKE),
                    bool(flags & ATTR_REVERSE),
                    bool(flags & ATTR_BLINK),
                )
                for text, fg, bg, flags in row
            ]
            for row in state.lines
        ]
        self.display = ["".join(cell.data for cell in row) for row in self.buffer]
        flags = {
            pyte.modes.DECAWM: state.modes["autowrap"],
            pyte.modes.DECTCEM: state.cursor_visible,
            pyte.modes.DECOM: state.modes["origin"],
            pyte.modes.IRM: state.modes["insert"],
            pyte.modes.LNM: state.modes["lnm"],
            pyte.modes.DECSCNM: state.modes["reverse_video"],
            _PYTE_DECCKM: state.modes["cursor_keys"],
        }
        self.mode = {mode for mode, on in flags.items() if on}
