"""The terminal emulator interface, the cell model and the snapshot formats.

Every session shadows its output in an emulator so that an attaching client can be shown the
exact current screen. Two backends implement :class:`EmulatorProtocol`: the compiled
``ptyd._vt.VtEmulator`` (default) and ``ptyd.pyte_backend.PyteEmulator``, pyte corrected to
xterm (``PTYD_PURE=1``). Both render their snapshots through the functions of this module and
share its constants and limits, so the formats have one source of truth.

Cell model shared by both backends: a cell is ``(text, fg, bg, flags)``. ``text`` is the base
character plus combining marks, ``""`` for the right half of a wide character; colours use
:data:`COLOR_DEFAULT`, ``COLOR_INDEXED | n`` or ``COLOR_RGB | 0xRRGGBB``; ``flags`` is a bit set
of the ``ATTR_*`` constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

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

    @property
    def cursor_keys(self) -> bool: ...

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


def trim_row(row: Sequence[Cell]) -> list[Cell]:
    """A row without its trailing blank default cells."""
    end = len(row)
    while end and row[end - 1][0] in (" ", "") and row[end - 1][1:] == (0, 0, 0):
        end -= 1
    return list(row[:end])


def row_text(row: Sequence[Cell]) -> str:
    """A row as displayed: wide characters once, trailing spaces trimmed."""
    return "".join(
        cell[0] or ("" if i and row[i - 1][0] else " ") for i, cell in enumerate(row)
    ).rstrip(" ")


def _history(state: ScreenState, scrollback: int) -> list[Row]:
    """The last ``scrollback`` lines of history, or all of it when it holds fewer."""
    if scrollback <= 0:
        return []
    return state.scrollback[max(0, len(state.scrollback) - scrollback) :]


def render_text(state: ScreenState, scrollback: int = 0) -> str:
    lines = _history(state, scrollback)
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


def cell_runs(row: Sequence[Cell]) -> list[list[Any]]:
    """A row in the JSON form: [text, attributes] for each run of cells with the same
    attributes, trailing blank default cells trimmed."""
    runs: list[list[Any]] = []
    key: tuple[int, int, int] | None = None
    for cell in trim_row(row):
        text = cell[0]
        if key == cell[1:] and runs:
            runs[-1][0] += text
        else:
            key = cell[1:]
            runs.append([text or " " if not runs or text else text, attrs_dict(*key)])
    return [[text, attrs] for text, attrs in runs]


def render_json(state: ScreenState, scrollback: int = 0) -> dict[str, Any]:
    lines = _history(state, scrollback)
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
        "lines": [cell_runs(row) for row in state.lines],
        "scrollback": [cell_runs(row) for row in lines],
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
        cells = trim_row(row)
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


def _restore_pending_wrap(state: ScreenState, row: int) -> str:
    """Bytes that leave the target's cursor at the state's column, on ``row`` (as CUP counts
    it, so relative to the margins in origin mode), with a wrap pending, once the tab stops are
    set.

    Only writing the last column sets a pending wrap, so the last cell of the cursor's row is
    rewritten as it is. CBT keeps the wrap (xterm) and moves to the previous tab stop, or to
    column 0 when there is none: a wrap pending away from the last column is reached with CBT
    from it, through a tab stop set at the column for the purpose and cleared after (TBC 0
    keeps the wrap too) when the column has none.
    """
    x, y, last = state.cursor_x, state.cursor_y, state.cols - 1
    start = last - 1 if last and state.lines[y][last][0] == "" else last
    cell = state.lines[y][start]
    rewrite = f"\x1b[{row + 1};{start + 1}H{_sgr(*cell[1:])}{cell[0] or ' '}"
    if x == last:
        return rewrite
    stops = set(state.tabs)
    is_stop_added = x > 0 and x not in stops
    back_tabs = sum(1 for stop in stops if x < stop < last) + 1
    return (
        (f"\x1b[{row + 1};{x + 1}H\x1bH" if is_stop_added else "")
        + rewrite
        + f"\x1b[{back_tabs}Z"
        + ("\x1b[0g" if is_stop_added else "")
    )


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
        out.append(_restore_pending_wrap(state, row))
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
