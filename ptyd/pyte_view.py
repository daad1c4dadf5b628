"""pyte's screen API over a ptyd emulator, for tools and tests written against pyte.

Kept apart from ``ptyd.emulator`` so that the compiled daemon never imports pyte: only code that
asks an emulator for ``.screen`` loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

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

if TYPE_CHECKING:
    from typing import Protocol

    class _Source(Protocol):
        @property
        def generation(self) -> int: ...

        @property
        def icon_name(self) -> str: ...

        def state(self, scrollback: int = -1) -> ScreenState: ...


class CellView(NamedTuple):
    """A cell with pyte's ``Char`` fields and values (colours ``"default"``, a name or hex)."""

    data: str
    fg: str = "default"
    bg: str = "default"
    bold: bool = False
    italics: bool = False
    underscore: bool = False
    strikethrough: bool = False
    reverse: bool = False
    blink: bool = False


class CursorView(NamedTuple):
    x: int
    y: int
    hidden: bool
    attrs: CellView


_PYTE_DECCKM = 1 << 5  # pyte stores private mode n as n << 5 and has no DECCKM constant
# pyte's names: SGR 30-37 and, with "bright", 90-97 (yellow is "brown" there).
_PYTE_NAMES = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")
_CUBE_LEVELS = (0, 95, 135, 175, 215, 255)


def _xterm_256(n: int) -> str:
    """Colours 16-255 of xterm's palette as hex (a 6x6x6 cube, then 24 greys), as pyte has them."""
    if n < 232:
        n -= 16
        levels = (_CUBE_LEVELS[n // 36], _CUBE_LEVELS[n // 6 % 6], _CUBE_LEVELS[n % 6])
    else:
        levels = (8 + 10 * (n - 232),) * 3
    return "".join(f"{level:02x}" for level in levels)


def _pyte_color(color: int) -> str:
    if color & COLOR_RGB:
        return f"{color & 0xFFFFFF:06x}"
    if color & COLOR_INDEXED:
        n = color & 0xFF
        if n < 8:
            return _PYTE_NAMES[n]
        if n < 16:
            return "bright" + _PYTE_NAMES[n - 8]
        return _xterm_256(n)
    return "default"


def _cell_view(text: str, fg: int, bg: int, flags: int, reverse_video: bool) -> CellView:
    return CellView(
        text,
        _pyte_color(fg),
        _pyte_color(bg),
        bool(flags & ATTR_BOLD),
        bool(flags & ATTR_ITALIC),
        bool(flags & ATTR_UNDERLINE),
        bool(flags & ATTR_STRIKE),
        bool(flags & ATTR_REVERSE) or reverse_video,  # pyte marks every cell under DECSCNM
        bool(flags & ATTR_BLINK),
    )


class ScreenView:
    """A live, read-only ``pyte.Screen`` over an emulator: ``display``, ``buffer``, ``cursor``
    (with ``attrs``), ``mode``, ``margins``, ``dirty``, ``tabstops``, ``title``, ...

    It reads the emulator again after each feed or resize, so code written against pyte
    (keep the screen, feed the stream, read the screen) works on either backend.
    """

    def __init__(self, emulator: _Source) -> None:
        self._emulator = emulator
        self._generation = -1
        self._buffer: tuple[tuple[CellView, ...], ...] = ()
        self._dirty: set[int] = set()

    def _state(self) -> ScreenState:
        """The emulator's screen, read again only when it changed; marks the rows that did."""
        if self._emulator.generation != self._generation:
            self._generation = self._emulator.generation
            self._last = self._emulator.state(0)
            reverse_video = self._last.modes["reverse_video"]
            buffer = tuple(
                tuple(_cell_view(*cell, reverse_video) for cell in row) for row in self._last.lines
            )
            if len(buffer) != len(self._buffer):
                self._dirty.update(range(len(buffer)))
            else:
                self._dirty.update(y for y, row in enumerate(buffer) if row != self._buffer[y])
            self._buffer = buffer
        return self._last

    @property
    def columns(self) -> int:
        return self._state().cols

    @property
    def lines(self) -> int:
        return self._state().rows

    @property
    def buffer(self) -> tuple[tuple[CellView, ...], ...]:
        """Rows of cells, read-only; a wide character's right half is a cell with empty
        ``data``."""
        self._state()
        return self._buffer

    @property
    def default_char(self) -> CellView:
        """A blank cell, reverse under DECSCNM as pyte has it."""
        return CellView(" ", reverse=self._state().modes["reverse_video"])

    @property
    def display(self) -> list[str]:
        self._state()
        return ["".join(cell.data for cell in row) for row in self._buffer]

    @property
    def dirty(self) -> set[int]:
        """Rows changed since the caller last cleared this set (all of them at first)."""
        self._state()
        return self._dirty

    @property
    def cursor(self) -> CursorView:
        state = self._state()
        fg, bg, flags = state.modes["attrs"]
        attrs = _cell_view(" ", fg, bg, flags, state.modes["reverse_video"])
        return CursorView(state.cursor_x, state.cursor_y, not state.cursor_visible, attrs)

    @property
    def margins(self) -> pyte.screens.Margins | None:
        """None while the scroll region is the whole screen, as pyte has it."""
        state = self._state()
        if (state.scroll_top, state.scroll_bottom) == (0, state.rows - 1):
            return None
        return pyte.screens.Margins(state.scroll_top, state.scroll_bottom)

    @property
    def tabstops(self) -> set[int]:
        return set(self._state().tabs) - {0}  # pyte does not list column 0

    @property
    def title(self) -> str:
        return self._state().title

    @property
    def icon_name(self) -> str:
        return self._emulator.icon_name

    @property
    def mode(self) -> set[int]:
        state = self._state()
        flags = {
            pyte.modes.DECAWM: state.modes["autowrap"],
            pyte.modes.DECTCEM: state.cursor_visible,
            pyte.modes.DECOM: state.modes["origin"],
            pyte.modes.IRM: state.modes["insert"],
            pyte.modes.LNM: state.modes["lnm"],
            pyte.modes.DECSCNM: state.modes["reverse_video"],
            _PYTE_DECCKM: state.modes["cursor_keys"],
        }
        return {mode for mode, on in flags.items() if on}
