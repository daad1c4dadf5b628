"""Column operations on both backends: SL, SR, DECIC and DECDC over the scroll region."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptyd._vt import VtEmulator
from ptyd.emulator import COLOR_INDEXED, EmulatorProtocol
from ptyd.pyte_backend import PyteEmulator
from tests.emulator_streams import TOKEN

BACKENDS: dict[str, type] = {"compiled": VtEmulator, "pure": PyteEmulator}

# 10x6, rows 0-5 "0123456789" ... "5123456789" (the row number first), region rows 2-4.
SCREEN = b"".join(b"%d123456789" % y + (b"\r\n" if y < 5 else b"") for y in range(6))
REGION = b"\x1b[3;5r"
OPS = {
    "SL": b" @",
    "SR": b" A",
    "DECIC": b"'}",
    "DECDC": b"'~",
}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def emu_class(request: pytest.FixtureRequest) -> type:
    return BACKENDS[request.param]


def run(emu_class: type, data: bytes, cols: int = 10, rows: int = 6) -> EmulatorProtocol:
    emu = emu_class(cols, rows)
    emu.feed(data)
    return emu


def lines(emu: EmulatorProtocol) -> list[str]:
    return emu.snapshot_text().split("\n")


def at(y: int, x: int) -> bytes:
    return b"\x1b[%d;%dH" % (y + 1, x + 1)


def test_each_operation_shifts_the_regions_rows_only(emu_class: type) -> None:
    setup = SCREEN + REGION + at(3, 4)
    outside = ["0123456789", "1123456789", None, None, None, "5123456789"]
    expected = {
        b"\x1b[2 @": ["23456789", "23456789", "23456789"],
        b"\x1b[2 A": ["  21234567", "  31234567", "  41234567"],
        b"\x1b[2'}": ["2123  4567", "3123  4567", "4123  4567"],
        b"\x1b[2'~": ["21236789", "31236789", "41236789"],
    }
    for op, region in expected.items():
        emu = run(emu_class, setup + op)
        assert lines(emu) == [*outside[:2], *region, outside[5]], op
        state = emu.state()
        assert (state.cursor_x, state.cursor_y) == (4, 3), op


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("row", [0, 1, 5])
def test_nothing_happens_from_outside_the_region(emu_class: type, op: str, row: int) -> None:
    before = run(emu_class, SCREEN + REGION + at(row, 4)).state()
    after = run(emu_class, SCREEN + REGION + at(row, 4) + b"\x1b[3" + OPS[op]).state()
    assert after == before


@pytest.mark.parametrize("op", list(OPS))
def test_without_margins_every_row_shifts(emu_class: type, op: str) -> None:
    one = lines(run(emu_class, SCREEN + at(5, 3) + b"\x1b[" + OPS[op]))
    expected = {
        "SL": "123456789",
        "SR": " {}123456789",
        "DECIC": "{}12 3456789",
        "DECDC": "{}12456789",
    }[op]
    assert one == [expected.format(y)[:10].rstrip() for y in range(6)]


@pytest.mark.parametrize("op", list(OPS))
def test_a_missing_or_zero_count_is_one(emu_class: type, op: str) -> None:
    states = [
        run(emu_class, SCREEN + REGION + at(3, 4) + b"\x1b[" + count + OPS[op]).state()
        for count in (b"", b"0", b"1")
    ]
    assert states[0] == states[1] == states[2]
    assert states[0].lines != run(emu_class, SCREEN + REGION + at(3, 4)).state().lines


@pytest.mark.parametrize("count", [b"10", b"11", b"999", b"99999"])
def test_counts_past_the_width_blank_what_they_reach(emu_class: type, count: bytes) -> None:
    setup = SCREEN + REGION + at(3, 4)
    outside = lines(run(emu_class, SCREEN))
    blank_all = [*outside[:2], "", "", "", outside[5]]
    blank_right = [*outside[:2], "2123", "3123", "4123", outside[5]]
    assert lines(run(emu_class, setup + b"\x1b[" + count + b" @")) == blank_all
    assert lines(run(emu_class, setup + b"\x1b[" + count + b" A")) == blank_all
    assert lines(run(emu_class, setup + b"\x1b[" + count + b"'}")) == blank_right
    assert lines(run(emu_class, setup + b"\x1b[" + count + b"'~")) == blank_right


def test_blanks_take_the_background_colour_only(emu_class: type) -> None:
    red = COLOR_INDEXED | 1
    bce = (" ", 0, red, 0)
    setup = SCREEN + REGION + at(3, 4) + b"\x1b[1;4;32;41m"
    rows = run(emu_class, setup + b"\x1b[2 @").state().lines
    assert all(rows[y][8:] == [bce, bce] for y in (2, 3, 4))
    assert rows[1][8:] == [("8", 0, 0, 0), ("9", 0, 0, 0)]
    rows = run(emu_class, setup + b"\x1b[2 A").state().lines
    assert all(rows[y][:2] == [bce, bce] for y in (2, 3, 4))
    rows = run(emu_class, setup + b"\x1b[2'}").state().lines
    assert all(rows[y][4:6] == [bce, bce] for y in (2, 3, 4))
    rows = run(emu_class, setup + b"\x1b[2'~").state().lines
    assert all(rows[y][8:] == [bce, bce] for y in (2, 3, 4))
    # Rows never written (no cells yet) get the background colour too.
    rows = run(emu_class, b"\x1b[41m\x1b[3 @", cols=4, rows=2).state().lines
    assert rows == [[(" ", 0, 0, 0)] * 1 + [bce] * 3] * 2


def test_the_cursor_and_a_pending_wrap_stay(emu_class: type) -> None:
    # xterm shifts the cells under the cursor: a wrap pending at the last column still wraps.
    for op in OPS.values():
        emu = run(emu_class, b"\x1b[2;1H" + b"abcdefghij" + b"\x1b[" + op)
        state = emu.state()
        assert (state.cursor_x, state.cursor_y, state.pending_wrap) == (9, 1, True), op
        emu.feed(b"Z")
        assert lines(emu)[2] == "Z", op


def test_wide_characters_cut_by_a_shift_are_blanked(emu_class: type) -> None:
    wide = "ab中cdef中".encode()  # 中 at columns 2-3 and 8-9
    # SR by one pushes the right half of the last 中 off the edge: its left half goes too.
    assert lines(run(emu_class, wide + b"\x1b[ A", rows=1)) == [" ab中cdef"]
    # SL by three cuts the first 中 in half: its right half is blanked.
    assert lines(run(emu_class, wide + b"\x1b[3 @", rows=1)) == [" cdef中"]
    # DECIC inside a wide character blanks it whole, as ICH does.
    assert lines(run(emu_class, wide + b"\x1b[4G\x1b['}", rows=1)) == ["ab   cdef"]
    # DECDC on a wide character's right half blanks its left half, as DCH does.
    assert lines(run(emu_class, wide + b"\x1b[4G\x1b['~", rows=1)) == ["ab cdef中"]
    # A wide character right after the deleted columns moves whole.
    assert lines(run(emu_class, wide + b"\x1b[2 @", rows=1)) == ["中cdef中"]
    assert lines(run(emu_class, wide + b"\x1b[2G\x1b['~", rows=1)) == ["a中cdef中"]
    for op in OPS.values():
        for x in range(1, 11):
            both = [
                run(cls, wide + b"\r\n" + wide + b"\x1b[%dG\x1b[3" % x + op, rows=2).state()
                for cls in BACKENDS.values()
            ]
            assert both[0] == both[1], (op, x)


def test_compiled_blank_rows_stay_without_cells() -> None:
    """A shift leaves a blank row of its own fill colour as it is: no cells are allocated."""
    emu = VtEmulator(80, 24)
    emu.feed(b"$ ")
    used = emu.memory_usage
    emu.feed(b"\x1b[3 @\x1b[2 A\x1b[4'}\x1b[5'~")
    assert emu.memory_usage == used
    emu.feed(b"\x1b[44m\x1b[ @")  # another colour: every row takes blanks of it
    assert emu.memory_usage == used + 23 * 80 * 16
    assert emu.state().lines[23][79] == (" ", 0, COLOR_INDEXED | 4, 0)


@pytest.mark.parametrize(
    ("seq", "row", "y"),
    [
        (b"\x1b[5@", "1123     4", 1),  # ICH: unchanged by the new intermediates
        (b"\x1b[5A", "1123456789", 0),  # CUU: the cursor moves, no cell does
        (b"\x1b[5!@", "1123456789", 1),
        (b"\x1b[5  @", "1123456789", 1),
        (b"\x1b[5'@", "1123456789", 1),
        (b"\x1b[5 }", "1123456789", 1),
        (b'\x1b[5"~', "1123456789", 1),
        (b"\x1b[?5 @", "1123456789", 1),
        (b"\x1b[>5'~", "1123456789", 1),
    ],
)
def test_only_the_space_and_quote_intermediates_are_new(
    emu_class: type, seq: bytes, row: str, y: int
) -> None:
    emu = run(emu_class, SCREEN[:22] + at(1, 4) + seq, rows=2)
    assert lines(emu) == ["0123456789", row]
    assert (emu.state().cursor_x, emu.state().cursor_y) == (4, y)


_COLUMN_OPS = st.builds(
    lambda count, op: b"\x1b[" + count.encode() + op,
    st.sampled_from(["", "0", "1", "2", "3", "7", "13", "99999"]),
    st.sampled_from([*OPS.values()]),
)
_REGIONS = st.builds(
    lambda top, bottom: b"\x1b[%d;%dr" % (top, bottom), st.integers(0, 6), st.integers(0, 6)
)
_MOVES = st.builds(lambda y, x: at(y, x), st.integers(0, 6), st.integers(0, 12))
_TEXT = st.text(alphabet=st.sampled_from([*"abcdefgh", "中", "語", "é"]), max_size=20)
# A screen of text first (up to 12x6), so that there are cells to shift and wide characters
# to cut; then steps that each end in a column operation, with other output in between.
_FILLS = st.sampled_from(
    [
        "".join(chr(97 + i % 26) for i in range(72)),
        "a中bc語déf" * 8,
        "中" * 36,
        "",
    ]
)
_STEP = st.builds(
    lambda noise, region, move, op: noise + region + move + op,
    st.lists(st.one_of(_TEXT.map(str.encode), TOKEN), max_size=3).map(b"".join),
    st.one_of(st.just(b""), _REGIONS),
    st.one_of(st.just(b""), _MOVES),
    _COLUMN_OPS,
)
COLUMN_STREAM = st.builds(
    lambda fill, steps: fill.encode() + b"".join(steps),
    _FILLS,
    st.lists(_STEP, min_size=1, max_size=10),
)


@settings(
    max_examples=int(os.environ.get("PTYD_EMULATOR_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size=st.tuples(st.integers(1, 12), st.integers(1, 6)),
    data=COLUMN_STREAM,
    scrollback=st.integers(0, 3),
)
def test_backends_agree_on_column_operations(
    size: tuple[int, int], data: bytes, scrollback: int
) -> None:
    compiled = VtEmulator(*size, scrollback=scrollback)
    pure = PyteEmulator(*size, scrollback=scrollback)
    compiled.feed(data)
    pure.feed(data)
    assert pure.errors_caught == 0
    assert compiled.state() == pure.state()
    assert compiled.take_replies() == pure.take_replies()
