"""Property tests: compiled vs pure, chunking invariance, ANSI round trip, hostile input."""

from __future__ import annotations

import os
import random
import resource

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptyd._vt import VtEmulator
from ptyd.emulator import render_json, render_text
from ptyd.pyte_backend import PyteEmulator
from tests.emulator_streams import SIZES, STREAM, chunked

BACKENDS: dict[str, type] = {"compiled": VtEmulator, "pure": PyteEmulator}
EXAMPLES = int(os.environ.get("PTYD_EMULATOR_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def full_state(emu: object) -> tuple[object, ...]:
    """Everything both backends must agree on, in the shared snapshot form."""
    state = emu.state()  # type: ignore[attr-defined]
    # The pure backend's guards must never have fired: they hide bugs from the comparison.
    assert getattr(emu, "errors_caught", 0) == 0
    return (state, emu.take_replies(), emu.title, emu.icon_name, emu.marks)  # type: ignore[attr-defined]


@SETTINGS
@given(size=SIZES, data=STREAM, scrollback=st.integers(0, 3))
def test_compiled_matches_pure(size: tuple[int, int], data: bytes, scrollback: int) -> None:
    compiled = VtEmulator(*size, scrollback=scrollback)
    pure = PyteEmulator(*size, scrollback=scrollback)
    compiled.feed(data)
    pure.feed(data)
    assert full_state(compiled) == full_state(pure)


@SETTINGS
@given(size=SIZES, data=STREAM, history=st.integers(0, 6), asked=st.integers(0, 8))
def test_snapshots_read_the_history_as_the_state_does(
    size: tuple[int, int], data: bytes, history: int, asked: int
) -> None:
    """The compiled engine renders text and JSON snapshots from its packed history directly;
    they are what the backend-neutral state renders (and the pure backend's), every packing
    included (ASCII, one code point per cell with wide characters, full cells)."""
    compiled = VtEmulator(*size, scrollback=history)
    pure = PyteEmulator(*size, scrollback=history)
    compiled.feed(data + b"\r\n" * size[1])  # push the screen into the history
    pure.feed(data + b"\r\n" * size[1])
    text = compiled.snapshot_text(asked)
    assert text == render_text(compiled.state(asked), asked) == pure.snapshot_text(asked)
    json = compiled.snapshot_json(asked)
    assert json == render_json(compiled.state(asked), asked) == pure.snapshot_json(asked)


@SETTINGS
@given(size=SIZES, data=STREAM, new_size=SIZES, more=STREAM)
def test_resize_matches(
    size: tuple[int, int], data: bytes, new_size: tuple[int, int], more: bytes
) -> None:
    emus = [cls(*size, scrollback=5) for cls in BACKENDS.values()]
    for emu in emus:
        emu.feed(data)
        emu.resize(*new_size)
        emu.feed(more)
    assert full_state(emus[0]) == full_state(emus[1])


@SETTINGS
@given(data=st.data(), stream=STREAM, size=SIZES)
def test_chunking_invariance(data: st.DataObject, stream: bytes, size: tuple[int, int]) -> None:
    for cls in BACKENDS.values():
        whole = cls(*size, scrollback=3)
        whole.feed(stream)
        parts = cls(*size, scrollback=3)
        for chunk in data.draw(chunked(stream)):
            parts.feed(chunk)
        assert full_state(parts) == full_state(whole)


@SETTINGS
@given(stream=STREAM, size=SIZES)
def test_ansi_round_trip(stream: bytes, size: tuple[int, int]) -> None:
    for cls in BACKENDS.values():
        emu = cls(*size, scrollback=0)
        emu.feed(stream)
        copy = cls(*size, scrollback=0)
        copy.feed(emu.snapshot_ansi())
        assert copy.snapshot_json() == emu.snapshot_json()
        assert copy.state().pending_wrap == emu.state().pending_wrap
        assert copy.state().tabs == emu.state().tabs
        assert copy.state().saved_cursor == emu.state().saved_cursor


@SETTINGS
@given(data=st.binary(max_size=400), size=SIZES)
def test_arbitrary_bytes_never_raise(data: bytes, size: tuple[int, int]) -> None:
    compiled = VtEmulator(*size, scrollback=2)
    pure = PyteEmulator(*size, scrollback=2)
    compiled.feed(data)
    pure.feed(data)
    assert full_state(compiled) == full_state(pure)


def bombs(size: int) -> list[bytes]:
    """Huge parameters, endless strings, mark floods; ``size`` scales each."""
    return [
        b"\x1b[" + b"9" * size + b"b",
        b"x\x1b[65535b" * 50,
        b"\x1b]2;" + b"A" * size * 10,
        b"\x1bP" + b"q" * size * 10 + b"\x1b\\",
        b"\x1b[" + b"1;" * size + b"m",
        b"e" + "\u0301\u0302\u0303".encode() * size,
        "".join(
            chr(0x300 + (i % 0x70)) + chr(0x300 + (i // 0x70 % 0x70)) + "a"
            for i in range(size // 5)
        ).encode(),
        b"\x1b[?1049h\x1b[2J" * (size // 100),
        random.Random(size).randbytes(size * 10),
    ]


def test_hostile_input_is_bounded() -> None:
    """The compiled engine at full scale: memory stays within the caps."""
    emu = VtEmulator(80, 24, scrollback=100)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for bomb in bombs(100_000):
        emu.feed(bomb)
    emu.take_replies()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024
    assert len(emu.title) <= 256


def test_hostile_input_agrees() -> None:
    """Both backends on the same bombs, scaled down for the pure one's speed."""
    emus = [cls(80, 24, scrollback=100) for cls in BACKENDS.values()]
    for bomb in bombs(5_000):
        for emu in emus:
            emu.feed(bomb)
    assert full_state(emus[0]) == full_state(emus[1])


def _history_lines(rng: random.Random, count: int) -> bytes:
    """Lines of every packing the history keeps, in random order: plain ASCII, one code point
    per cell (wide and accented), full cells (colours changing within the line), blank lines,
    and lines of every length up to the width."""
    out = []
    for index in range(count):
        kind = rng.randrange(5)
        width = rng.randrange(0, 79)
        if kind == 0:
            out.append(b"%d " % index + b"x" * width)
        elif kind == 1:
            out.append((f"{index} " + "日本é" * (width // 4)).encode())
        elif kind == 2:
            out.append(b"\x1b[3%dm%d\x1b[0m " % (index % 8, index) + b"c" * width)
        elif kind == 3:
            out.append(b"")
        else:
            out.append(b"\x1b[44m%d" % index + b" " * width + b"\x1b[m")
    return b"\r\n".join(out) + b"\r\n"


def test_a_long_mixed_history_is_the_pure_backends() -> None:
    """Thousands of lines of every packing through small and large limits (the compiled
    engine's ring of lines wraps many times): the history is the pure backend's at every
    checkpoint, and after a clear it fills again."""
    rng = random.Random(7)
    for limit in (1, 7, 60, 500):
        emus = [cls(80, 24, scrollback=limit) for cls in BACKENDS.values()]
        for checkpoint in range(12):
            chunk = _history_lines(rng, rng.randrange(1, 400))
            for emu in emus:
                emu.feed(chunk)
            compiled, pure = (emu.state().scrollback for emu in emus)
            assert compiled == pure, (limit, checkpoint)
            assert len(compiled) <= limit
            if checkpoint == 6:
                for emu in emus:
                    emu.feed(b"\x1b[3J")  # clear the history; the next lines fill it again
        assert len(compiled) == limit  # the last chunks alone held more lines than that
