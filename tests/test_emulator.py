"""Emulator behaviour on both backends: corpora, per-family units, snapshots, hostile input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import msgpack
import pyte
import pytest

from ptyd._vt import VtEmulator
from ptyd.emulator import EmulatorProtocol, sanitize_title
from ptyd.pyte_backend import PyteEmulator, PyteScreen
from ptyd.widths import char_width, width_blocks
from tests.emulator_corpus import (
    XTERM_UNCOVERED,
    pyte_case,
    pyte_cases,
    xterm_case,
    xterm_cases,
)

BACKENDS: dict[str, type] = {"compiled": VtEmulator, "pure": PyteEmulator}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def emu_class(request: pytest.FixtureRequest) -> type:
    return BACKENDS[request.param]


def make(emu_class: type, data: bytes = b"", cols: int = 80, rows: int = 24) -> EmulatorProtocol:
    emu = emu_class(cols, rows)
    emu.feed(data)
    return emu


def lines(emu: EmulatorProtocol) -> list[str]:
    return emu.snapshot_text().split("\n")


def cursor(emu: EmulatorProtocol) -> tuple[int, int]:
    c = emu.snapshot_json()["cursor"]
    return c["x"], c["y"]


@pytest.mark.parametrize("name", xterm_cases())
def test_xterm_corpus(emu_class: type, name: str) -> None:
    data, expected = xterm_case(name)
    emu = make(emu_class, data, 80, 25)
    if name in XTERM_UNCOVERED:
        assert lines(emu) != expected, f"{name} now passes: remove it from XTERM_UNCOVERED"
    else:
        assert lines(emu) == expected


@pytest.mark.parametrize("name", pyte_cases())
def test_pyte_captured(emu_class: type, name: str) -> None:
    data, expected = pyte_case(name)
    assert lines(make(emu_class, data)) == expected


def test_protocol(emu_class: type) -> None:
    assert isinstance(emu_class(80, 24), EmulatorProtocol)


def test_pending_wrap_at_right_margin(emu_class: type) -> None:
    emu = make(emu_class, b"x" * 10, cols=10, rows=3)
    assert cursor(emu) == (9, 0)
    emu.feed(b"\bA")  # BS from the pending-wrap state lands on column 8, as in xterm
    assert lines(emu)[0] == "xxxxxxxxAx"
    emu.feed(b"\rB")
    assert lines(emu)[0] == "BxxxxxxxAx"
    emu.feed(b"\x1b[10GCD")
    assert lines(emu)[:2] == ["BxxxxxxxAC", "D"]


# Lines of the xterm corpus file t0084-CBT (real xterm, 80 columns), on the second row so that
# RI does not scroll: "abcdefgh" fills columns 72-79 and leaves a wrap pending; CBT moves to the
# previous tab stop and keeps it, so "!" goes to the next line; RI and IND clear it, so "!"
# lands on the tab stop. The same with a tab stop at the last column.
_TO_72 = b"\x1b[2H" + b"\t" * 9
CBT_CORPUS_LINES = {
    "near-end": (b"abcdefg\x1b[Z!", ["", " " * 72 + "!bcdefg"], (73, 1)),
    "at-end": (b"abcdefgh\x1b[Z!", ["", " " * 72 + "abcdefgh", "!"], (1, 2)),
    "at-end-2": (b"abcdefgh\x1b[2Z!", ["", " " * 72 + "abcdefgh", "!"], (1, 2)),
    "clipped": (b"abcdefgh\x1b[Z\x1bM\x1bD!", ["", " " * 72 + "!bcdefgh"], (73, 1)),
    "clipped-2": (
        b"abcdefgh\x1b[2Z\x1bM\x1bD!",
        ["", " " * 64 + "!" + " " * 7 + "abcdefgh"],
        (65, 1),
    ),
}


@pytest.mark.parametrize("last_stop", [False, True], ids=["default-stops", "stop-at-80"])
@pytest.mark.parametrize("case", list(CBT_CORPUS_LINES))
def test_cbt_keeps_a_pending_wrap_as_xterm_does(
    emu_class: type, case: str, last_stop: bool
) -> None:
    data, expected, position = CBT_CORPUS_LINES[case]
    setup = b"\x1b[1;80H\x1bH" if last_stop else b""
    emu = make(emu_class, setup + _TO_72 + data, cols=80, rows=4)
    assert lines(emu) == [*expected, *[""] * (4 - len(expected))]
    assert cursor(emu) == position


@pytest.mark.parametrize("last_stop", [False, True], ids=["default-stops", "stop-at-20"])
@pytest.mark.parametrize(
    ("count", "column"), [(0, 16), (1, 16), (2, 8), (3, 0), (4, 0), (99, 0), (99999, 0)]
)
def test_cbt_counts_keep_the_pending_wrap(
    emu_class: type, count: int, column: int, last_stop: bool
) -> None:
    setup = b"\x1b[1;20H\x1bH\x1b[H" if last_stop else b""
    emu = make(emu_class, setup + b"x" * 20 + b"\x1b[%dZ" % count, cols=20, rows=2)
    state = emu.state()  # type: ignore[attr-defined]
    assert (state.cursor_x, state.cursor_y, state.pending_wrap) == (column, 0, True)
    assert emu.snapshot_json()["cursor"]["x"] == column
    emu.feed(b"!")
    assert lines(emu) == ["x" * 20, "!"]
    assert cursor(emu) == (1, 1)


def test_cbt_at_column_0(emu_class: type) -> None:
    # Without a pending wrap CBT at column 0 stays there; with one it keeps it.
    emu = make(emu_class, b"ab\r\x1b[Z!", cols=10, rows=2)
    assert lines(emu) == ["!b", ""]
    emu = make(emu_class, b"\x1b[3g" + b"x" * 10 + b"\x1b[Z", cols=10, rows=2)
    assert emu.state().pending_wrap  # type: ignore[attr-defined]
    assert cursor(emu) == (0, 0)
    emu.feed(b"\x1b[Z\x1b[5Z!")
    assert lines(emu) == ["x" * 10, "!"]


def test_tabs_and_marks_after_cbt_with_a_pending_wrap(emu_class: type) -> None:
    # HT and CHT keep the wrap too (xterm moves the column only); a combining mark still
    # joins the character last written, at the last column.
    emu = make(emu_class, ("x" * 19 + "y\x1b[2Z\u0301\t").encode(), cols=20, rows=2)
    state = emu.state()  # type: ignore[attr-defined]
    assert (state.cursor_x, state.pending_wrap) == (16, True)  # CBT 2 to 8, HT to 16
    assert lines(emu)[0] == "x" * 19 + "y\u0301"
    emu.feed(b"\x1b[9I!")
    assert lines(emu) == ["x" * 19 + "y\u0301", "!"]


@pytest.mark.parametrize(
    "data",
    [
        b"x" * 20 + b"\x1b[Z",  # a tab stop at the column
        b"x" * 20 + b"\x1b[3Z",  # column 0, a tab stop
        b"\x1b[3g" + b"x" * 20 + b"\x1b[Z",  # column 0, no tab stop at all
        b"x" * 20 + b"\x1b[2Z\x1b[g",  # its tab stop cleared since
        b"x" * 20 + b"\x1b[Z\x1b[3g",  # every tab stop cleared since
        b"\x1b[1;20H\x1bH\x1b[H" + b"x" * 20 + b"\x1b[Z\x1b[g",  # a tab stop at the last column
        b"x" * 20,  # at the last column
        ("\x1b[2;3r\x1b[?6h\x1b[2;1H\x1b[31m" + "x" * 18 + "中\x1b[Z\x1b[g\x1b[0m").encode(),
        b"x" * 20 + b"\x1b[Z\x1b[4h\x1b[?2004h\x1b)0\x0e",  # modes set after
    ],
    ids=[
        "stop",
        "col-0",
        "no-stops",
        "stop-cleared",
        "all-cleared",
        "last-stop",
        "last-column",
        "origin-wide",
        "modes",
    ],
)
def test_ansi_round_trip_of_a_wrap_pending_away_from_the_last_column(
    emu_class: type, data: bytes
) -> None:
    emu = make(emu_class, data, cols=20, rows=4)
    copy = make(emu_class, emu.snapshot_ansi(), cols=20, rows=4)
    state, replayed = emu.state(), copy.state()  # type: ignore[attr-defined]
    assert state.pending_wrap and replayed.pending_wrap
    fields = ("cursor_x", "cursor_y", "lines", "tabs", "modes", "saved_cursor")
    assert [getattr(replayed, f) for f in fields] == [getattr(state, f) for f in fields]
    assert copy.snapshot_json() == emu.snapshot_json()
    emu.feed(b"!")
    copy.feed(b"!")
    assert copy.snapshot_json() == emu.snapshot_json()


def test_wide_char_at_margin_wraps_whole(emu_class: type) -> None:
    emu = make(emu_class, "abcd中".encode(), cols=5, rows=2)
    assert lines(emu) == ["abcd", "中"]
    assert cursor(emu) == (2, 1)


@pytest.mark.parametrize(
    ("column", "count", "expected"),
    [(1, 2, "中cd"), (2, 1, "a中cd"), (2, 2, "a cd"), (3, 1, "ab cd"), (4, 1, "ab cd")],
)
def test_dch_keeps_a_wide_character_it_moves_whole(
    emu_class: type, column: int, count: int, expected: str
) -> None:
    # xterm blanks only the halves whose other half is deleted; the cells after move intact.
    emu = make(emu_class, b"ab\xe4\xb8\xadcd\x1b[%dG\x1b[%dP" % (column, count), cols=8, rows=1)
    assert lines(emu) == [expected]
    texts = [cell[0] for cell in emu.state().lines[0]]  # type: ignore[attr-defined]
    if "中" in texts:
        assert texts[texts.index("中") + 1] == ""  # its right half moved with it


def test_combining_attaches_to_previous_cell(emu_class: type) -> None:
    emu = make(emu_class, "e\u0301x".encode(), cols=5, rows=1)
    assert lines(emu) == ["e\u0301x"]
    assert cursor(emu) == (2, 0)


def test_utf8_split_across_reads(emu_class: type) -> None:
    emu = emu_class(10, 1)
    for byte in "é中".encode():
        emu.feed(bytes([byte]))
    assert lines(emu) == ["é中"]


def test_invalid_utf8_becomes_replacement(emu_class: type) -> None:
    assert lines(make(emu_class, b"a\xffb\xc3(", cols=10, rows=1)) == ["a\ufffdb\ufffd("]


def test_alt_screen_keeps_primary(emu_class: type) -> None:
    emu = make(emu_class, b"primary\x1b[?1049halt", cols=10, rows=2)
    assert lines(emu) == ["       alt", ""]
    assert emu.snapshot_json()["alternate_screen"] is True
    emu.feed(b"\x1b[?1049l")
    assert lines(emu) == ["primary", ""]
    assert cursor(emu) == (7, 0)


def test_1049_asked_again_saves_and_clears_or_restores(emu_class: type) -> None:
    # xterm's 1049 saves the cursor and clears on every set, and restores on every reset;
    # only the switch itself waits for the other screen.
    emu = make(emu_class, b"\x1b[?1049hALT\x1b[?1049hX", cols=4, rows=2)
    assert lines(emu) == ["   X", ""]  # cleared; the cursor stays where it was
    emu = make(emu_class, b"ab\x1b7\r\n\r\ncd\x1b[?1049lZ", cols=4, rows=4)
    assert lines(emu) == ["abZ", "", "cd", ""]


def test_each_screen_has_its_saved_cursor_and_1049_saves_into_the_primarys(
    emu_class: type,
) -> None:
    """xterm: 1049 saves "as DECSC does", into the primary screen's saved cursor, and the
    alternate screen has its own (tmux keeps 1049's apart and one DECSC for both screens)."""
    emu = make(emu_class, b"\x1b[1;5HX\x1b7\x1b[3;1HY\x1b[?1049h\x1b[?1049l\x1b8Z", rows=4)
    assert lines(emu) == ["    X", "", "YZ", ""]  # 1049 replaced the DECSC of column 5
    emu = make(emu_class, b"\x1b[1;5H\x1b7\x1b[?1049h\x1b[3;3H\x1b8W", rows=4)
    assert lines(emu) == ["W", "", "", ""]  # the alternate screen's own: never saved, home


def _distinct_mark_pairs(count: int, per_line: int = 70) -> bytes:
    """``count`` cells, each a letter with a different pair of combining marks (4,096 pairs
    at most), ``per_line`` to a line: the compiled engine interns each pair in a table."""
    cells = [
        "b" + chr(0x300 + (i // 64) % 64) + chr(0x300 + i % 64) + ("\r\n" * (i % per_line == 0))
        for i in range(count)
    ]
    return "".join(cells).encode()


def test_combining_marks_show_after_thousands_of_distinct_ones(emu_class: type) -> None:
    """The compiled engine's table of mark sequences (4,095) drops the ones no cell shows any
    more when it is full: a long-lived session shows new marks, as the pure backend does,
    and the ones still on the screen keep theirs."""
    emu = emu_class(80, 24, 20)
    emu.feed("x\u0301\x1b[2;24r\x1b[2H".encode())  # row 1 stays put: rows 2-24 scroll
    for _ in range(3):
        emu.feed(_distinct_mark_pairs(4096))
    emu.feed("\r\ne\u0360\u0361".encode())
    rows = emu.snapshot_text().split("\n")
    assert rows[0] == "x\u0301" and rows[-1] == "e\u0360\u0361"
    assert emu.snapshot_text(20).count("\u0300") > 20  # the history keeps its marks


@pytest.mark.parametrize("clear", [b"\x1bc", b"\x1b[2J\x1b[3J\x1b[H"], ids=["RIS", "ED2-ED3"])
def test_clearing_everything_frees_the_mark_table(emu_class: type, clear: bytes) -> None:
    emu = emu_class(80, 24, 100)
    emu.feed(_distinct_mark_pairs(4095, per_line=80))  # all of them still shown or kept
    emu.feed(clear + "e\u0360\u0361".encode())
    assert emu.snapshot_text().split("\n")[0] == "e\u0360\u0361"


def test_ris_forgets_the_scrollback(emu_class: type) -> None:
    emu = emu_class(10, 4, 100)
    emu.feed(b"".join(b"line%d\r\n" % i for i in range(10)))
    assert "line0" in emu.snapshot_text(100)
    emu.feed(b"\x1bc")
    assert emu.state().scrollback == []
    assert emu.snapshot_text(100) == "\n\n\n"


def test_decstr_resets_autowrap_keys_keypad_and_cursor_shape(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[?7l\x1b[?1h\x1b=\x1b[4 q\x1b[!p", cols=10, rows=2)
    state = emu.state()
    assert state.modes["autowrap"] is True
    assert state.modes["cursor_keys"] is False
    assert state.modes["keypad"] is False
    assert state.cursor_shape == 0
    emu.feed(b"0123456789AB")
    assert lines(emu) == ["0123456789", "AB"]


def test_decrc_keeps_autowrap_as_it_is(emu_class: type) -> None:
    # Current xterm leaves DECAWM out of the saved cursor (DEC 070), as tmux does.
    emu = make(emu_class, b"\x1b7\x1b[?7l\x1b80123456789AB", cols=10, rows=2)
    assert lines(emu) == ["012345678B", ""]


def test_decrc_in_origin_mode_stays_inside_newer_margins(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[?6h\x1b[5;1H\x1b7\x1b[2;3r\x1b8X", cols=10, rows=6)
    assert cursor(emu) == (1, 2)
    assert lines(emu)[2] == "X"


def test_vpr_in_origin_mode_stops_at_the_bottom_margin(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[2;4r\x1b[?6h\x1b[10eX", cols=10, rows=8)
    assert lines(emu)[3] == "X"
    emu = make(emu_class, b"\x1b[2;4r\x1b[10eX", cols=10, rows=8)
    assert lines(emu)[7] == "X"


def test_scroll_region_with_origin_mode(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[2;3r\x1b[?6h\x1b[1;1HA\x1b[5;1HB\nC", cols=4, rows=4)
    assert lines(emu) == ["", "B", " C", ""]


def test_replies(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[3;5H\x1b[6n\x1b[5n\x1b[c\x1b[>c\x1b[?6n")
    assert emu.take_replies() == b"\x1b[3;5R\x1b[0n\x1b[?62;22c\x1b[>1;10;0c\x1b[?3;5R"
    assert emu.take_replies() == b""


def test_title_sanitized_and_capped(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b]2;a\x01b\x1b\\")
    assert emu.title == "ab"
    emu.feed(b"\x1b]0;" + b"t" * 1000 + b"\x07")
    assert emu.title == "t" * 256
    emu.feed(b"\x1b]2;" + b"x" * 100_000 + b"\x07")
    assert emu.title == "t" * 256  # over-long strings are discarded whole
    assert sanitize_title(b"\x9b\xc2\x9bok") == "\ufffdok"


@pytest.mark.parametrize(
    "seq", [b"\x1b[1;2C", b"\x1b[?6n", b"\x1b[1;2;3;4;5;6;7;8;9X", b"\x1b[99999999999999@"]
)
def test_sequences_that_crash_pyte(emu_class: type, seq: bytes) -> None:
    emu = make(emu_class, b"ab" + seq + b"cd")
    assert "cd" in lines(emu)[0]
    assert getattr(emu, "errors_caught", 0) == 0  # corrected, not merely caught


@pytest.mark.parametrize("seq", [b"\x1b[1;2C", b"\x1b[?6n"])
def test_pyte_itself_still_raises(seq: bytes) -> None:
    """The difference the pure backend corrects is pyte's (0.8.2); if pyte fixes it, say so."""
    with pytest.raises(TypeError):
        pyte.ByteStream(pyte.Screen(80, 24)).feed(seq)


def test_pure_guard_contains_a_raising_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a pyte handler raises stays inside the backend; later output still works."""

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a pyte handler failed")

    monkeypatch.setattr(PyteScreen, "erase_in_line", broken)
    monkeypatch.setattr(PyteScreen, "_draw_char", broken)
    emu = PyteEmulator(10, 2)
    emu.feed("ab\x1b[Kcd\x1b[2;1H\u00e9f".encode())  # EL and the non-ASCII run raise
    assert lines(emu) == ["abcd", ""]
    assert emu.errors_caught == 2
    emu.feed(b"\x1b[2;3Hok")
    assert lines(emu) == ["abcd", "  ok"]


def test_pure_guard_resets_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of pyte's own feed loop leaves the parser in the ground state."""
    emu = PyteEmulator(10, 1)
    emu.feed(b"\x1b[")  # the parser is now inside a CSI sequence
    stream = emu._stream

    def broken(data: str) -> None:
        raise ValueError("pyte's feed failed")

    monkeypatch.setattr(pyte.Stream, "feed", lambda self, data: broken(data))
    emu.feed(b"1")
    monkeypatch.undo()
    assert emu.errors_caught == 1
    emu.feed(b"Xy")  # text, not the end of the CSI sequence (ECH)
    assert lines(emu) == ["Xy"]
    assert stream is emu._stream


def test_pure_backend_is_pyte() -> None:
    emu = PyteEmulator(10, 2)
    assert isinstance(emu.pyte_screen, pyte.Screen)
    assert isinstance(emu._stream, pyte.ByteStream)
    emu.feed("ab\x1b[2;1H中".encode())
    assert emu.pyte_screen.display == ["ab        ", "中        "]


def test_sgr_colon_and_truecolor(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[38:2::1:2:3;48;5;200;1mX\x1b[4:0;38;2;9;8;7mY", cols=4, rows=1)
    assert emu.snapshot_json()["lines"][0] == [
        ["X", {"fg": "#010203", "bg": 200, "bold": True}],
        ["Y", {"fg": "#090807", "bg": 200, "bold": True}],
    ]


def test_dec_graphics_in_utf8(emu_class: type) -> None:
    assert lines(make(emu_class, b"\x1b(0lqk\x1b(Bq", cols=5, rows=1)) == ["┌─┐q"]


def test_scrollback(emu_class: type) -> None:
    emu = emu_class(5, 2, scrollback=3)
    emu.feed(b"1\r\n2\r\n3\r\n4\r\n5\r\n6")
    assert emu.snapshot_text(scrollback=10) == "2\n3\n4\n5\n6"
    assert emu.snapshot_json(scrollback=1)["scrollback"] == [[["4", {}]]]
    for asked in (3, 4, 5):  # more than is held: all of it (between 1x and 2x it gave too few)
        assert emu.snapshot_text(scrollback=asked) == "2\n3\n4\n5\n6"
        assert len(emu.snapshot_json(scrollback=asked)["scrollback"]) == 3


def test_resize_clamps_cursor(emu_class: type) -> None:
    emu = make(emu_class, b"abc\r\ndef\x1b[2;3H", cols=10, rows=3)
    emu.resize(2, 2)
    assert (emu.cols, emu.rows) == (2, 2)
    assert cursor(emu) == (1, 1)
    assert lines(emu) == ["ab", "de"]
    emu.feed(b"\x1b[6n")
    assert emu.take_replies() == b"\x1b[2;2R"


def test_shrinking_drops_rows_below_the_cursor_then_scrolls_top_rows_out(emu_class: type) -> None:
    # xterm and tmux: rows below the cursor go first, blank or not; then top rows scroll into
    # the history.
    emu = emu_class(10, 6, 100)
    emu.feed(b"1\r\n2\r\n3\r\n4\r\n5\r\n6\x1b[4;1H")
    emu.resize(10, 3)
    assert lines(emu) == ["2", "3", "4"]
    assert cursor(emu) == (0, 2)
    assert emu.snapshot_text(100).split("\n") == ["1", "2", "3", "4"]


def test_growing_brings_the_scrollback_back(emu_class: type) -> None:
    emu = emu_class(10, 6, 100)
    emu.feed(b"1\r\n2\r\n3\r\n4\r\n5\r\n6\x1b[4;1H")
    emu.resize(10, 3)
    emu.resize(10, 6)
    assert lines(emu) == ["1", "2", "3", "4", "", ""]
    assert cursor(emu) == (0, 3)
    assert emu.state().scrollback == []
    # History lines with attributes and a wide character, brought back narrower: the wide
    # character cut by the new edge is blanked, the attributes come back with the text.
    emu.feed(b"\x1b[2J\x1b[H" + b"\x1b[31mred \xe4\xb8\xad\x1b[m\r\n" * 8)
    emu.resize(10, 2)
    assert len(emu.state().scrollback) >= 7
    emu.resize(4, 9)
    state = emu.state()
    assert emu.snapshot_text().split("\n")[:8] == ["red"] * 8
    assert all(row[0][0] == "r" and row[0][1] != 0 for row in state.lines[:8])
    assert all(row[3][0] == " " for row in state.lines[:8])


def test_the_alternate_screen_does_not_take_lines_from_the_scrollback(emu_class: type) -> None:
    emu = emu_class(10, 3, 100)
    emu.feed(b"1\r\n2\r\n3\r\n4\r\n5\x1b[?1049h")
    emu.resize(10, 5)
    assert emu.snapshot_text(100).split("\n")[:2] == ["1", "2"]
    emu.feed(b"\x1b[?1049l")
    assert lines(emu) == ["3", "4", "5", "", ""]


def test_ansi_round_trip(emu_class: type) -> None:
    emu = make(
        emu_class,
        b"\x1b]2;T\x07\x1b[1;31mred\x1b[0m \x1b[44mbg\x1b[2;5r\x1b[?2004h"
        b"\x1b[?1000h\x1b[?1006h\x1b[?1049h\x1b[5;3Halt\x1b[4 q\x1b[?25l",
        cols=20,
        rows=6,
    )
    copy = make(emu_class, emu.snapshot_ansi(), cols=20, rows=6)
    assert copy.snapshot_json(scrollback=0) == emu.snapshot_json(scrollback=0)
    copy.feed(b"\x1b[?1049l")
    emu.feed(b"\x1b[?1049l")
    assert copy.snapshot_json() == emu.snapshot_json()


def test_pyte_compatible_view(emu_class: type) -> None:
    emu = make(emu_class, "\x1b[1;31mab\x1b[0m中\x1b[?1h\x1b]2;t\x07".encode(), cols=6, rows=2)
    screen = emu.screen  # type: ignore[attr-defined]
    reference = pyte.Screen(6, 2)
    pyte.ByteStream(reference).feed("\x1b[1;31mab\x1b[0m中".encode())
    assert screen.display == reference.display
    assert (screen.cursor.x, screen.cursor.y) == (reference.cursor.x, reference.cursor.y)
    assert screen.buffer[0][0] == tuple(reference.buffer[0][0])
    assert screen.buffer[0][2].data == "中"
    assert (screen.columns, screen.lines, screen.title) == (6, 2, "t")
    assert pyte.modes.DECAWM in screen.mode
    assert 1 << 5 in screen.mode


def test_pyte_view_is_live_and_reads_as_pyte_does(emu_class: type) -> None:
    # pyte code keeps the screen and feeds the stream: the view follows the emulator.
    emu = emu_class(20, 3)
    screen = emu.screen
    reference = pyte.Screen(20, 3)
    stream = pyte.ByteStream(reference)
    assert screen.dirty == {0, 1, 2} and screen.margins is None is reference.margins
    screen.dirty.clear()
    chunk = b"\x1b[31ma\x1b[93mb\x1b[38;5;200mc\x1b[48;5;244md\x1b[38;2;1;2;3me\x1b[1;4m"
    emu.feed(chunk)
    stream.feed(chunk)
    assert screen.display == reference.display
    assert screen.dirty == {0}
    for x in range(5):
        assert tuple(screen.buffer[0][x]) == tuple(reference.buffer[0][x])
    assert tuple(screen.cursor.attrs) == tuple(reference.cursor.attrs)
    assert screen.tabstops == reference.tabstops
    assert screen.default_char == reference.default_char
    emu.feed(b"\x1b[2;3r\x1b]1;icon\x07")
    stream.feed(b"\x1b[2;3r")
    assert screen.margins == reference.margins
    assert screen.icon_name == "icon"
    emu.feed(b"\x1b[?5h")
    stream.feed(b"\x1b[?5h")
    assert screen.buffer[0][0].reverse and reference.buffer[0][0].reverse
    assert screen.default_char == reference.default_char  # reverse too
    with pytest.raises(TypeError):
        screen.buffer[0][0] = screen.default_char  # type: ignore[index]
    emu.resize(10, 2)
    assert (screen.columns, screen.lines) == (10, 2)


def test_pyte_view_has_xterms_256_colours_as_pyte_does() -> None:
    from ptyd.emulator import COLOR_INDEXED
    from ptyd.pyte_view import _pyte_color

    for n in range(16, 256):
        assert _pyte_color(COLOR_INDEXED | n) == pyte.graphics.FG_BG_256[n]


# (input, cols, rows, expected screen text, expected cursor (x, y)): one or two per family.
FAMILIES = {
    "tabs": (b"a\tb\x1b[3g\tc\x1bH\r\td", 20, 1, "a       b          d", (19, 0)),
    "cht-cbt": (b"\x1b[2Ix\x1b[Zy", 20, 1, "                y", (17, 0)),
    "ich-wide": ("ab中d\x1b[1;2H\x1b[2@".encode(), 8, 1, "a  b中d", (1, 0)),
    "dch-splits-wide": ("a中b\x1b[1;3H\x1b[P".encode(), 6, 1, "a b", (2, 0)),
    "ech": (b"abcdef\x1b[1;2H\x1b[3X", 6, 1, "a   ef", (1, 0)),
    "il-dl-region": (
        b"1\r\n2\r\n3\r\n4\x1b[2;3r\x1b[2;1H\x1b[L\x1b[3;1H\x1b[2M",
        4,
        4,
        "1\n\n\n4",
        (0, 2),
    ),
    "su-sd": (b"1\r\n2\r\n3\x1b[S\x1b[2T", 2, 3, "\n\n2", (1, 2)),
    "rep": (b"ab\x1b[3b\r\n\x1b[2b", 8, 2, "abbbb", (0, 1)),
    "decsc-charset": (b"\x1b(0\x1b7\x1b(Bq\x1b8q", 4, 1, "─", (1, 0)),
    "nel-ind-ri": (b"ab\x1bEc\x1bDd\x1bMe", 4, 3, "ab\nc e\n d", (3, 1)),
    "lnm": (b"\x1b[20hab\ncd", 4, 2, "ab\ncd", (2, 1)),
    "origin-home": (b"\x1b[2;3r\x1b[?6hX\x1b[?6lY", 4, 4, "Y\nX", (1, 0)),
    "decaln": (b"\x1b[2;3r\x1b#8\x1b[5;1Hx", 3, 5, "EEE\nEEE\nEEE\nEEE\nxEE", (1, 4)),
    "ris": (b"abc\x1b[?1049h\x1b[4h\x1bcd", 4, 2, "d", (1, 0)),
    "autowrap-off": (b"\x1b[?7labcdef", 4, 1, "abcf", (3, 0)),
    "wide-at-margin-nowrap": ("\x1b[?7labc中".encode(), 4, 1, "ab中", (3, 0)),
    "combining-after-wrap-pending": ("abc\u0301".encode(), 3, 2, "abc\u0301", (2, 0)),
    "cuu-cud-margins": (b"\x1b[2;3r\x1b[3;1H\x1b[9Ax\x1b[9By", 3, 4, "\nx\n y", (2, 2)),
    "cpl-cnl": (b"\x1b[3;3H\x1b[Fa\x1b[2Eb", 4, 4, "\na\n\nb", (1, 3)),
    "ed-modes": (b"aaaa\r\nbbbb\r\ncccc\x1b[2;2H\x1b[1J", 4, 3, "\n  bb\ncccc", (1, 1)),
    "bce": (b"\x1b[44m\x1b[2J\x1b[0mx", 3, 1, "x", (1, 0)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sequence_families(emu_class: type, family: str) -> None:
    data, cols, rows, text, position = FAMILIES[family]
    emu = make(emu_class, data, cols=cols, rows=rows)
    assert emu.snapshot_text().rstrip("\n") == text
    assert cursor(emu) == position


def test_bce_colours_erased_cells(emu_class: type) -> None:
    emu = make(emu_class, b"\x1b[44m\x1b[2J\x1b[0mx", cols=3, rows=1)
    assert emu.snapshot_json()["lines"] == [[["x", {}], ["  ", {"bg": 4}]]]


def test_modes_and_cursor_in_json(emu_class: type) -> None:
    emu = make(
        emu_class,
        b"\x1b[?1h\x1b=\x1b[?1002h\x1b[?1006h\x1b[?1004h\x1b[?2004h\x1b[?2026h\x1b[5 q"
        b"\x1b[?25l\x1b[4h\x1b]133;A\x07",
        cols=5,
        rows=2,
    )
    snap = emu.snapshot_json()
    assert snap["cursor"] == {"x": 0, "y": 0, "visible": False, "shape": 5}
    assert {k: v for k, v in snap["modes"].items() if v and k not in ("attrs", "charsets")} == {
        "cursor_keys": True,
        "keypad": True,
        "mouse": 1002,
        "mouse_encoding": "sgr",
        "focus": True,
        "bracketed_paste": True,
        "sync": True,
        "insert": True,
        "autowrap": True,
    }
    assert emu.marks == [("A", 0, 0)]  # type: ignore[attr-defined]
    emu.feed(b"\x1b[?1000l\x1b[?1006l\x1b[!p")
    snap = emu.snapshot_json()
    assert (snap["modes"]["mouse"], snap["modes"]["mouse_encoding"]) == (0, "default")
    assert snap["modes"]["insert"] is False
    assert snap["cursor"]["visible"] is True


def test_alt_screen_47_keeps_content_and_1047_clears(emu_class: type) -> None:
    emu = make(emu_class, b"P\x1b[?47hA\x1b[?47l", cols=4, rows=1)
    assert lines(emu) == ["P"]
    emu.feed(b"\x1b[?47h")
    assert lines(emu) == [" A"]
    emu.feed(b"\x1b[?1047l\x1b[?1047h")
    assert lines(emu) == [""]


def test_alt_screen_does_not_feed_scrollback(emu_class: type) -> None:
    emu = emu_class(3, 2, scrollback=10)
    emu.feed(b"a\r\nb\r\nc\x1b[?1049h1\r\n2\r\n3\r\n4\x1b[?1049l")
    assert emu.snapshot_text(scrollback=10) == "a\nb\nc"


def test_compiled_feed_releases_the_gil() -> None:
    """Python keeps running while one long feed() call is in the C loop."""
    emu = VtEmulator(80, 24, scrollback=100)
    data = b"x" * 79 + b"\r\n"
    data *= 400_000  # 32 MB: a single call that lasts well over a switch interval
    started = threading.Event()
    spins = 0

    def work() -> None:
        started.set()
        emu.feed(data)

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    while worker.is_alive():
        spins += 1
    worker.join()
    assert spins > 10_000
    assert lines(emu)[0] == "x" * 79


def _width_sample() -> list[int]:
    """Every code point of U+0300..U+33FF and every 97th one above, surrogates left out."""
    return [
        cp
        for cp in [*range(0x300, 0x3400), *range(0x3400, 0x110000, 97)]
        if not 0xD800 <= cp <= 0xDFFF
    ]


def test_compiled_widths_follow_the_width_rule() -> None:
    """The width table compiled in at build time agrees with ptyd.widths (the pure rule)."""
    wrong = []
    emu = VtEmulator(20, 2)
    for cp in _width_sample():
        emu.feed(b"\x1b[H\x1b[2Ja" + chr(cp).encode() + b"b")
        expected = 2 + char_width(chr(cp))
        if cursor(emu)[0] != expected:
            wrong.append(f"U+{cp:04X}")
    assert wrong == []


def test_width_blocks_rebuild_the_width_rule() -> None:
    index, blocks = width_blocks()
    assert all(
        blocks[index[cp >> 8]][cp & 0xFF] == (1 if cp < 0x300 else char_width(chr(cp)))
        for cp in _width_sample()
    )


def test_compiled_rows_get_cells_on_first_write() -> None:
    """An idle 80x24 session holds no cells; content survives resizes either way."""
    cell_row = 80 * 16
    emu = VtEmulator(80, 24)
    idle = emu.memory_usage
    assert idle < 4 * cell_row
    emu.feed(b"$ ")
    assert emu.memory_usage == idle + cell_row
    emu.feed(b"\x1b[?1049h\x1b[10;5Hvim\x1b[?1049l")
    assert emu.memory_usage == idle + 2 * cell_row
    emu.resize(100, 30)
    emu.resize(60, 20)
    assert lines(emu)[0] == "$"
    assert emu.memory_usage < idle + 2 * 100 * 16
    emu.feed(b"\x1b[44m\x1b[2J")
    emu.resize(70, 20)
    assert emu.state().lines[19][59][2] != 0  # the erased colour is kept


def test_daemon_modules_do_not_import_pyte() -> None:
    """The compiled daemon does not pay for pyte and wcwidth (about 6 MiB of tables)."""
    code = (
        "import sys, ptyd.server, ptyd.cli\nprint(sorted({'pyte', 'wcwidth'} & set(sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PTYD_PURE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


def test_json_snapshot_is_plain_msgpack_types(emu_class: type) -> None:
    emu = make(emu_class, "\x1b[1;38;2;1;2;3mA中\x1b[0m\r\nb\x1b]2;t\x07".encode(), cols=4, rows=1)

    def check(value: object) -> None:
        assert type(value) in (str, int, bool, type(None), list, dict), value
        if isinstance(value, list):
            for item in value:
                check(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                assert type(key) is str
                check(item)

    snap = emu.snapshot_json(scrollback=5)
    check(snap)
    assert msgpack.unpackb(msgpack.packb(snap)) == snap


# docs/emulator.md lists every difference of pyte 0.8.2 from xterm that the pure backend
# corrects. Each case: bytes, cols, rows, a resize to apply after them (or None), and what xterm
# shows. Plain pyte must still differ (or raise), so the list stays true; both backends must not.
PYTE_DIFFERENCES: dict[str, tuple[bytes, int, int, tuple[int, int] | None, dict[str, object]]] = {
    "el-at-pending-wrap": (b"x" * 10 + b"\x1b[K", 10, 2, None, {"lines": ["x" * 9, ""]}),
    "cursor-at-pending-wrap": (b"x" * 10, 10, 2, None, {"cursor": (9, 0)}),
    "wide-at-margin": ("abcd中".encode(), 5, 2, None, {"lines": ["abcd", "中"]}),
    "text-after-zero-width": ("a\u200bbc".encode(), 5, 1, None, {"lines": ["a\u200bbc"]}),
    "nel-column-0": (b"ab\x1bEc", 4, 2, None, {"lines": ["ab", "c"]}),
    "dcs-body": (b"\x1bPqabc\x1b\\X", 6, 1, None, {"lines": ["X"]}),
    "dec-graphics-in-utf8": (b"\x1b(0qh", 4, 1, None, {"lines": ["\u2500\u2424"]}),
    "colon-sgr": (b"\x1b[38:5:1mX", 8, 1, None, {"lines": ["X"]}),
    "osc-number": (b"\x1b]10;x\x07\x1b]133;A\x07", 4, 1, None, {"icon_name": ""}),
    "erase-recolours": (b"\x1b[44m\x1b[2J", 8, 1, None, {"bce": True}),
    "resize-clamps-cursor": (b"\x1b[5;8H", 10, 5, (4, 3), {"cursor": (3, 2)}),
    "alternate-screen": (b"a\x1b[?1049hb\x1b[?1049l", 4, 1, None, {"lines": ["a"]}),
    "csi-extra-parameter": (b"a\x1b[1;2Cb", 6, 1, None, {"lines": ["a b"]}),
    "decxcpr": (b"\x1b[?6n", 6, 1, None, {"replies": b"\x1b[?1;1R"}),
    "lf-below-region": (b"\x1b[1;2r\x1b[4;1H\nX", 4, 5, None, {"cursor": (1, 4)}),
    "cuu-above-region": (b"\x1b[3;4r\x1b[1;1H\x1b[A", 4, 5, None, {"cursor": (0, 0)}),
    "vpr-past-region": (b"\x1b[1;2r\x1b[3e", 4, 5, None, {"cursor": (0, 3)}),
    "decstbm-homes": (b"\x1b[3;3H\x1b[r", 4, 4, None, {"cursor": (0, 0)}),
    "cup-origin-clamps": (b"\x1b[1;2r\x1b[?6h\x1b[3;1HX", 4, 4, None, {"cursor": (1, 1)}),
    "decrc-twice": (b"\x1b[2;2H\x1b7\x1b[3;3H\x1b8\x1b[1;1H\x1b8", 4, 4, None, {"cursor": (1, 1)}),
    "hpa": (b"abc\x1b[5`X", 6, 1, None, {"lines": ["abc X"]}),
    "da2": (b"\x1b[>c", 4, 1, None, {"replies": b"\x1b[>1;10;0c"}),
    "decstr": (b"ab\x1b[!pcd", 6, 1, None, {"lines": ["abcd"]}),
    "decaln-homes": (b"\x1b[2;3r\x1b[3;3H\x1b#8", 4, 4, None, {"cursor": (0, 0)}),
    "deccolm-ignored": (b"\x1b[?3h", 10, 2, None, {"cols": 10}),
    "ris-keeps-title": (b"\x1b]2;T\x07\x1bc", 4, 1, None, {"title": "T"}),
    "wide-half-overwritten": ("中\x1b[1;2Hx".encode(), 4, 1, None, {"lines": [" x"]}),
    "combining-as-typed": ("e\u0301".encode(), 4, 1, None, {"lines": ["e\u0301"]}),
    "title-sanitized": (b"\x1b]2;a\x01b\x07", 4, 1, None, {"title": "ab"}),
    "dch-fills-background": (b"\x1b[44m\x1b[3P", 8, 1, None, {"bce": True}),
    "si-so-in-utf8": (b"\x1b)0\x0eq\x0fq", 4, 1, None, {"lines": ["\u2500q"]}),
    "c1-csi-ignored": ("a\u009b2Cb".encode(), 6, 1, None, {"lines": ["a2Cb"]}),
    "sl-and-decdc": (b"abcd\x1b[2G\x1b[ @\x1b['~", 6, 2, None, {"lines": ["bd", ""]}),
}


def observe(emu: EmulatorProtocol) -> dict[str, object]:
    state = emu.state()  # type: ignore[attr-defined]
    return {
        "lines": lines(emu),
        "cursor": cursor(emu),
        "icon_name": emu.icon_name,  # type: ignore[attr-defined]
        "title": emu.title,
        "replies": emu.take_replies(),
        "cols": emu.cols,
        "bce": state.lines[0][-1][2] != 0,
    }


def observe_pyte(data: bytes, cols: int, rows: int, size: tuple[int, int] | None) -> object:
    screen = pyte.Screen(cols, rows)
    replies: list[str] = []
    screen.write_process_input = replies.append  # type: ignore[method-assign]
    try:
        pyte.ByteStream(screen).feed(data)
    except TypeError as exc:
        return exc
    if size:
        screen.resize(size[1], size[0])
    return {
        "lines": [line.rstrip(" ") for line in screen.display],
        "cursor": (screen.cursor.x, screen.cursor.y),
        "icon_name": screen.icon_name,
        "title": screen.title,
        "replies": "".join(replies).encode(),
        "cols": screen.columns,
        "bce": screen.buffer[0][cols - 1].bg != "default",
    }


@pytest.mark.parametrize("case", list(PYTE_DIFFERENCES))
def test_pyte_differences_are_corrected(emu_class: type, case: str) -> None:
    data, cols, rows, size, expected = PYTE_DIFFERENCES[case]
    emu = make(emu_class, data, cols, rows)
    if size:
        emu.resize(*size)
    seen = observe(emu)
    assert {key: seen[key] for key in expected} == expected
    plain = observe_pyte(data, cols, rows, size)
    if isinstance(plain, dict):
        assert {key: plain[key] for key in expected} != expected, "pyte now agrees: update docs"
