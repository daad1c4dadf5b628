"""The pure-Python backend: pyte's ``Screen`` and ``ByteStream``, corrected where pyte differs.

``PTYD_PURE=1`` (or a missing compiled module) selects :class:`PyteEmulator`. It is pyte itself,
used as a library (LGPL-3.0: imported and subclassed, never copied): :class:`PyteStream` is a
``pyte.ByteStream`` (its incremental UTF-8 decoder, its ``feed`` loop that hands whole runs of
text to ``draw``, its event tables and parser reset), and :class:`PyteScreen` is a
``pyte.Screen`` (its buffer of sparse lines with a default cell, cursor, margins, mode set with
pyte's mode numbers, tab stops, charsets, title and icon name). Methods are overridden only
where pyte lacks a feature or differs from xterm and tmux; docs/emulator.md lists each
difference and its correction. The compiled engine (``ptyd._vt``) implements the same
behaviour in C; the property tests compare the two cell by cell.

pyte raises out of ``feed`` on some valid input, so nothing here trusts a handler: the parser
and ``draw`` catch what a handler raises, count it in ``errors_caught`` and carry on from the
ground state, and :meth:`PyteEmulator.feed` guards the whole call, so no output can ever raise
into the daemon.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict, deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, ClassVar

import pyte
from pyte import modes as mo
from pyte.screens import Cursor, Margins, StaticDefaultDict

from .emulator import (
    ATTR_BLINK,
    ATTR_BOLD,
    ATTR_CONCEAL,
    ATTR_FAINT,
    ATTR_ITALIC,
    ATTR_REVERSE,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    COLOR_INDEXED,
    COLOR_RGB,
    DA1_REPLY,
    DA2_REPLY,
    DEC_GRAPHICS,
    MAX_COMBINING,
    MAX_MARKS,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_REPLIES,
    MAX_STRING,
    MAX_SUBPARAMS,
    MOUSE_ENCODINGS,
    MOUSE_MODES,
    Cell,
    Row,
    ScreenState,
    clamp_dimension,
    render_ansi,
    render_json,
    render_text,
    sanitize_title,
    trim_row,
)
from .pyte_view import ScreenView
from .widths import char_width

__all__ = ["PyteEmulator", "PyteScreen", "PyteStream"]

BLANK: Cell = (" ", 0, 0, 0)

# pyte's mode numbers, bound once (module attribute lookups cost per printed character).
IRM, LNM, DECAWM, DECOM = mo.IRM, mo.LNM, mo.DECAWM, mo.DECOM
DECTCEM, DECSCNM = mo.DECTCEM, mo.DECSCNM
# Private modes live in pyte's mode set as ``mode << 5``, next to pyte's own constants.
DECCKM = 1 << 5
DECNKM = 66 << 5  # keypad application mode; ESC = and ESC > set the same flag
FOCUS_EVENTS = 1004 << 5
BRACKETED_PASTE = 2004 << 5
SYNCHRONIZED_OUTPUT = 2026 << 5
_FLAG_MODES = {
    1: DECCKM,
    5: DECSCNM,
    66: DECNKM,
    1004: FOCUS_EVENTS,
    2004: BRACKETED_PASTE,
    2026: SYNCHRONIZED_OUTPUT,
}

# pyte's VT100_MAP draws DEC graphics "h" as U+2591; xterm (and ptyd's shared table) as U+2424.
DEC_TABLE = str.maketrans({chr(code): ch for code, ch in DEC_GRAPHICS.items()})
ASCII_TABLE: dict[int, str] = {}

_ASCII_OR_NOT = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")

PackedRow = tuple[str, int, int, int] | tuple[Cell, ...]
Saved = tuple[int, int, int, int, int, bool, list[str], int]


class PenCursor(Cursor):
    """pyte's cursor; ``attrs`` is a blank ptyd cell that carries the current attributes."""

    __slots__ = ()
    attrs: Cell  # type: ignore[assignment]


class Line(StaticDefaultDict[int, Cell]):
    """A pyte buffer line that also records a soft wrap.

    Invariant: a line holds every column, inserted in column order (``_new_line``, ``_store``),
    so ``values()`` is the row and pyte's Python-level ``__missing__`` is never called.
    """

    wrapped = False


