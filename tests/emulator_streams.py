"""Hypothesis strategies for terminal output streams, shared by the emulator property tests."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

_TEXT = st.text(
    alphabet=st.sampled_from([*"abcXYZ _-|", "é", "中", "語", "\u0301", "\u200b", "ｱ", "😀"]),
    min_size=1,
    max_size=12,
)
_CONTROLS = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\b",
        b"\t",
        b"\x0b",
        b"\x0e",
        b"\x0f",
        b"\x07",
        b"\x00",
        b"\x7f",
        b"\x18",
        b"\x1a",
        b"\r\n",
    ]
)
_CSI_FINALS = "@ABCDEFGHIJKLMPSTXZabcdefghlmnrsu`q"
_PRIVATE_MODES = [1, 5, 6, 7, 25, 47, 66, 1000, 1002, 1004, 1006, 1047, 1048, 1049, 2004, 2026]
_NUMBER = st.one_of(st.integers(0, 12), st.integers(0, 300), st.just(99999))


@st.composite
def _csi(draw: st.DrawFn) -> bytes:
    params = draw(st.lists(st.one_of(_NUMBER.map(str), st.just("")), max_size=4))
    private = draw(st.sampled_from(["", "", "", "?", ">"]))
    inter = draw(st.sampled_from(["", "", "", "", " ", "!"]))
    final = draw(st.sampled_from(_CSI_FINALS))
    return f"\x1b[{private}{';'.join(params)}{inter}{final}".encode()


@st.composite
def _sgr(draw: st.DrawFn) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "0",
                        "1",
                        "2",
                        "3",
                        "4",
                        "5",
                        "7",
                        "8",
                        "9",
                        "21",
                        "22",
                        "24",
                        "27",
                        "31",
                        "39",
                        "42",
                        "49",
                        "95",
                        "104",
                        "4:3",
                        "4:0",
                        "",
                    ]
                ),
                st.builds(lambda k, n: f"{k};5;{n}", st.sampled_from(["38", "48"]), _NUMBER),
                st.builds(
                    lambda k, r, g, b: f"{k};2;{r};{g};{b}",
                    st.sampled_from(["38", "48"]),
                    _NUMBER,
                    _NUMBER,
                    _NUMBER,
                ),
                st.builds(
                    lambda k, r, g, b: f"{k}:2::{r}:{g}:{b}",
                    st.sampled_from(["38", "48", "58"]),
                    _NUMBER,
                    _NUMBER,
                    _NUMBER,
                ),
                st.builds(lambda k, n: f"{k}:5:{n}", st.sampled_from(["38", "48"]), _NUMBER),
            ),
            max_size=4,
        )
    )
    return f"\x1b[{';'.join(parts)}m".encode()


_MODES = st.builds(
    lambda modes, on: f"\x1b[?{';'.join(map(str, modes))}{'h' if on else 'l'}".encode(),
    st.lists(st.sampled_from(_PRIVATE_MODES), min_size=1, max_size=2),
    st.booleans(),
)
_ESC = st.sampled_from(
    [
        b"\x1b7",
        b"\x1b8",
        b"\x1bD",
        b"\x1bE",
        b"\x1bM",
        b"\x1bH",
        b"\x1b=",
        b"\x1b>",
        b"\x1b(0",
        b"\x1b(B",
        b"\x1b)0",
        b"\x1b#8",
        b"\x1bc",
        b"\x1b",
        b"\x1b[4h",
        b"\x1b[4l",
        b"\x1b[20h",
        b"\x1b[20l",
    ]
)
_STRINGS = st.builds(
    lambda kind, body, end: kind + body.encode() + end,
    st.sampled_from(
        [b"\x1b]0;", b"\x1b]2;", b"\x1b]1;", b"\x1b]133;", b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b]7;"]
    ),
    st.text(alphabet="ab;é\x01\x9b", max_size=8),
    st.sampled_from([b"\x07", b"\x1b\\", b""]),
)
_BAD_UTF8 = st.sampled_from(
    [b"\xff", b"\xc3", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\x80", b"\xc0\xaf"]
)

TOKEN = st.one_of(
    _TEXT.map(lambda t: t.encode()),
    _TEXT.map(lambda t: t.encode()),
    _CONTROLS,
    _csi(),
    _sgr(),
    _MODES,
    _ESC,
    _STRINGS,
    _BAD_UTF8,
)
STREAM = st.lists(TOKEN, max_size=40).map(b"".join)
SIZES = st.tuples(st.integers(1, 12), st.integers(1, 6))


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` split at random points (hypothesis chooses where)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
