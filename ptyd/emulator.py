"""The terminal emulator interface, the pure-Python backend and the snapshot formats.

Every session shadows its output in an emulator so that an attaching client can be shown the
exact current screen. Two backends implement :class:`EmulatorProtocol`: the compiled
``ptyd._vt.VtEmulator`` (default) and :class:`PyteEmulator` here (``PTYD_PURE=1``). Both follow
xterm where pyte differs (see docs/emulator.md) and both render their snapshots through the
functions of this module, so the formats have one source of truth. pyte supplies the API the
pure backend offers (``screen``: pyte's ``display``/``cursor``/``buffer``/``mode``) and is the
black-box oracle of the tests; its operations are not used, since they differ from xterm's.

Cell model shared by both backends: a cell is ``(text, fg, bg, flags)``. ``text`` is the base
character plus combining marks, ``""`` for the right half of a wide character; colours use
:data:`COLOR_DEFAULT`, ``COLOR_INDEXED | n`` or ``COLOR_RGB | 0xRRGGBB``; ``flags`` is a bit set
of the ``ATTR_*`` constants.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, runtime_checkable

import pyte
from wcwidth import wcwidth

__all__ = [
    "ATTR_BLINK",
    "ATTR_BOLD",
    "ATTR_CONCEAL",
    "ATTR_FAINT",
    "ATTR_ITALIC",
    "ATTR_REVERSE",
    "ATTR_STRIKE",
    "ATTR_UNDERLINE",
    "COLOR_DEFAULT",
    "COLOR_INDEXED",
    "COLOR_RGB",
    "EmulatorProtocol",
    "PyteEmulator",
    "ScreenState",
]

# Attribute bits (shared with _vt.pyx, which declares the same values).
ATTR_BOLD = 1
ATTR_FAINT = 2
ATTR_ITALIC = 4
ATTR_UNDERLINE = 8
ATTR_BLINK = 16
ATTR_REVERSE = 32
ATTR_CONCEAL = 64
ATTR_STRIKE = 128
COLOR_DEFAULT = 0
COLOR_INDEXED = 0x1000000
COLOR_RGB = 0x2000000

# Limits against hostile input (shared with _vt.pyx).
MAX_PARAMS = 32
MAX_SUBPARAMS = 8
MAX_PARAM_VALUE = 65535
MAX_STRING = 4096
MAX_TITLE = 256
MAX_COMBINING = 2
MAX_REPLIES = 4096
MAX_MARKS = 256
MAX_DIMENSION = 1000

DA1_REPLY = b"\x1b[?62;22c"
DA2_REPLY = b"\x1b[>1;10;0c"
DSR_OK_REPLY = b"\x1b[0n"

_FLAG_NAMES = (
    (ATTR_BOLD, "bold"),
    (ATTR_FAINT, "faint"),
    (ATTR_ITALIC, "italic"),
    (ATTR_UNDERLINE, "underline"),
    (ATTR_BLINK, "blink"),
    (ATTR_REVERSE, "reverse"),
    (ATTR_CONCEAL, "conceal"),
    (ATTR_STRIKE, "strike"),
)
_FLAG_SGR = (
    (ATTR_BOLD, 1),
    (ATTR_FAINT, 2),
    (ATTR_ITALIC, 3),
    (ATTR_UNDERLINE, 4),
    (ATTR_BLINK, 5),
    (ATTR_REVERSE, 7),
    (ATTR_CONCEAL, 8),
    (ATTR_STRIKE, 9),
)

MOUSE_MODES = (9, 1000, 1002, 1003)
MOUSE_ENCODINGS = {1005: "utf8", 1006: "sgr", 1015: "urxvt"}

Cell = tuple[str, int, int, int]
Row = list[Cell]


@runtime_checkable
class EmulatorProtocol(Protocol):
    """What the session code needs from an emulator; both backends implement exactly this."""

    def __init__(self, cols: int, rows: int, scrollback: int = 1000) -> None: ...

    @property
    def cols(self) -> int: ...

    @property
    def rows(self) -> int: ...

    @property
    def title(self) -> str: ...

    def feed(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def take_replies(self) -> bytes: ...

    def snapshot_text(self, scrollback: int = 0) -> str: ...

    def snapshot_ansi(self) -> bytes: ...

    def snapshot_json(self, scrollback: int = 0) -> dict[str, Any]: ...


def sanitize_title(raw: bytes) -> str:
    """Decode an OSC title, drop control characters, cap its length: it is shown to users."""
    text = raw.decode("utf-8", "replace")
    text = "".join(ch for ch in text if ch >= " " and not "\x7f" <= ch <= "\x9f")
    return text[:MAX_TITLE]


def clamp_dimension(value: int) -> int:
    """Sizes come from clients; keep them in a range that cannot exhaust memory."""
    return max(1, min(int(value), MAX_DIMENSION))


class ScreenState(NamedTuple):
    """A backend-neutral copy of everything a snapshot shows; built only when one is taken."""

    cols: int
    rows: int
    lines: list[Row]
    wrapped: list[bool]
    cursor_x: int
    cursor_y: int
    pending_wrap: bool
    cursor_visible: bool
    cursor_shape: int
    title: str
    modes: dict[str, Any]
    alternate_screen: bool
    primary_lines: list[Row] | None
    primary_cursor: tuple[int, int, int, int, int]  # x, y, fg, bg, flags saved by 1049
    scroll_top: int
    scroll_bottom: int
    scrollback: list[Row]
    tabs: list[int]  # columns with a tab stop
    # The active screen's DECSC state: x, y, fg, bg, flags, origin, G0+G1 designators, SO.
    saved_cursor: tuple[int, int, int, int, int, bool, str, bool]


def _trim(row: Sequence[Cell]) -> list[Cell]:
    end = len(row)
    while end and row[end - 1][0] in (" ", "") and row[end - 1][1:] == (0, 0, 0):
        end -= 1
    return list(row[:end])


def row_text(row: Sequence[Cell]) -> str:
    """A row as displayed: wide characters once, trailing spaces trimmed."""
    return "".join(
        cell[0] or ("" if i and row[i - 1][0] else " ") for i, cell in enumerate(row)
    ).rstrip(" ")


def render_text(state: ScreenState, scrollback: int = 0) -> str:
    lines = state.scrollback[len(state.scrollback) - scrollback :] if scrollback > 0 else []
    return "\n".join(row_text(row) for row in (*lines, *state.lines))


def attrs_dict(fg: int, bg: int, flags: int) -> dict[str, Any]:
    """The JSON form of a cell's attributes; only non-default keys are present."""
    out: dict[str, Any] = {}
    for key, color in (("fg", fg), ("bg", bg)):
        if color & COLOR_RGB:
            out[key] = f"#{color & 0xFFFFFF:06x}"
        elif color & COLOR_INDEXED:
            out[key] = color & 0xFF
    for bit, name in _FLAG_NAMES:
        if flags & bit:
            out[name] = True
    return out