class PyteScreen(pyte.Screen):
    """``pyte.Screen`` with xterm's semantics where pyte's differ, and what pyte lacks.

    Cells are ptyd's shared encoding ``(text, fg, bg, flags)`` (pyte's ``Char`` has no faint,
    conceal or indexed colours); ``cursor.attrs`` is a blank cell with the current attributes.
    Kept from pyte unchanged: ``linefeed``, ``backspace``, ``tab``, ``cursor_up1``,
    ``cursor_down1``, ``shift_in``, ``shift_out``, ``set_tab_stop``, ``clear_tab_stop``,
    ``report_device_status`` (DSR 5 and 6), ``bell``, ``debug``, ``ensure_hbounds``.
    """

    cursor: PenCursor
    margins: Margins  # never None here: pyte's None ("whole screen") is stored as the numbers

    def __init__(self, columns: int, lines: int, scrollback: int) -> None:
        self.scrollback_limit = scrollback
        self.history: deque[PackedRow] = deque(maxlen=scrollback)
        self.replies = bytearray()
        self.marks: deque[tuple[str, int, int]] = deque(maxlen=MAX_MARKS)
        self.errors_caught = 0
        super().__init__(columns, lines)  # calls reset()
        self.title = self.icon_name = ""
        self.margins = Margins(0, lines - 1)  # pyte's __init__ leaves None after reset()

    # -- state pyte lacks: pending wrap, the alternate screen, per-screen DECSC ---------------
    @property
    def default_char(self) -> Cell:  # type: ignore[override]
        # DECSCNM is a screen-wide flag in xterm; pyte marks every cell reverse instead.
        return BLANK

    def reset(self) -> None:
        """RIS (and construction), which forgets the scrollback too (xterm). pyte's reset also
        clears the title, makes G1 the DEC graphics set, sets no tab stop at column 0 and leaves
        margins unset."""
        self.history.clear()
        self._blank_row = dict.fromkeys(range(self.columns), BLANK)
        self.buffer: defaultdict[int, Line] = defaultdict(self._new_line)  # type: ignore[assignment]
        self.other_buffer: defaultdict[int, Line] = defaultdict(self._new_line)
        self.is_alternate = False
        self.margins = Margins(0, self.lines - 1)
        self.mode = {DECAWM, DECTCEM}
        self.charset = 0
        self.designators = ["B", "B"]
        self.g0_charset = self.g1_charset = ASCII_TABLE  # type: ignore[assignment]
        self.tabstops = set(range(0, self.columns, 8))
        self.cursor = PenCursor(0, 0, BLANK)  # type: ignore[arg-type]
        self.is_wrap_pending = False
        self.saved: list[Saved | None] = [None, None]
        self.last_char = ""
        self.mouse = 0
        self.mouse_encoding = "default"
        self.cursor_shape = 0
        self.saved_columns = None

    @property
    def display(self) -> list[str]:
        """pyte's ``display``: one string per row, a wide character once."""
        cols = self.columns
        return ["".join(line[x][0] for x in range(cols)) for line in self._lines()]

    def _lines(self) -> list[Line]:
        return [self.buffer[y] for y in range(self.lines)]

    def _new_line(self, bg: int = 0, text: str = " ") -> Line:
        """A blank line in the background colour ``bg`` (BCE), or a line of ``text``."""
        if bg == 0 and text == " ":
            line = Line(BLANK)
            line.update(self._blank_row)
        else:
            cell = (text, 0, bg, 0)
            line = Line(cell)
            line.update(dict.fromkeys(range(self.columns), cell))
        return line

    @staticmethod
    def _cells(line: Line) -> list[Cell]:
        return list(line.values())

    # -- printing: pending wrap, wide and combining characters, DEC graphics, insert mode -----
    def draw(self, data: str) -> None:
        """Print a run of printable text (the stream never passes controls here)."""
        try:
            table = self.g1_charset if self.charset else self.g0_charset
            if table is DEC_TABLE or IRM in self.mode:
                for ch in data.translate(table):
                    self._draw_char(ch)
            elif data.isascii():
                self._draw_ascii(data)
            else:
                for run in _ASCII_OR_NOT.findall(data):
                    if len(run) > 8 and run.isascii():
                        self._draw_ascii(run)  # worth its setup only for longer runs
                    else:
                        for ch in run:
                            self._draw_char(ch)
        except Exception:
            self.errors_caught += 1

    def _draw_ascii(self, text: str) -> None:
        """Printable ASCII, a line slice at a time (the same result as ``_draw_char`` each)."""
        cols, i, n = self.columns, 0, len(text)
        cursor = self.cursor
        _, fg, bg, flags = cursor.attrs
        autowrap = DECAWM in self.mode
        repeat = itertools.repeat
        while i < n:
            if self.is_wrap_pending:
                self._wrap()
            x, line = cursor.x, self.buffer[cursor.y]
            k = min(n - i, cols - x)
            if x and line[x][0] == "":
                line[x - 1] = BLANK
            if x + k < cols and line[x + k][0] == "":
                line[x + k] = BLANK
            chars = text[i : i + k]
            cells = zip(chars, repeat(fg), repeat(bg), repeat(flags), strict=False)
            line.update(zip(range(x, x + k), cells, strict=False))
            i += k
            x += k
            if x >= cols:
                cursor.x = cols - 1
                self.is_wrap_pending = autowrap
                if not autowrap and i < n:
                    # The rest overwrites the last column.
                    line[cols - 1] = (text[-1], fg, bg, flags)
                    i = n
            else:
                cursor.x = x
        self.last_char = text[-1]

    def _draw_char(self, ch: str) -> None:
        width = char_width(ch) if ord(ch) >= 0x300 else 1
        if width == 0:
            self._combine(ch)
            return
        cols, cursor = self.columns, self.cursor
        if width == 2 and cols < 2:
            return
        if self.is_wrap_pending:
            self._wrap()
        if width == 2 and cursor.x == cols - 1:
            if DECAWM in self.mode:
                self._wrap()
            else:
                cursor.x = cols - 2
        x, line = cursor.x, self.buffer[cursor.y]
        if IRM in self.mode:
            row = self._cells(line)
            _split_middle(row, x)
            row[x:] = ([BLANK] * width + row[x:])[: cols - x]
            _clip_right(row)
            _store(line, row)
        # self._split(line, x), inlined: this runs for every non-ASCII character.
        if x and line[x][0] == "":
            line[x - 1] = line[x] = BLANK
        elif x + 1 < cols and line[x + 1][0] == "":
            line[x + 1] = BLANK
        _, fg, bg, flags = cursor.attrs
        if width == 2:
            self._split(line, x + 1)
            line[x + 1] = ("", fg, bg, flags)
        line[x] = (ch, fg, bg, flags)
        self.last_char = ch
        x += width
        if x >= cols:
            cursor.x = cols - 1
            self.is_wrap_pending = DECAWM in self.mode
        else:
            cursor.x = x

    def _combine(self, ch: str) -> None:
        """A zero-width character joins the previous cell as typed (pyte NFC-normalises and
        drops non-combining ones); at most MAX_COMBINING marks per cell."""
        # While a wrap is pending the last character written is at the last column, even when
        # CBT has moved the cursor away from it since (xterm).
        x = self.columns - 1 if self.is_wrap_pending else self.cursor.x - 1
        if x < 0:
            return
        line = self.buffer[self.cursor.y]
        if line[x][0] == "" and x > 0:
            x -= 1
        text, fg, bg, flags = line[x]
        if text and len(text) <= MAX_COMBINING:
            line[x] = (text + ch, fg, bg, flags)

    def _split(self, line: Line | Row, x: int) -> None:
        """Blank the other half of a wide character that a write to column x cuts in two."""
        if line[x][0] == "" and x > 0:
            line[x - 1] = line[x] = BLANK
        elif x + 1 < self.columns and line[x + 1][0] == "":
            line[x + 1] = BLANK

    def _wrap(self) -> None:
        self.buffer[self.cursor.y].wrapped = True
        self.is_wrap_pending = False
        self.cursor.x = 0
        self._index()

    def repeat_last_character(self, count: int = 0) -> None:
        """REP (pyte lacks it): the preceding graphic character, if nothing came in between."""
        if self.last_char:
            for _ in range(min(count or 1, self.columns * self.lines)):
                self._draw_char(self.last_char)

    # -- cursor movement: every move clears a pending wrap (pyte has none to clear) -----------
    def carriage_return(self) -> None:
        self.is_wrap_pending = False
        super().carriage_return()

    def cursor_back(self, count: int | None = None) -> None:
        self.is_wrap_pending = False
        super().cursor_back(count)

    def cursor_forward(self, count: int | None = None) -> None:
        self.is_wrap_pending = False
        super().cursor_forward(count)

    def cursor_to_column(self, column: int | None = None) -> None:
        self.is_wrap_pending = False
        super().cursor_to_column(column)

    def cursor_to_line(self, line: int | None = None) -> None:
        self.is_wrap_pending = False
        super().cursor_to_line(line)

    def cursor_up(self, count: int | None = None) -> None:
        """CUU stops at the top margin only from inside the region (pyte: always)."""
        self.is_wrap_pending = False
        top = self.margins.top if self.cursor.y >= self.margins.top else 0
        self.cursor.y = max(self.cursor.y - (count or 1), top)

    def cursor_down(self, count: int | None = None) -> None:
        """CUD stops at the bottom margin only from inside the region (pyte: always)."""
        self.is_wrap_pending = False
        bottom = self.margins.bottom if self.cursor.y <= self.margins.bottom else self.lines - 1
        self.cursor.y = min(self.cursor.y + (count or 1), bottom)

    def cursor_line_relative(self, count: int | None = None) -> None:
        """VPR, bounded by the screen, or by the region in origin mode (pyte maps it to CUD,
        bounded by the margins whenever the cursor is inside them)."""
        self.is_wrap_pending = False
        bottom = self.margins.bottom if DECOM in self.mode else self.lines - 1
        self.cursor.y = min(self.cursor.y + (count or 1), bottom)

    def cursor_position(self, line: int | None = None, column: int | None = None) -> None:
        """CUP/HVP; in origin mode a row past the region is clamped (pyte ignores the move)."""
        self._goto((column or 1) - 1, (line or 1) - 1)

    def _goto(self, x: int, y: int) -> None:
        self.is_wrap_pending = False
        if DECOM in self.mode:
            y = min(y + self.margins.top, self.margins.bottom)
        self.cursor.x = min(max(x, 0), self.columns - 1)
        self.cursor.y = min(max(y, 0), self.lines - 1)

    def cursor_forward_tab(self, count: int | None = None) -> None:
        """CHT (pyte lacks it): pyte's ``tab`` n times; like HT it keeps a pending wrap."""
        for _ in range(min(count or 1, self.columns)):
            self.tab()

    def cursor_back_tab(self, count: int | None = None) -> None:
        """CBT (pyte lacks it); like HT it keeps a pending wrap (xterm), here away from the
        last column: the next printable character still wraps first."""
        x = self.cursor.x
        for _ in range(min(count or 1, self.columns)):
            x -= 1
            while x > 0 and x not in self.tabstops:
                x -= 1
            x = max(x, 0)
        self.cursor.x = x

    def set_margins(self, top: int | None = None, bottom: int | None = None) -> None:
        """DECSTBM; without parameters it resets the region and homes the cursor (pyte does
        not home)."""
        first = (top or 1) - 1
        last = min(bottom or self.lines, self.lines) - 1
        if first < last:
            self.margins = Margins(first, last)
            self._goto(0, 0)

    # -- scrolling: BCE, scrollback, and rows outside the region (pyte moves them wrongly) ----
    def index(self) -> None:
        self.is_wrap_pending = False
        self._index()

    def _index(self) -> None:
        top, bottom = self.margins
        if self.cursor.y == bottom:
            self._scroll_up(top, bottom, 1)
        elif self.cursor.y < self.lines - 1:
            self.cursor.y += 1

    def reverse_index(self) -> None:
        self.is_wrap_pending = False
        top, bottom = self.margins
        if self.cursor.y == top:
            self._scroll_down(top, bottom, 1)
        elif self.cursor.y > 0:
            self.cursor.y -= 1

    def next_line(self) -> None:
        """NEL: CR and index (pyte maps ESC E to LF, which keeps the column)."""
        self.index()
        self.cursor.x = 0

    def scroll_up(self, count: int | None = None) -> None:
        """SU (pyte lacks it); lines leaving the top of the screen go to the scrollback."""
        self._scroll_up(self.margins.top, self.margins.bottom, count or 1)

    def scroll_down(self, *params: int) -> None:
        """SD (pyte lacks it); with more than one parameter it is xterm's mouse tracking."""
        if len(params) == 1:
            self._scroll_down(self.margins.top, self.margins.bottom, params[0] or 1)

    def _scroll_up(self, top: int, bottom: int, n: int, keep: bool = True) -> None:
        n = min(n, bottom - top + 1)
        buffer = self.buffer
        if keep and top == 0 and not self.is_alternate and self.scrollback_limit:
            self.history.extend(_pack(self._cells(buffer[y])) for y in range(n))
        for y in range(top, bottom + 1 - n):
            buffer[y] = buffer[y + n]
        bg = self.cursor.attrs[2]
        for y in range(bottom + 1 - n, bottom + 1):
            buffer[y] = self._new_line(bg)

    def _scroll_down(self, top: int, bottom: int, n: int) -> None:
        n = min(n, bottom - top + 1)
        buffer = self.buffer
        for y in range(bottom, top + n - 1, -1):
            buffer[y] = buffer[y - n]
        bg = self.cursor.attrs[2]
        for y in range(top, top + n):
            buffer[y] = self._new_line(bg)

    def insert_lines(self, count: int | None = None) -> None:
        if self.margins.top <= self.cursor.y <= self.margins.bottom:
            self._scroll_down(self.cursor.y, self.margins.bottom, count or 1)
            self.cursor.x = 0
            self.is_wrap_pending = False

    def delete_lines(self, count: int | None = None) -> None:
        if self.margins.top <= self.cursor.y <= self.margins.bottom:
            self._scroll_up(self.cursor.y, self.margins.bottom, count or 1, keep=False)
            self.cursor.x = 0
            self.is_wrap_pending = False

    # -- erasing and editing: BCE on every erased cell, wide characters never split -----------
    def _erase_cells(self, y: int, start: int, stop: int) -> None:
        if start >= stop:
            return
        line = self.buffer[y]
        if start > 0:
            self._split(line, start)
        if stop < self.columns:
            self._split(line, stop - 1)
        line.update(dict.fromkeys(range(start, stop), (" ", 0, self.cursor.attrs[2], 0)))

    def _erase_lines(self, start: int, stop: int) -> None:
        bg = self.cursor.attrs[2]
        for y in range(start, stop):
            self.buffer[y] = self._new_line(bg)

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        self.is_wrap_pending = False
        y, x = self.cursor.y, self.cursor.x
        if how == 0:
            self._erase_cells(y, x, self.columns)
            self.buffer[y].wrapped = False
        elif how == 1:
            self._erase_cells(y, 0, x + 1)
        elif how == 2:
            self._erase_lines(y, y + 1)

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        """ED; pyte recolours only cells already written and clears no scrollback (ED 3)."""
        self.is_wrap_pending = False
        y, x = self.cursor.y, self.cursor.x
        if how == 0:
            self._erase_cells(y, x, self.columns)
            self.buffer[y].wrapped = False
            self._erase_lines(y + 1, self.lines)
        elif how == 1:
            self._erase_lines(0, y)
            self._erase_cells(y, 0, x + 1)
        elif how == 2:
            self._erase_lines(0, self.lines)
        elif how == 3:
            self.history.clear()

    def erase_characters(self, count: int | None = None) -> None:
        self.is_wrap_pending = False
        x = self.cursor.x
        self._erase_cells(self.cursor.y, x, min(x + (count or 1), self.columns))

    def insert_characters(self, count: int | None = None) -> None:
        self.is_wrap_pending = False
        self._insert_cells(self.cursor.y, self.cursor.x, count or 1)

    def delete_characters(self, count: int | None = None) -> None:
        self.is_wrap_pending = False
        self._delete_cells(self.cursor.y, self.cursor.x, count or 1)

    def _insert_cells(self, y: int, x: int, n: int) -> None:
        line, cols = self.buffer[y], self.columns
        n = min(n, cols - x)
        row = self._cells(line)
        _split_middle(row, x)
        row[x:] = ([(" ", 0, self.cursor.attrs[2], 0)] * n + row[x:])[: cols - x]
        _clip_right(row)
        _store(line, row)

    def _delete_cells(self, y: int, x: int, n: int) -> None:
        line, cols = self.buffer[y], self.columns
        n = min(n, cols - x)
        row = self._cells(line)
        self._split(row, x)
        if x + n < cols:
            _split_middle(row, x + n)  # a wide character starting there moves whole
        row[x:] = row[x + n :] + [(" ", 0, self.cursor.attrs[2], 0)] * n
        _store(line, row)

    def scroll_left(self, count: int | None = None) -> None:
        """SL (pyte lacks it): the scroll region's rows move left, as DCH at column 0."""
        self._shift_columns(0, count or 1, is_insert=False)

    def scroll_right(self, count: int | None = None) -> None:
        """SR (pyte lacks it): the scroll region's rows move right, as ICH at column 0."""
        self._shift_columns(0, count or 1, is_insert=True)

    def insert_columns(self, count: int | None = None) -> None:
        """DECIC (pyte lacks it): blank columns at the cursor's, in the scroll region."""
        self._shift_columns(self.cursor.x, count or 1, is_insert=True)

    def delete_columns(self, count: int | None = None) -> None:
        """DECDC (pyte lacks it): columns at the cursor's removed, in the scroll region."""
        self._shift_columns(self.cursor.x, count or 1, is_insert=False)

    def _shift_columns(self, x: int, n: int, is_insert: bool) -> None:
        """ICH or DCH at column x on every row of the region, only from inside it; the
        cursor and a pending wrap stay (xterm)."""
        top, bottom = self.margins
        if top <= self.cursor.y <= bottom:
            shift = self._insert_cells if is_insert else self._delete_cells
            for y in range(top, bottom + 1):
                shift(y, x, n)

    def alignment_display(self) -> None:
        """DECALN: E's in default attributes, margins reset, cursor home (pyte keeps the
        attributes, the margins and the cursor)."""
        self.margins = Margins(0, self.lines - 1)
        for y in range(self.lines):
            self.buffer[y] = self._new_line(0, "E")
        self._goto(0, 0)

    # -- attributes ------------------------------------------------------------------------------
    def select_graphic_rendition(self, *attrs: int, groups: Sequence[Sequence[int]] = ()) -> None:
        """SGR with colon sub-parameters (pyte's stream prints them as text), indexed colours
        kept as indices (pyte stores hex), faint and conceal (pyte drops them)."""
        _, fg, bg, flags = self.cursor.attrs
        groups = groups or [[a] for a in attrs]
        i, n = 0, len(groups)
        while i < n:
            group = groups[i]
            p = max(group[0], 0)
            if p in (38, 48, 58):
                if len(group) > 1:
                    color = _color_from(group[1:], colon=True)
                else:
                    color, used = _color_semicolon(groups, i + 1)
                    i += used
                if color >= 0 and p == 38:
                    fg = color
                elif color >= 0 and p == 48:
                    bg = color
            elif p == 4 and len(group) > 1:
                flags = flags | ATTR_UNDERLINE if group[1] > 0 else flags & ~ATTR_UNDERLINE
            elif p == 0:
                fg = bg = flags = 0
            elif p in _SGR_SET:
                flags |= _SGR_SET[p]
            elif p in _SGR_CLEAR:
                flags &= ~_SGR_CLEAR[p]
            elif 30 <= p <= 37:
                fg = COLOR_INDEXED | (p - 30)
            elif p == 39:
                fg = 0
            elif 40 <= p <= 47:
                bg = COLOR_INDEXED | (p - 40)
            elif p == 49:
                bg = 0
            elif 90 <= p <= 97:
                fg = COLOR_INDEXED | (p - 82)
            elif 100 <= p <= 107:
                bg = COLOR_INDEXED | (p - 92)
            i += 1
        self.cursor.attrs = (" ", fg, bg, flags)

    def define_charset(self, code: str, mode: str) -> None:
        """G0/G1 designation, honoured in UTF-8 mode too (pyte's stream drops it there)."""
        index = mode == ")"
        self.designators[index] = code
        table = DEC_TABLE if code == "0" else ASCII_TABLE
        if index:
            self.g1_charset = table  # type: ignore[assignment]
        else:
            self.g0_charset = table  # type: ignore[assignment]

    # -- modes -----------------------------------------------------------------------------------
    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        for mode in modes:
            self._switch_mode(mode, bool(kwargs.get("private")), True)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        for mode in modes:
            self._switch_mode(mode, bool(kwargs.get("private")), False)

    def _switch_mode(self, mode: int, private: bool, on: bool) -> None:
        """pyte resizes to 132 columns on DECCOLM (xterm ignores it by default), reverses every
        cell on DECSCNM, and lacks the alternate screen, mouse, paste, focus and keypad modes."""
        update = self.mode.add if on else self.mode.discard
        if not private:
            if mode in (4, 20):
                update(mode)
        elif mode in _FLAG_MODES:
            update(_FLAG_MODES[mode])
        elif mode == 6:
            update(DECOM)
            self._goto(0, 0)
        elif mode == 7:
            update(DECAWM)
            if not on:
                self.is_wrap_pending = False
        elif mode == 25:
            update(DECTCEM)
            self.cursor.hidden = not on
        elif mode in MOUSE_MODES:
            self.mouse = mode if on else 0
        elif mode in MOUSE_ENCODINGS:
            if on:
                self.mouse_encoding = MOUSE_ENCODINGS[mode]
            elif self.mouse_encoding == MOUSE_ENCODINGS[mode]:
                self.mouse_encoding = "default"
        elif mode == 1048:
            self.save_cursor() if on else self.restore_cursor()
        elif mode in (47, 1047, 1049):
            self._switch_screen(mode, on)

    def keypad_application_mode(self) -> None:
        """DECKPAM (pyte lacks it): the same flag as private mode 66."""
        self.mode.add(DECNKM)

    def keypad_numeric_mode(self) -> None:
        """DECKPNM (pyte lacks it)."""
        self.mode.discard(DECNKM)

    def _switch_screen(self, mode: int, on: bool) -> None:
        if on == self.is_alternate:
            # Already there: only 1049 acts, saving and clearing, or restoring (xterm).
            if mode == 1049 and on:
                self.save_cursor()
                self._erase_lines(0, self.lines)
            elif mode == 1049:
                self.restore_cursor()
            return
        if on and mode == 1049:
            self.save_cursor()
        if not on and mode == 1047:
            self._erase_lines(0, self.lines)
        self.buffer, self.other_buffer = self.other_buffer, self.buffer
        self.is_alternate = on
        if on and mode == 1049:
            self._erase_lines(0, self.lines)
        if not on and mode == 1049:
            self.restore_cursor()

    def set_cursor_style(self, shape: int) -> None:
        """DECSCUSR (pyte lacks it)."""
        if shape <= 6:
            self.cursor_shape = shape

    def soft_reset(self) -> None:
        """DECSTR (pyte lacks it)."""
        self.mode -= {IRM, DECOM, DECCKM, DECNKM}
        self.mode |= {DECTCEM, DECAWM}
        self.cursor_shape = 0
        self.cursor.hidden = False
        self.cursor.attrs = BLANK
        self.margins = Margins(0, self.lines - 1)
        self.define_charset("B", "(")
        self.define_charset("B", ")")
        self.charset = 0
        self.saved[self.is_alternate] = None

    # -- DECSC/DECRC: one slot per screen (pyte keeps a stack shared by both) -----------------
    def save_cursor(self) -> None:
        _, fg, bg, flags = self.cursor.attrs
        self.saved[self.is_alternate] = (
            self.cursor.x,
            self.cursor.y,
            fg,
            bg,
            flags,
            DECOM in self.mode,
            list(self.designators),
            self.charset,
        )

    def restore_cursor(self) -> None:
        saved = self.saved[self.is_alternate] or (0, 0, 0, 0, 0, False, ["B", "B"], 0)
        x, y, fg, bg, flags, origin, designators, charset = saved
        self.cursor.attrs = (" ", fg, bg, flags)
        (self.mode.add if origin else self.mode.discard)(DECOM)
        self.define_charset(designators[0], "(")
        self.define_charset(designators[1], ")")
        self.charset = charset
        self.cursor.x = min(x, self.columns - 1)
        self.cursor.y = min(y, self.lines - 1)
        if origin:  # margins set since the save still bound it (xterm)
            self.cursor.y = min(max(self.cursor.y, self.margins.top), self.margins.bottom)
        self.is_wrap_pending = False

    def saved_state(self) -> tuple[int, int, int, int, int, bool, str, bool]:
        saved = self.saved[self.is_alternate]
        if saved is None:
            return (0, 0, 0, 0, 0, False, "BB", False)
        x, y, fg, bg, flags, origin, designators, charset = saved
        return (x, y, fg, bg, flags, origin, "".join(designators), charset == 1)

    # -- replies, titles, marks -------------------------------------------------------------------
    def write_process_input(self, data: str) -> None:
        """pyte's reply hook: kept until ``take_replies``, capped."""
        if len(self.replies) + len(data) <= MAX_REPLIES:
            self.replies += data.encode()

    def report_device_attributes(self, mode: int = 0, **kwargs: Any) -> None:
        """DA1 and DA2 with ptyd's fixed identity (pyte answers DA1 as a VT102, never DA2)."""
        if mode == 0:
            marker = kwargs.get("marker", "")
            reply = DA2_REPLY if marker == ">" else DA1_REPLY if marker == "" else b""
            self.write_process_input(reply.decode())

    def report_device_status(self, mode: int = 0, **kwargs: Any) -> None:
        """pyte's DSR 5 and 6, plus DECXCPR ``CSI ? 6 n`` (a TypeError out of pyte's feed)."""
        if not kwargs.get("private"):
            super().report_device_status(mode)
        elif mode == 6:
            y = self.cursor.y - (self.margins.top if DECOM in self.mode else 0)
            self.write_process_input(f"\x1b[?{y + 1};{self.cursor.x + 1}R")

    def set_title(self, param: str) -> None:
        super().set_title(sanitize_title(param.encode("utf-8", "replace")))

    def set_icon_name(self, param: str) -> None:
        super().set_icon_name(sanitize_title(param.encode("utf-8", "replace")))

    def shell_integration_mark(self, kind: str) -> None:
        """OSC 133 (pyte lacks it): the mark and where the cursor was."""
        self.marks.append((kind, self.cursor.x, self.cursor.y))

    # -- resize: cursor clamped, content kept where it fits, overflow to the scrollback -------
    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        rows, cols = lines or self.lines, columns or self.columns
        if (rows, cols) == (self.lines, self.columns):
            return
        for is_active in (True, False):
            buffer = self.buffer if is_active else self.other_buffer
            old = [buffer[y] for y in range(self.lines)]
            grid = [self._cells(line) for line in old]
            wrapped = [line.wrapped for line in old]
            drop = pull = 0
            if rows < self.lines:
                # Rows below the cursor go first, then top rows to the scrollback (xterm, tmux).
                # The inactive screen has no cursor: only its blank bottom rows go first.
                excess = self.lines - rows
                floor = self.cursor.y if is_active else 0
                while excess and len(grid) - 1 > floor and (is_active or not trim_row(grid[-1])):
                    grid.pop()
                    wrapped.pop()
                    excess -= 1
                drop = excess
                if is_active != self.is_alternate and self.scrollback_limit:
                    self.history.extend(_pack(row) for row in grid[:drop])
                del grid[:drop]
                del wrapped[:drop]
            elif is_active and not self.is_alternate:
                # Growing the primary screen brings its latest scrollback back (xterm, tmux).
                pull = min(rows - self.lines, len(self.history))
                pulled = [_unpack(self.history.pop()) for _ in range(pull)][::-1]
                grid[:0] = pulled
                wrapped[:0] = [False] * pull
            if is_active:
                self.cursor.y = max(self.cursor.y - drop, 0) + pull
            buffer.clear()
            for y, (cells, is_wrapped) in enumerate(zip(grid, wrapped, strict=True)):
                row = cells[:cols] + [BLANK] * (cols - len(cells))
                if cols < len(cells) and cells[cols][0] == "":
                    row[cols - 1] = BLANK  # a wide character cut by the new edge
                line = buffer[y] = Line(BLANK)
                line.update(enumerate(row))
                line.wrapped = is_wrapped
        self.tabstops = {x for x in self.tabstops if x < cols}
        self.tabstops.update(range((self.columns + 7) // 8 * 8, cols, 8))
        self.lines, self.columns = rows, cols
        self._blank_row = dict.fromkeys(range(cols), BLANK)
        self.margins = Margins(0, rows - 1)
        self.cursor.x = min(self.cursor.x, cols - 1)
        self.cursor.y = min(self.cursor.y, rows - 1)
        self.is_wrap_pending = False
        self.saved = [
            None if s is None else (min(s[0], cols - 1), min(s[1], rows - 1), *s[2:])
            for s in self.saved
        ]

    # -- the backend-neutral state ------------------------------------------------------------
    def state(self, scrollback: int = -1) -> ScreenState:
        history = self.history
        count = len(history) if scrollback < 0 else min(scrollback, len(history))
        kept = [_unpack(row) for row in itertools.islice(history, len(history) - count, None)]
        saved = self.saved[0]
        _, fg, bg, flags = self.cursor.attrs
        mode = self.mode
        return ScreenState(
            cols=self.columns,
            rows=self.lines,
            lines=[self._cells(line) for line in self._lines()],
            wrapped=[line.wrapped for line in self._lines()],
            cursor_x=self.cursor.x,
            cursor_y=self.cursor.y,
            pending_wrap=self.is_wrap_pending,
            cursor_visible=not self.cursor.hidden,
            cursor_shape=self.cursor_shape,
            title=self.title,
            modes={
                "insert": IRM in mode,
                "lnm": LNM in mode,
                "cursor_keys": DECCKM in mode,
                "reverse_video": DECSCNM in mode,
                "origin": DECOM in mode,
                "autowrap": DECAWM in mode,
                "bracketed_paste": BRACKETED_PASTE in mode,
                "focus": FOCUS_EVENTS in mode,
                "sync": SYNCHRONIZED_OUTPUT in mode,
                "keypad": DECNKM in mode,
                "mouse": self.mouse,
                "mouse_encoding": self.mouse_encoding,
                "attrs": (fg, bg, flags),
                "charsets": "".join(self.designators),
                "shift_out": self.charset == 1,
            },
            alternate_screen=self.is_alternate,
            primary_lines=(
                [self._cells(self.other_buffer[y]) for y in range(self.lines)]
                if self.is_alternate
                else None
            ),
            primary_cursor=saved[:5] if saved else (0, 0, 0, 0, 0),
            scroll_top=self.margins.top,
            scroll_bottom=self.margins.bottom,
            scrollback=kept,
            tabs=sorted(self.tabstops),
            saved_cursor=self.saved_state(),
        )


# Parser states (vt100.net's DEC parser; the compiled engine uses the same states).
GROUND, ESCAPE, ESC_INTER, CSI_ENTRY, CSI_PARAM, CSI_INTER, CSI_IGNORE, OSC, STRING = range(9)
DIGITS = {str(d): d for d in range(10)}


class PyteStream(pyte.ByteStream):
    """``pyte.ByteStream`` with vt100.net's DEC parser in place of pyte's ``_parser_fsm``.

    pyte's ``feed`` loop, UTF-8 decoder and event tables are kept; its parser is replaced
    because it passes every CSI parameter to handlers that take one (the ``TypeError`` on
    ``CSI 1;2 C``), prints colon sub-parameters and DCS/SOS/PM/APC bodies as text, reads OSC
    numbers as one character, ignores designations and SI/SO in UTF-8 mode, knows no
    intermediates or private markers but ``?``, and takes U+009B and U+009D for CSI and OSC.
    Its text pattern is replaced too: pyte hands other controls to ``draw``, which drops the
    text after them.
    """

    # Only printable characters go to ``draw`` in one run; every control reaches the parser.
    _text_pattern = re.compile(r"[\x20-\x7e\xa0-\U0010ffff]+")

    escape = {  # noqa: RUF012 - pyte's event table, extended
        **pyte.ByteStream.escape,
        "E": "next_line",  # pyte: linefeed
        "=": "keypad_application_mode",
        ">": "keypad_numeric_mode",
    }
    #: CSI final -> (event, how many parameters it takes; None: all)
    csi_arity: ClassVar[dict[str, tuple[str, int | None]]] = {
        **{final: (event, 1) for final, event in pyte.ByteStream.csi.items()},
        "H": ("cursor_position", 2),
        "f": ("cursor_position", 2),
        "r": ("set_margins", 2),
        "h": ("set_mode", None),
        "l": ("reset_mode", None),
        "m": ("select_graphic_rendition", None),
        "e": ("cursor_line_relative", 1),  # pyte: cursor_down, bounded by the margins
        "`": ("cursor_to_column", 1),  # HPA; pyte maps it to "'", an intermediate byte
        "I": ("cursor_forward_tab", 1),
        "Z": ("cursor_back_tab", 1),
        "S": ("scroll_up", 1),
        "T": ("scroll_down", None),
        "b": ("repeat_last_character", 1),
        "s": ("save_cursor", 0),
        "u": ("restore_cursor", 0),
    }
    del csi_arity["'"]
    csi = {final: event for final, (event, _) in csi_arity.items()}  # noqa: RUF012

    def _parser_fsm(self) -> Generator[bool | None, str, None]:
        """vt100.net's DEC parser; yields True in the ground state (plain text allowed)."""
        screen = self.listener
        assert isinstance(screen, PyteScreen)
        basic = {char: getattr(screen, event) for char, event in self.basic.items()}
        escape = {final: getattr(screen, event) for final, event in self.escape.items()}
        csi: dict[str, tuple[Callable[..., None], int | None]] = {
            final: (getattr(screen, event), arity)
            for final, (event, arity) in self.csi_arity.items()
        }
        draw = screen.draw
        state, inter, private = GROUND, "", ""
        params: list[list[int]] = [[-1]]
        text: list[str] = []
        is_overflow = False
        while True:
            char = yield state == GROUND
            try:
                if state == CSI_PARAM:
                    # The commonest bytes inside a sequence take the shortest path.
                    digit = DIGITS.get(char)
                    if digit is not None:
                        group = params[-1]
                        value = group[-1] * 10 + digit if group[-1] > 0 else digit
                        group[-1] = value if value < MAX_PARAM_VALUE else MAX_PARAM_VALUE
                        continue
                    if char == ";":
                        if len(params) < MAX_PARAMS:
                            params.append([-1])
                        continue
                c = ord(char)
                if 0x20 <= c < 0x7F:
                    if CSI_ENTRY <= state <= CSI_IGNORE:
                        if c >= 0x40:
                            was, state = state, GROUND
                            if was != CSI_IGNORE:
                                self._dispatch_csi(screen, csi, char, params, private, inter)
                        elif state == CSI_IGNORE:
                            pass
                        elif c < 0x30:
                            inter, state = (inter + char)[:2], CSI_INTER
                        elif state == CSI_INTER:
                            state = CSI_IGNORE
                        elif c >= 0x3C:
                            if state == CSI_ENTRY:
                                private, state = char, CSI_PARAM
                            else:
                                state = CSI_IGNORE
                        else:
                            state = CSI_PARAM
                            group = params[-1]
                            if char == ";":
                                if len(params) < MAX_PARAMS:
                                    params.append([-1])
                            elif char == ":":
                                if len(group) < MAX_SUBPARAMS:
                                    group.append(-1)
                            else:
                                group[-1] = min(max(group[-1], 0) * 10 + c - 0x30, MAX_PARAM_VALUE)
                    elif state == ESCAPE:
                        if c < 0x30:
                            inter, state = char, ESC_INTER
                        elif char == "[":
                            state, params, private = CSI_ENTRY, [[-1]], ""
                        elif char == "]":
                            state, text, is_overflow = OSC, [], False
                        elif char in "PX^_":
                            state = STRING
                        else:
                            state = GROUND
                            self._dispatch_escape(screen, escape, char, "")
                    elif state == ESC_INTER:
                        if c < 0x30:
                            inter = (inter + char)[:2]
                        else:
                            state = GROUND
                            self._dispatch_escape(screen, escape, char, inter)
                    elif state == OSC:
                        if not is_overflow:
                            if len(text) < MAX_STRING:
                                text.append(char)
                            else:
                                is_overflow = True
                    elif state == GROUND:
                        draw(char)
                    # STRING: DCS, SOS, PM and APC bodies are discarded up to ST, CAN or SUB.
                elif c == 0x1B:
                    if state == OSC:
                        self._dispatch_osc(screen, text, is_overflow)
                    state, inter = ESCAPE, ""
                elif c == 0x18 or c == 0x1A:
                    state = GROUND
                elif state == OSC:
                    if c == 0x07:
                        self._dispatch_osc(screen, text, is_overflow)
                        state = GROUND
                    elif c > 0x7F and not is_overflow:
                        if len(text) < MAX_STRING:
                            text.append(char)
                        else:
                            is_overflow = True
                elif state == STRING:
                    pass
                elif c < 0x20:
                    screen.last_char = ""
                    handler = basic.get(char)
                    if handler is not None:
                        handler()
                elif c < 0xA0:
                    pass  # DEL and C1 code points are ignored (UTF-8 terminals)
                elif state == GROUND:
                    draw(char)
                elif CSI_ENTRY <= state < CSI_IGNORE:
                    state = CSI_IGNORE  # a non-ASCII character spoils a control sequence
                elif state != CSI_IGNORE:
                    state = GROUND  # ... and ends an escape sequence, undispatched
            except Exception:
                screen.errors_caught += 1
                state = GROUND

    @staticmethod
    def _dispatch_escape(
        screen: PyteScreen, escape: dict[str, Callable[..., None]], final: str, inter: str
    ) -> None:
        screen.last_char = ""
        if inter:
            if inter in ("(", ")"):
                screen.define_charset(final, inter)
            elif inter == "#" and final == "8":
                screen.alignment_display()
        elif final in escape:
            escape[final]()

    @staticmethod
    def _dispatch_csi(
        screen: PyteScreen,
        csi: dict[str, tuple[Callable[..., None], int | None]],
        final: str,
        params: list[list[int]],
        private: str,
        inter: str,
    ) -> None:
        if private == "" and inter == "":
            if final != "b":
                screen.last_char = ""  # REP repeats only a character right before it
            if final not in csi:
                return
            handler, arity = csi[final]
            if final == "m":
                handler(groups=params)
                return
            values = [max(group[0], 0) for group in params]
            if arity is None:
                handler(*values)
            else:
                handler(*values[:arity])
            return
        values = [max(group[0], 0) for group in params]
        if inter == "":
            if private == "?" and final in "hl":
                (screen.set_mode if final == "h" else screen.reset_mode)(*values, private=True)
            elif private == "?" and final == "n":
                screen.report_device_status(values[0], private=True)
            elif private == ">" and final == "c":
                screen.report_device_attributes(values[0], marker=">")
        elif private == "" and inter == " " and final == "q":
            screen.set_cursor_style(values[0])
        elif private == "" and inter == "!" and final == "p":
            screen.soft_reset()
        elif private == "" and inter == " " and final in "@A":
            (screen.scroll_left if final == "@" else screen.scroll_right)(values[0])
        elif private == "" and inter == "'" and final in "}~":
            (screen.insert_columns if final == "}" else screen.delete_columns)(values[0])

    @staticmethod
    def _dispatch_osc(screen: PyteScreen, text: list[str], is_overflow: bool) -> None:
        """OSC 0/1/2 and 133 with the whole number read (pyte reads one character)."""
        if is_overflow:
            return
        number, _, rest = "".join(text).partition(";")
        if not (number.isascii() and number.isdigit()) or len(number) > 5:
            return
        code = int(number)
        if code in (0, 1):
            screen.set_icon_name(rest)
        if code in (0, 2):
            screen.set_title(rest)
        if code == 133 and rest:
            screen.shell_integration_mark(rest[0])


class PyteEmulator:
    """The pure-Python backend: a :class:`PyteScreen` fed by a :class:`PyteStream`.

    ``feed`` never raises: handlers run under the parser's guard, and anything else pyte
    raises resets the parser to its ground state (the screen keeps what was drawn so far).
    """

    def __init__(self, cols: int, rows: int, scrollback: int = 1000) -> None:
        self._screen = PyteScreen(
            clamp_dimension(cols), clamp_dimension(rows), max(0, int(scrollback))
        )
        self._stream = PyteStream(self._screen)
        self.generation = 0  # feeds and resizes so far: views re-read on change

    @property
    def cols(self) -> int:
        return int(self._screen.columns)

    @property
    def rows(self) -> int:
        return int(self._screen.lines)

    @property
    def title(self) -> str:
        return str(self._screen.title)

    @property
    def cursor_keys(self) -> bool:
        """DECCKM: the program asked for application cursor keys (ESC O A for Up)."""
        return DECCKM in self._screen.mode

    @property
    def icon_name(self) -> str:
        return str(self._screen.icon_name)

    @property
    def marks(self) -> list[tuple[str, int, int]]:
        """OSC 133 marks as (kind, x, y), oldest first, at most MAX_MARKS."""
        return list(self._screen.marks)

    @property
    def errors_caught(self) -> int:
        """How many exceptions the guards caught (a non-zero count is a bug to report)."""
        return self._screen.errors_caught

    @property
    def pyte_screen(self) -> PyteScreen:
        """The live ``pyte.Screen`` subclass (its cells are ptyd's, not pyte's ``Char``)."""
        return self._screen

    @property
    def screen(self) -> ScreenView:
        """The screen through pyte's API, live: the same view the compiled backend offers."""
        return ScreenView(self)

    def feed(self, data: bytes) -> None:
        """Feed program output; never raises, and any chunking gives the same result."""
        self.generation += 1
        try:
            self._stream.feed(bytes(data))
        except Exception:
            self._screen.errors_caught += 1
            self._stream._initialize_parser()

    def take_replies(self) -> bytes:
        replies = bytes(self._screen.replies)
        self._screen.replies.clear()
        return replies

    def resize(self, cols: int, rows: int) -> None:
        self.generation += 1
        try:
            self._screen.resize(clamp_dimension(rows), clamp_dimension(cols))
        except Exception:  # pragma: no cover - defensive: the daemon must never see this
            self._screen.errors_caught += 1
            self._screen.reset()

    def state(self, scrollback: int = -1) -> ScreenState:
        """A copy of the current state in the backend-neutral form the snapshots render.

        ``scrollback`` limits how many history lines are copied (-1: all).
        """
        return self._screen.state(scrollback)

    def snapshot_text(self, scrollback: int = 0) -> str:
        return render_text(self.state(scrollback), scrollback)

    def snapshot_ansi(self) -> bytes:
        return render_ansi(self.state(0))

    def snapshot_json(self, scrollback: int = 0) -> dict[str, Any]:
        return render_json(self.state(scrollback), scrollback)


# -- helpers ---------------------------------------------------------------------------------
def _store(line: Line, row: Row) -> None:
    """Write a whole row back into its line object (which keeps its wrap flag)."""
    line.clear()
    line.update(enumerate(row))


def _split_middle(row: Row, x: int) -> None:
    """Before a shift right at x: a wide character cut in its middle is blanked whole."""
    if row[x][0] == "" and x > 0:
        row[x - 1] = row[x] = BLANK


def _clip_right(row: Row) -> None:
    """After a shift right, a wide character's left half may not stay in the last column."""
    text = row[-1][0]
    if text and char_width(text[0]) == 2:
        row[-1] = BLANK


def _pack(row: Row) -> PackedRow:
    """A scrollback line: trimmed, and one string when its cells are uniform narrow characters.

    Memory then follows the text kept (a few bytes per character), as in the compiled engine.
    """
    texts, fgs, bgs, flags = zip(*row, strict=True)
    n = len(texts)
    if fgs.count(0) == bgs.count(0) == flags.count(0) == n and "" not in texts:
        # Default attributes throughout (most scrolled lines): trimming is rstrip, in C.
        text = "".join(texts)
        if len(text) == n:
            text = text.rstrip(" ")
            return (text, 0, 0, 0) if text else ()
    cells = trim_row(row)
    if not cells:
        return ()
    texts, fgs, bgs, flags = zip(*cells, strict=True)
    text = "".join(texts)
    # No empty text and a total length of one per cell: every cell is a single code point.
    narrow = "" not in texts and len(text) == len(cells)
    if narrow and len(set(fgs)) == len(set(bgs)) == len(set(flags)) == 1:
        return (text, fgs[0], bgs[0], flags[0])
    return tuple(cells)


def _unpack(packed: PackedRow) -> Row:
    if packed and isinstance(packed[0], str):
        text, fg, bg, flags = packed
        return [(ch, fg, bg, flags) for ch in text]
    return list(packed)


_SGR_SET = {
    1: ATTR_BOLD,
    2: ATTR_FAINT,
    3: ATTR_ITALIC,
    4: ATTR_UNDERLINE,
    5: ATTR_BLINK,
    6: ATTR_BLINK,
    7: ATTR_REVERSE,
    8: ATTR_CONCEAL,
    9: ATTR_STRIKE,
    21: ATTR_UNDERLINE,
}
_SGR_CLEAR = {
    22: ATTR_BOLD | ATTR_FAINT,
    23: ATTR_ITALIC,
    24: ATTR_UNDERLINE,
    25: ATTR_BLINK,
    27: ATTR_REVERSE,
    28: ATTR_CONCEAL,
    29: ATTR_STRIKE,
}


def _color_from(sub: Sequence[int], colon: bool) -> int:
    """A 38/48 colour from its sub-parameters; -1 when malformed or out of range."""
    kind = sub[0] if sub else -1
    if kind == 5 and len(sub) >= 2:
        return (
            COLOR_INDEXED | sub[1] if 0 <= sub[1] <= 255 else (COLOR_INDEXED if sub[1] < 0 else -1)
        )
    if kind == 2 and len(sub) >= 4:
        # The colon form may carry a colour-space id first: 38:2:<id>:r:g:b.
        rgb = sub[2:5] if colon and len(sub) >= 5 else sub[1:4]
        values = [max(v, 0) for v in rgb]
        if all(v <= 255 for v in values):
            return COLOR_RGB | (values[0] << 16) | (values[1] << 8) | values[2]
    return -1


def _color_semicolon(groups: Sequence[Sequence[int]], start: int) -> tuple[int, int]:
    """A 38;5;n or 38;2;r;g;b colour; returns (colour or -1, parameters consumed)."""
    kind = groups[start][0] if start < len(groups) else -1
    need = 2 if kind == 5 else 4 if kind == 2 else 1
    sub = [g[0] for g in groups[start : start + need]]
    if len(sub) < need:
        return -1, len(sub)
    return _color_from(sub, colon=False), need