def _runs(row: Sequence[Cell]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    key: tuple[int, int, int] | None = None
    for cell in _trim(row):
        text = cell[0]
        if key == cell[1:] and runs:
            runs[-1][0] += text
        else:
            key = cell[1:]
            runs.append([text or " " if not runs or text else text, attrs_dict(*key)])
    return [[text, attrs] for text, attrs in runs]


def render_json(state: ScreenState, scrollback: int = 0) -> dict[str, Any]:
    lines = state.scrollback[len(state.scrollback) - scrollback :] if scrollback > 0 else []
    return {
        "cols": state.cols,
        "rows": state.rows,
        "cursor": {
            "x": state.cursor_x,
            "y": state.cursor_y,
            "visible": state.cursor_visible,
            "shape": state.cursor_shape,
        },
        "title": state.title,
        "modes": {**state.modes, "attrs": list(state.modes["attrs"])},
        "alternate_screen": state.alternate_screen,
        "lines": [_runs(row) for row in state.lines],
        "scrollback": [_runs(row) for row in lines],
    }


def _sgr(fg: int, bg: int, flags: int) -> str:
    parts = ["0"]
    parts += [str(code) for bit, code in _FLAG_SGR if flags & bit]
    for base, color in ((38, fg), (48, bg)):
        if color & COLOR_RGB:
            rgb = color & 0xFFFFFF
            parts.append(f"{base};2;{rgb >> 16};{(rgb >> 8) & 0xFF};{rgb & 0xFF}")
        elif color & COLOR_INDEXED:
            parts.append(f"{base};5;{color & 0xFF}")
    return "\x1b[" + ";".join(parts) + "m"


def _paint(rows: list[Row], cols: int) -> list[str]:
    out: list[str] = []
    for y, row in enumerate(rows):
        cells = _trim(row)
        if not cells:
            continue
        out.append(f"\x1b[{y + 1}H")
        current: tuple[int, int, int] | None = None
        for x, cell in enumerate(cells):
            if cell[0] == "" and x and rows[y][x - 1][0]:
                continue
            if cell[1:] != current:
                current = cell[1:]
                out.append(_sgr(*current))
            out.append(cell[0] or " ")
        out.append("\x1b[0m")
    return out


def render_ansi(state: ScreenState) -> bytes:
    """Bytes that repaint a blank terminal of the same size to exactly this state."""
    out = [
        # Reset what the repaint depends on: primary screen, no margins, no origin/insert mode,
        # autowrap on, ASCII charsets, default attributes, then clear.
        "\x1b[?1049l\x1b[?47l\x1b[r\x1b[?6l\x1b[4l\x1b[20l\x1b[?7h\x1b(B\x1b)B\x0f\x1b[0m"
        "\x1b[H\x1b[2J",
        f"\x1b]2;{state.title}\x07",
    ]
    if state.alternate_screen and state.primary_lines is not None:
        out += _paint(state.primary_lines, state.cols)
        x, y, fg, bg, flags = state.primary_cursor
        out.append(f"\x1b[{y + 1};{x + 1}H{_sgr(fg, bg, flags)}")
        # 1049 saved the primary cursor and its attributes; the alternate screen is cleared
        # with default ones.
        out.append("\x1b[?1049h\x1b[0m\x1b[H\x1b[2J")
    out += _paint(state.lines, state.cols)
    # DECSC state (what DECRC would restore), saved with no margins set, then undone.
    x, y, fg, bg, flags, origin, charsets, shift_out = state.saved_cursor
    out.append(
        ("\x1b[?6h" if origin else "")
        + f"\x1b[{y + 1};{x + 1}H{_sgr(fg, bg, flags)}\x1b({charsets[0]}\x1b){charsets[1]}"
        + ("\x0e" if shift_out else "\x0f")
        + "\x1b7\x1b[?6l\x1b(B\x1b)B\x0f"
    )
    modes = state.modes
    if state.scroll_top or state.scroll_bottom != state.rows - 1:
        out.append(f"\x1b[{state.scroll_top + 1};{state.scroll_bottom + 1}r")
    x, y = state.cursor_x, state.cursor_y
    if state.tabs != list(range(0, state.cols, 8)):
        out.append("\x1b[3g" + "".join(f"\x1b[1;{x + 1}H\x1bH" for x in state.tabs))
    # DECOM homes the cursor and makes rows relative to the margins: set it before placing.
    row = y - state.scroll_top if modes["origin"] else y
    if modes["origin"]:
        out.append("\x1b[?6h")
    if state.pending_wrap:
        # Rewrite the last cell so that the target ends in the same pending-wrap state.
        start = x - 1 if x and state.lines[y][x][0] == "" else x
        cell = state.lines[y][start]
        out.append(f"\x1b[{row + 1};{start + 1}H{_sgr(*cell[1:])}{cell[0] or ' '}")
    else:
        out.append(f"\x1b[{row + 1};{x + 1}H")
    fg, bg, flags = modes["attrs"]
    out.append(_sgr(fg, bg, flags))
    flagged = {
        "insert": "\x1b[4h",
        "lnm": "\x1b[20h",
        "cursor_keys": "\x1b[?1h",
        "reverse_video": "\x1b[?5h",
        "bracketed_paste": "\x1b[?2004h",
        "focus": "\x1b[?1004h",
        "sync": "\x1b[?2026h",
        "keypad": "\x1b=",
    }
    out += [seq for name, seq in flagged.items() if modes[name]]
    if not modes["autowrap"]:
        out.append("\x1b[?7l")
    g0, g1 = modes["charsets"]
    out.append(f"\x1b({g0}\x1b){g1}" + ("\x0e" if modes["shift_out"] else ""))
    if modes["mouse"]:
        out.append(f"\x1b[?{modes['mouse']}h")
    encoding = {v: k for k, v in MOUSE_ENCODINGS.items()}.get(modes["mouse_encoding"])
    if encoding:
        out.append(f"\x1b[?{encoding}h")
    out.append(f"\x1b[{state.cursor_shape} q")
    out.append("\x1b[?25h" if state.cursor_visible else "\x1b[?25l")
    return "".join(out).encode("utf-8", "replace")


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


# --------------------------------------------------------------------------------------------
# DEC special graphics, for ESC ( 0: the VT100 line-drawing set (0x5f-0x7e).
DEC_GRAPHICS = dict(
    zip(
        range(0x5F, 0x7F),
        "\u00a0\u25c6\u2592\u2409\u240c\u240d\u240a\u00b0\u00b1\u2424\u240b\u2518\u2510\u250c\u2514"
        "\u253c\u23ba\u23bb\u2500\u23bc\u23bd\u251c\u2524\u2534\u252c\u2502\u2264\u2265\u03c0\u2260"
        "\u00a3\u00b7",
        strict=True,
    )
)


_CELLS = {-1: 1, 0: 0, 1: 1, 2: 2}  # wcwidth's result -> cells (non-printables take one)


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells taken by a code point: 0 combines with the previous cell, else 1 or 2."""
    return _CELLS[wcwidth(ch)]


def width_table(start: int, stop: int) -> bytes:
    """``char_width`` of every code point in [start, stop), for the compiled engine's table."""
    return bytes([_CELLS[wcwidth(chr(c))] for c in range(start, stop)])


# Parser states (vt100.net's DEC parser; the compiled engine uses the same states).
GROUND, ESCAPE, ESC_INTER, CSI_ENTRY, CSI_PARAM, CSI_INTER, CSI_IGNORE, OSC, STRING = range(9)
_PRINTABLE_RUN = re.compile(r"[\x20-\x7e\xa0-\U0010ffff]+")
_ASCII_RUN = re.compile(r"[\x20-\x7e]+")


class PyteEmulator:
    """Pure-Python emulator: the compiled engine's algorithm, with pyte's API (``screen``).

    ``feed`` never raises: every handler runs under one guard, and an unexpected error resets
    the parser to its ground state (the screen keeps what was drawn so far).
    """

    def __init__(self, cols: int, rows: int, scrollback: int = 1000) -> None:
        self._cols = clamp_dimension(cols)
        self._rows = clamp_dimension(rows)
        self._scrollback_limit = max(0, int(scrollback))
        self.scrollback: deque[PackedRow] = deque(maxlen=self._scrollback_limit)
        self._replies = bytearray()
        self._title = ""
        self.icon_name = ""
        self._marks: deque[tuple[str, int, int]] = deque(maxlen=MAX_MARKS)
        self._utf8 = __import__("codecs").getincrementaldecoder("utf-8")("replace")
        self._reset_parser()
        self._full_reset()

    # -- public API ---------------------------------------------------------------------------
    @property
    def cols(self) -> int:
        return self._cols

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def title(self) -> str:
        return self._title

    def feed(self, data: bytes) -> None:
        """Feed program output; never raises, and any chunking gives the same result."""
        try:
            text = self._utf8.decode(bytes(data))
        except Exception:
            self._utf8.reset()
            return
        self._feed_text(text)

    @property
    def marks(self) -> list[tuple[str, int, int]]:
        """OSC 133 marks as (kind, x, y), oldest first, at most MAX_MARKS."""
        return list(self._marks)

    @property
    def screen(self) -> ScreenView:
        """The current screen through pyte's API."""
        return ScreenView(self.state())

    def take_replies(self) -> bytes:
        replies = bytes(self._replies)
        self._replies.clear()
        return replies

    def resize(self, cols: int, rows: int) -> None:
        try:
            self._resize(clamp_dimension(cols), clamp_dimension(rows))
        except Exception:  # pragma: no cover - defensive: the daemon must never see this
            self._full_reset()

    def snapshot_text(self, scrollback: int = 0) -> str:
        return render_text(self.state(scrollback), scrollback)

    def snapshot_ansi(self) -> bytes:
        return render_ansi(self.state(0))

    def snapshot_json(self, scrollback: int = 0) -> dict[str, Any]:
        return render_json(self.state(scrollback), scrollback)

    # -- state --------------------------------------------------------------------------------
    def _blank_row(self, bg: int = 0) -> list[Cell]:
        return [(" ", 0, bg, 0)] * self._cols

    def _full_reset(self) -> None:
        self.grid: list[list[Cell]] = [self._blank_row() for _ in range(self._rows)]
        self.wrapped = [False] * self._rows
        self.other_grid: list[list[Cell]] = [self._blank_row() for _ in range(self._rows)]
        self.other_wrapped = [False] * self._rows
        self.alt = False
        self.x = self.y = 0
        self.pending = False
        self.fg = self.bg = self.flags = 0
        self.top, self.bottom = 0, self._rows - 1
        self.modes: dict[str, Any] = {
            "insert": False,
            "lnm": False,
            "cursor_keys": False,
            "reverse_video": False,
            "origin": False,
            "autowrap": True,
            "bracketed_paste": False,
            "focus": False,
            "sync": False,
            "keypad": False,
            "mouse": 0,
            "mouse_encoding": "default",
        }
        self.cursor_visible = True
        self.cursor_shape = 0
        self.tabs = [x % 8 == 0 for x in range(self._cols)]
        self.charsets = ["B", "B"]
        self.gl = 0
        self.saved: list[tuple[Any, ...] | None] = [None, None]
        self.last_char = ""

    def _reset_parser(self) -> None:
        self.pstate = GROUND
        self.params: list[list[int]] = [[-1]]
        self.private = ""
        self.inter = ""
        self.strbuf: list[str] = []
        self.overflow = False

    def state(self, scrollback: int = -1) -> ScreenState:
        """A copy of the current state in the backend-neutral form the snapshots render.

        ``scrollback`` limits how many history lines are copied (-1: all).
        """
        saved = self.saved[0]
        count = len(self.scrollback) if scrollback < 0 else min(scrollback, len(self.scrollback))
        history = (
            [
                _unpack(row)
                for row in itertools.islice(self.scrollback, len(self.scrollback) - count, None)
            ]
            if count
            else []
        )
        return ScreenState(
            cols=self._cols,
            rows=self._rows,
            lines=[list(r) for r in self.grid],
            wrapped=list(self.wrapped),
            cursor_x=self.x,
            cursor_y=self.y,
            pending_wrap=self.pending,
            cursor_visible=self.cursor_visible,
            cursor_shape=self.cursor_shape,
            title=self._title,
            modes={
                **self.modes,
                "attrs": (self.fg, self.bg, self.flags),
                "charsets": "".join(self.charsets),
                "shift_out": self.gl == 1,
            },
            alternate_screen=self.alt,
            primary_lines=[list(r) for r in self.other_grid] if self.alt else None,
            primary_cursor=saved[:5] if saved else (0, 0, 0, 0, 0),
            scroll_top=self.top,
            scroll_bottom=self.bottom,
            tabs=[x for x, is_stop in enumerate(self.tabs) if is_stop],
            saved_cursor=self._saved_state(),
            scrollback=history,
        )

    # -- parser (vt100.net's DEC state machine over decoded code points) -----------------------
    def _feed_text(self, text: str) -> None:
        pos, end = 0, len(text)
        while pos < end:
            try:
                pos = self._step(text, pos, end)
            except Exception:  # pragma: no cover - defensive: the daemon must never see this
                self._reset_parser()
                pos += 1

    def _step(self, text: str, pos: int, end: int) -> int:
        """Consume one code point, or a whole printable run in the ground state."""
        st = self.pstate
        if st == GROUND:
            run = _ASCII_RUN.match(text, pos)
            if run and not self.modes["insert"] and self.charsets[self.gl] != "0":
                self._print_ascii(run.group())
                return run.end()
            run = _PRINTABLE_RUN.match(text, pos)
            if run:
                for ch in run.group():
                    self._print(ch)
                return run.end()
        ch = text[pos]
        c = ord(ch)
        if c == 0x1B:
            if st == OSC:
                self._osc_dispatch()
            self._enter(ESCAPE)
        elif c in (0x18, 0x1A):
            self.pstate = GROUND
        elif st in (OSC, STRING):
            self._string_char(ch, c)
        elif c < 0x20:
            self._execute(c)
        elif c == 0x7F or 0x80 <= c < 0xA0:
            pass
        elif st == ESCAPE:
            if c < 0x30:
                self.inter += ch
                self.pstate = ESC_INTER
            elif ch == "[":
                self._enter(CSI_ENTRY)
            elif ch == "]":
                self._enter(OSC)
            elif ch in "PX^_":
                self._enter(STRING)
            elif c < 0x7F:
                self.pstate = GROUND
                self._esc_dispatch(ch)
            else:
                self.pstate = GROUND
        elif st == ESC_INTER:
            if c < 0x30:
                self.inter = (self.inter + ch)[:2]
            else:
                self.pstate = GROUND
                if c < 0x7F:
                    self._esc_dispatch(ch)
        else:
            self._csi_char(ch, c, st)
        return pos + 1

    def _enter(self, state: int) -> None:
        self.pstate = state
        self.inter = ""
        if state == CSI_ENTRY:
            self.params = [[-1]]
            self.private = ""
        elif state == OSC:
            self.strbuf = []
            self.overflow = False

    def _string_char(self, ch: str, c: int) -> None:
        if self.pstate == OSC:
            if c == 0x07:
                self._osc_dispatch()
                self.pstate = GROUND
            elif c >= 0x20 and c != 0x7F and not self.overflow:
                if len(self.strbuf) < MAX_STRING:
                    self.strbuf.append(ch)
                else:
                    self.overflow = True

    def _csi_char(self, ch: str, c: int, st: int) -> None:
        if 0x40 <= c < 0x7F:
            self.pstate = GROUND
            if st != CSI_IGNORE:
                self._csi_dispatch(ch)
        elif st == CSI_IGNORE:
            return
        elif c < 0x30:
            self.inter = (self.inter + ch)[:2]
            self.pstate = CSI_INTER
        elif st == CSI_INTER or c >= 0x7F:
            self.pstate = CSI_IGNORE
        elif c >= 0x3C:
            if st == CSI_ENTRY:
                self.private = ch
                self.pstate = CSI_PARAM
            else:
                self.pstate = CSI_IGNORE
        else:
            self.pstate = CSI_PARAM
            group = self.params[-1]
            if ch == ";":
                if len(self.params) < MAX_PARAMS:
                    self.params.append([-1])
            elif ch == ":":
                if len(group) < MAX_SUBPARAMS:
                    group.append(-1)
            else:
                value = group[-1]
                group[-1] = min(max(value, 0) * 10 + c - 0x30, MAX_PARAM_VALUE)

    # -- dispatch -------------------------------------------------------------------------------
    def _execute(self, c: int) -> None:
        self.last_char = ""
        if c == 0x08:
            self._clear_pending()
            self.x = max(self.x - 1, 0)
        elif c == 0x09:
            self._tab(1)
        elif c in (0x0A, 0x0B, 0x0C):
            self._clear_pending()
            self._index()
            if self.modes["lnm"]:
                self.x = 0
        elif c == 0x0D:
            self._clear_pending()
            self.x = 0
        elif c == 0x0E:
            self.gl = 1
        elif c == 0x0F:
            self.gl = 0

    def _esc_dispatch(self, ch: str) -> None:
        self.last_char = ""
        inter = self.inter
        if inter:
            if inter[0] in "()" and len(inter) == 1:
                self.charsets[inter == ")"] = ch
            elif inter == "#" and ch == "8":
                self._decaln()
            return
        if ch == "D":
            self._clear_pending()
            self._index()
        elif ch == "E":
            self._clear_pending()
            self._index()
            self.x = 0
        elif ch == "M":
            self._clear_pending()
            if self.y == self.top:
                self._scroll_down(self.top, self.bottom, 1)
            elif self.y > 0:
                self.y -= 1
        elif ch == "H":
            self.tabs[self.x] = True
        elif ch == "7":
            self._save_cursor()
        elif ch == "8":
            self._restore_cursor()
        elif ch == "=":
            self.modes["keypad"] = True
        elif ch == ">":
            self.modes["keypad"] = False
        elif ch == "c":
            self._full_reset()

    def _osc_dispatch(self) -> None:
        if self.overflow:
            return
        body = "".join(self.strbuf)
        number, _, rest = body.partition(";")
        if not (number.isascii() and number.isdigit()) or len(number) > 5:
            return
        code = int(number)
        if code in (0, 1, 2):
            value = sanitize_title(rest.encode("utf-8", "replace"))
            if code != 1:
                self._title = value
            if code != 2:
                self.icon_name = value
        elif code == 133 and rest:
            self._marks.append((rest[0], self.x, self.y))

    def _param(self, index: int, default: int) -> int:
        """The index-th parameter, with ``default`` for a missing or zero value."""
        if index < len(self.params):
            value = self.params[index][0]
            if value > 0:
                return value
        return default

    def _csi_dispatch(self, final: str) -> None:
        private, inter = self.private, self.inter
        if private == "" and inter == "":
            handler = _CSI.get(final)
            if final != "b":
                # REP repeats only a graphic character that immediately precedes it.
                self.last_char = ""
            if handler is not None:
                handler(self)
        elif private == "?" and inter == "" and final in "hl":
            for group in self.params:
                self._set_private_mode(group[0], final == "h")
        elif private == "?" and inter == "" and final == "n" and self._param(0, 0) == 6:
            self._reply(f"\x1b[?{self._cpr()}R".encode())
        elif private == ">" and inter == "" and final == "c" and self._param(0, 0) == 0:
            self._reply(DA2_REPLY)
        elif private == "" and inter == " " and final == "q":
            shape = max(self.params[0][0], 0)
            if shape <= 6:
                self.cursor_shape = shape
        elif private == "" and inter == "!" and final == "p":
            self._soft_reset()

    def _reply(self, data: bytes) -> None:
        if len(self._replies) + len(data) <= MAX_REPLIES:
            self._replies += data

    def _cpr(self) -> str:
        row = self.y - (self.top if self.modes["origin"] else 0)
        return f"{row + 1};{self.x + 1}"

    # -- modes ------------------------------------------------------------------------------------
    def _set_private_mode(self, mode: int, on: bool) -> None:
        names = {
            1: "cursor_keys",
            5: "reverse_video",
            66: "keypad",
            1004: "focus",
            2004: "bracketed_paste",
            2026: "sync",
        }
        if mode in names:
            self.modes[names[mode]] = on
        elif mode == 6:
            self.modes["origin"] = on
            self._goto(0, 0)
        elif mode == 7:
            self.modes["autowrap"] = on
            if not on:
                self.pending = False
        elif mode == 25:
            self.cursor_visible = on
        elif mode in MOUSE_MODES:
            self.modes["mouse"] = mode if on else 0
        elif mode in MOUSE_ENCODINGS:
            if on:
                self.modes["mouse_encoding"] = MOUSE_ENCODINGS[mode]
            elif self.modes["mouse_encoding"] == MOUSE_ENCODINGS[mode]:
                self.modes["mouse_encoding"] = "default"
        elif mode == 1048:
            self._save_cursor() if on else self._restore_cursor()
        elif mode in (47, 1047, 1049):
            self._switch_screen(mode, on)

    def _switch_screen(self, mode: int, on: bool) -> None:
        if on == self.alt:
            return  # already there: nothing is saved, switched or cleared (xterm, tmux)
        if on and mode == 1049:
            self._save_cursor()
        if not on and mode == 1047:
            self._erase_rows(0, self._rows)
        self.grid, self.other_grid = self.other_grid, self.grid
        self.wrapped, self.other_wrapped = self.other_wrapped, self.wrapped
        self.alt = on
        if on and mode == 1049:
            self._erase_rows(0, self._rows)
        if not on and mode == 1049:
            self._restore_cursor()

    def _soft_reset(self) -> None:
        self.modes.update(insert=False, origin=False)
        self.cursor_visible = True
        self.fg = self.bg = self.flags = 0
        self.top, self.bottom = 0, self._rows - 1
        self.charsets = ["B", "B"]
        self.gl = 0
        self.saved[self.alt] = None

    def _save_cursor(self) -> None:
        self.saved[self.alt] = (
            self.x,
            self.y,
            self.fg,
            self.bg,
            self.flags,
            self.modes["origin"],
            list(self.charsets),
            self.gl,
        )

    def _saved_state(self) -> tuple[int, int, int, int, int, bool, str, bool]:
        saved = self.saved[self.alt]
        if saved is None:
            return (0, 0, 0, 0, 0, False, "BB", False)
        x, y, fg, bg, flags, origin, charsets, gl = saved
        return (x, y, fg, bg, flags, origin, "".join(charsets), gl == 1)

    def _restore_cursor(self) -> None:
        saved = self.saved[self.alt]
        if saved is None:
            saved = (0, 0, 0, 0, 0, False, ["B", "B"], 0)
        x, y, self.fg, self.bg, self.flags, origin, charsets, self.gl = saved
        self.modes["origin"] = origin
        self.charsets = list(charsets)
        self.x = min(x, self._cols - 1)
        self.y = min(y, self._rows - 1)
        self.pending = False

    # -- printing ---------------------------------------------------------------------------------
    def _print(self, ch: str) -> None:
        c = ord(ch)
        if 0x5F <= c <= 0x7E and self.charsets[self.gl] == "0":
            ch = DEC_GRAPHICS[c]
        width = char_width(ch) if c >= 0x300 else 1
        if width == 0:
            self._combine(ch)
            return
        cols = self._cols
        if width == 2 and cols < 2:
            return
        if self.pending:
            self._wrap()
        if width == 2 and self.x == cols - 1:
            if self.modes["autowrap"]:
                self._wrap()
            else:
                self.x = cols - 2
        x, row = self.x, self.grid[self.y]
        if self.modes["insert"]:
            self._split_middle(row, x)
            row[x:] = ([(" ", 0, 0, 0)] * width + row[x:])[: cols - x]
            _clip_right(row)
        self._split(row, x)
        if width == 2:
            self._split(row, x + 1)
            row[x + 1] = ("", self.fg, self.bg, self.flags)
        row[x] = (ch, self.fg, self.bg, self.flags)
        self.last_char = ch
        x += width
        if x >= cols:
            self.x = cols - 1
            self.pending = self.modes["autowrap"]
        else:
            self.x = x

    def _print_ascii(self, text: str) -> None:
        """A run of printable ASCII, a row slice at a time (same result as _print per char)."""
        cols, i, n = self._cols, 0, len(text)
        attrs = (self.fg, self.bg, self.flags)
        while i < n:
            if self.pending:
                self._wrap()
            x, row = self.x, self.grid[self.y]
            k = min(n - i, cols - x)
            if row[x][0] == "" and x > 0:
                row[x - 1] = (" ", 0, 0, 0)
            if x + k < cols and row[x + k][0] == "":
                row[x + k] = (" ", 0, 0, 0)
            row[x : x + k] = [(ch, *attrs) for ch in text[i : i + k]]
            i += k
            x += k
            if x >= cols:
                self.x = cols - 1
                self.pending = self.modes["autowrap"]
                if not self.modes["autowrap"] and i < n:
                    row[cols - 1] = (text[-1], *attrs)  # the rest overwrites the last column
                    i = n
            else:
                self.x = x
        self.last_char = text[-1]

    def _split(self, row: list[Cell], x: int) -> None:
        """Blank the other half of a wide character that a write to column x cuts in two."""
        if row[x][0] == "" and x > 0:
            row[x - 1] = (" ", 0, 0, 0)
            row[x] = (" ", 0, 0, 0)
        elif x + 1 < self._cols and row[x + 1][0] == "":
            row[x + 1] = (" ", 0, 0, 0)

    def _split_middle(self, row: list[Cell], x: int) -> None:
        """Before a shift right at x: a wide character cut in its middle is blanked whole."""
        if row[x][0] == "" and x > 0:
            row[x - 1] = row[x] = (" ", 0, 0, 0)

    def _wrap(self) -> None:
        self.wrapped[self.y] = True
        self.pending = False
        self.x = 0
        self._index()

    def _combine(self, ch: str) -> None:
        x = self.x if self.pending else self.x - 1
        if x < 0:
            return
        row = self.grid[self.y]
        if row[x][0] == "" and x > 0:
            x -= 1
        text, fg, bg, flags = row[x]
        if len(text) <= MAX_COMBINING and text:
            row[x] = (text + ch, fg, bg, flags)

    def _repeat(self) -> None:
        if self.last_char:
            for _ in range(min(self._param(0, 1), self._cols * self._rows)):
                self._print(self.last_char)

    # -- movement ---------------------------------------------------------------------------------
    def _clear_pending(self) -> None:
        self.pending = False

    def _goto(self, x: int, y: int) -> None:
        """Absolute move; y is relative to the scroll region in origin mode."""
        self.pending = False
        if self.modes["origin"]:
            y = min(y + self.top, self.bottom)
        self.x = min(max(x, 0), self._cols - 1)
        self.y = min(max(y, 0), self._rows - 1)

    def _goto_row(self, y: int) -> None:
        """VPR: a relative move bounded by the screen only, not by the margins (xterm)."""
        self.pending = False
        self.y = min(y, self._rows - 1)

    def _move_up(self, n: int) -> None:
        self.pending = False
        limit = self.top if self.y >= self.top else 0
        self.y = max(self.y - n, limit)

    def _move_down(self, n: int) -> None:
        self.pending = False
        limit = self.bottom if self.y <= self.bottom else self._rows - 1
        self.y = min(self.y + n, limit)

    def _move_x(self, n: int) -> None:
        self.pending = False
        self.x = min(max(self.x + n, 0), self._cols - 1)

    def _next_line(self, n: int) -> None:
        """CNL/CPL: vertical move within the margins, then column 0."""
        self._move_down(n) if n > 0 else self._move_up(-n)
        self.x = 0

    def _tab(self, n: int) -> None:
        # Unlike other moves, HT keeps a pending wrap (xterm).
        x = self.x
        for _ in range(min(n, self._cols)):
            x += 1
            while x < self._cols - 1 and not self.tabs[x]:
                x += 1
            x = min(x, self._cols - 1)
        self.x = x

    def _back_tab(self, n: int) -> None:
        self.pending = False
        x = self.x
        for _ in range(min(n, self._cols)):
            x -= 1
            while x > 0 and not self.tabs[x]:
                x -= 1
            x = max(x, 0)
        self.x = x

    def _clear_tabs(self) -> None:
        mode = self._param(0, 0)
        if mode == 0:
            self.tabs[self.x] = False
        elif mode == 3:
            self.tabs = [False] * self._cols

    def _set_margins(self) -> None:
        top = self._param(0, 1) - 1
        bottom = min(self._param(1, self._rows), self._rows) - 1
        if top < bottom:
            self.top, self.bottom = top, bottom
            self._goto(0, 0)

    # -- scrolling and editing ----------------------------------------------------------------
    def _index(self) -> None:
        if self.y == self.bottom:
            self._scroll_up(self.top, self.bottom, 1)
        elif self.y < self._rows - 1:
            self.y += 1

    def _scroll_up(self, top: int, bottom: int, n: int) -> None:
        n = min(n, bottom - top + 1)
        keep = top == 0 and not self.alt and self._scrollback_limit > 0
        grid, wrapped = self.grid, self.wrapped
        for _ in range(n):
            row = grid.pop(top)
            del wrapped[top]
            if keep:
                self.scrollback.append(_pack(row))
            grid.insert(bottom, self._blank_row(self.bg))
            wrapped.insert(bottom, False)

    def _scroll_down(self, top: int, bottom: int, n: int) -> None:
        n = min(n, bottom - top + 1)
        for _ in range(n):
            del self.grid[bottom]
            del self.wrapped[bottom]
            self.grid.insert(top, self._blank_row(self.bg))
            self.wrapped.insert(top, False)

    def _insert_lines(self) -> None:
        if self.top <= self.y <= self.bottom:
            self._scroll_down(self.y, self.bottom, self._param(0, 1))
            self.x = 0
            self.pending = False

    def _delete_lines(self) -> None:
        if self.top <= self.y <= self.bottom:
            n = min(self._param(0, 1), self.bottom - self.y + 1)
            for _ in range(n):
                del self.grid[self.y]
                del self.wrapped[self.y]
                self.grid.insert(self.bottom, self._blank_row(self.bg))
                self.wrapped.insert(self.bottom, False)
            self.x = 0
            self.pending = False

    def _erase_cells(self, y: int, start: int, stop: int) -> None:
        row = self.grid[y]
        if start >= stop:
            return
        if start > 0:
            self._split(row, start)
        if stop < self._cols:
            self._split(row, stop - 1)
        row[start:stop] = [(" ", 0, self.bg, 0)] * (stop - start)

    def _erase_rows(self, start: int, stop: int) -> None:
        for y in range(start, stop):
            self.grid[y] = self._blank_row(self.bg)
            self.wrapped[y] = False

    def _erase_line(self) -> None:
        mode = self._param(0, 0)
        self.pending = False
        if mode == 0:
            self._erase_cells(self.y, self.x, self._cols)
            self.wrapped[self.y] = False
        elif mode == 1:
            self._erase_cells(self.y, 0, self.x + 1)
        elif mode == 2:
            self._erase_rows(self.y, self.y + 1)

    def _erase_display(self) -> None:
        mode = self._param(0, 0)
        self.pending = False
        if mode == 0:
            self._erase_cells(self.y, self.x, self._cols)
            self.wrapped[self.y] = False
            self._erase_rows(self.y + 1, self._rows)
        elif mode == 1:
            self._erase_rows(0, self.y)
            self._erase_cells(self.y, 0, self.x + 1)
        elif mode == 2:
            self._erase_rows(0, self._rows)
        elif mode == 3:
            self.scrollback.clear()

    def _erase_chars(self) -> None:
        self.pending = False
        self._erase_cells(self.y, self.x, min(self.x + self._param(0, 1), self._cols))

    def _insert_chars(self) -> None:
        self.pending = False
        row, x, cols = self.grid[self.y], self.x, self._cols
        n = min(self._param(0, 1), cols - x)
        self._split_middle(row, x)
        row[x:] = ([(" ", 0, self.bg, 0)] * n + row[x:])[: cols - x]
        _clip_right(row)

    def _delete_chars(self) -> None:
        self.pending = False
        row, x, cols = self.grid[self.y], self.x, self._cols
        n = min(self._param(0, 1), cols - x)
        self._split(row, x)
        if x + n < cols:
            self._split(row, x + n)
        row[x:] = row[x + n :] + [(" ", 0, self.bg, 0)] * n

    def _decaln(self) -> None:
        self.top, self.bottom = 0, self._rows - 1
        self.grid = [[("E", 0, 0, 0)] * self._cols for _ in range(self._rows)]
        self.wrapped = [False] * self._rows
        self._goto(0, 0)

    # -- SGR and modes ----------------------------------------------------------------------------
    def _sgr(self) -> None:
        groups, i, n = self.params, 0, len(self.params)
        while i < n:
            group = groups[i]
            p = max(group[0], 0)
            if p in (38, 48, 58):
                if len(group) > 1:
                    color = _color_from(group[1:], colon=True)
                else:
                    color, used = _color_semicolon(groups, i + 1)
                    i += used
                if color >= 0 and p != 58:
                    if p == 38:
                        self.fg = color
                    else:
                        self.bg = color
            elif p == 4 and len(group) > 1:
                self.flags = (
                    (self.flags | ATTR_UNDERLINE)
                    if group[1] > 0
                    else (self.flags & ~ATTR_UNDERLINE)
                )
            else:
                self._sgr_simple(p)
            i += 1

    def _sgr_simple(self, p: int) -> None:
        if p == 0:
            self.fg = self.bg = self.flags = 0
        elif p in _SGR_SET:
            self.flags |= _SGR_SET[p]
        elif p in _SGR_CLEAR:
            self.flags &= ~_SGR_CLEAR[p]
        elif 30 <= p <= 37:
            self.fg = COLOR_INDEXED | (p - 30)
        elif p == 39:
            self.fg = 0
        elif 40 <= p <= 47:
            self.bg = COLOR_INDEXED | (p - 40)
        elif p == 49:
            self.bg = 0
        elif 90 <= p <= 97:
            self.fg = COLOR_INDEXED | (p - 82)
        elif 100 <= p <= 107:
            self.bg = COLOR_INDEXED | (p - 92)

    def _set_ansi_modes(self, on: bool) -> None:
        for group in self.params:
            if group[0] == 4:
                self.modes["insert"] = on
            elif group[0] == 20:
                self.modes["lnm"] = on

    def _device_status(self) -> None:
        mode = self._param(0, 0)
        if mode == 5:
            self._reply(DSR_OK_REPLY)
        elif mode == 6:
            self._reply(f"\x1b[{self._cpr()}R".encode())

    # -- resize -----------------------------------------------------------------------------------
    def _resize(self, cols: int, rows: int) -> None:
        if (cols, rows) == (self._cols, self._rows):
            return
        for is_active in (True, False):
            grid = self.grid if is_active else self.other_grid
            wrapped = self.wrapped if is_active else self.other_wrapped
            drop = 0
            if rows < self._rows:
                # Drop blank rows below the cursor first, then push top rows out, as xterm does.
                excess = self._rows - rows
                while (
                    excess and len(grid) - 1 > (self.y if is_active else 0) and not _trim(grid[-1])
                ):
                    grid.pop()
                    wrapped.pop()
                    excess -= 1
                drop = excess
                if is_active != self.alt and self._scrollback_limit:
                    self.scrollback.extend(_pack(row) for row in grid[:drop])
                del grid[:drop]
                del wrapped[:drop]
            if is_active:
                self.y = max(self.y - drop, 0)
            for index, old in enumerate(grid):
                row = old[:cols] + [(" ", 0, 0, 0)] * (cols - len(old))
                if cols < len(old) and old[cols][0] == "":
                    row[cols - 1] = (" ", 0, 0, 0)  # a wide character cut by the new edge
                grid[index] = row
            while len(grid) < rows:
                grid.append([(" ", 0, 0, 0)] * cols)
                wrapped.append(False)
        self.tabs = (self.tabs + [x % 8 == 0 for x in range(len(self.tabs), cols)])[:cols]
        self._cols, self._rows = cols, rows
        self.top, self.bottom = 0, rows - 1
        self.x = min(self.x, cols - 1)
        self.y = min(self.y, rows - 1)
        self.pending = False
        self.saved = [
            None if s is None else (min(s[0], cols - 1), min(s[1], rows - 1), *s[2:])
            for s in self.saved
        ]


PackedRow = tuple[str, int, int, int] | tuple[Cell, ...]


def _pack(row: list[Cell]) -> PackedRow:
    """A scrollback line: trimmed, and one string when its cells are uniform narrow characters.

    Memory then follows the text kept (a few bytes per character), as in the compiled engine.
    """
    cells = _trim(row)
    if not cells:
        return ()
    texts, fgs, bgs, flags = zip(*cells, strict=True)
    text = "".join(texts)
    # No empty text and a total length of one per cell: every cell is a single code point.
    narrow = "" not in texts and len(text) == len(cells)
    if narrow and len(set(fgs)) == len(set(bgs)) == len(set(flags)) == 1:
        return (text, fgs[0], bgs[0], flags[0])
    return tuple(cells)


def _unpack(packed: PackedRow) -> list[Cell]:
    if packed and isinstance(packed[0], str):
        text, fg, bg, flags = packed
        return [(ch, fg, bg, flags) for ch in text]
    return list(packed)


def _clip_right(row: list[Cell]) -> None:
    """After a shift right, a wide character's left half may not stay in the last column."""
    text = row[-1][0]
    if text and char_width(text[0]) == 2:
        row[-1] = (" ", 0, 0, 0)


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


_CSI: dict[str, Callable[[PyteEmulator], None]] = {
    "@": PyteEmulator._insert_chars,
    "A": lambda e: e._move_up(e._param(0, 1)),
    "B": lambda e: e._move_down(e._param(0, 1)),
    "C": lambda e: e._move_x(e._param(0, 1)),
    "D": lambda e: e._move_x(-e._param(0, 1)),
    "E": lambda e: e._next_line(e._param(0, 1)),
    "F": lambda e: e._next_line(-e._param(0, 1)),
    "G": lambda e: e._move_x(e._param(0, 1) - 1 - e.x),
    "`": lambda e: e._move_x(e._param(0, 1) - 1 - e.x),
    "H": lambda e: e._goto(e._param(1, 1) - 1, e._param(0, 1) - 1),
    "f": lambda e: e._goto(e._param(1, 1) - 1, e._param(0, 1) - 1),
    "I": lambda e: e._tab(e._param(0, 1)),
    "J": PyteEmulator._erase_display,
    "K": PyteEmulator._erase_line,
    "L": PyteEmulator._insert_lines,
    "M": PyteEmulator._delete_lines,
    "P": PyteEmulator._delete_chars,
    "S": lambda e: e._scroll_up(e.top, e.bottom, e._param(0, 1)),
    "T": lambda e: e._scroll_down(e.top, e.bottom, e._param(0, 1)) if len(e.params) == 1 else None,
    "X": PyteEmulator._erase_chars,
    "Z": lambda e: e._back_tab(e._param(0, 1)),
    "a": lambda e: e._move_x(e._param(0, 1)),
    "b": PyteEmulator._repeat,
    "c": lambda e: e._reply(DA1_REPLY) if e._param(0, 0) == 0 else None,
    "d": lambda e: e._goto(e.x, e._param(0, 1) - 1),
    "e": lambda e: e._goto_row(e.y + e._param(0, 1)),
    "g": PyteEmulator._clear_tabs,
    "h": lambda e: e._set_ansi_modes(True),
    "l": lambda e: e._set_ansi_modes(False),
    "m": PyteEmulator._sgr,
    "n": PyteEmulator._device_status,
    "r": PyteEmulator._set_margins,
    "s": PyteEmulator._save_cursor,
    "u": PyteEmulator._restore_cursor,
}
