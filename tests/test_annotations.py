"""The compiled hot path stays C: ``cython -a`` of the release build shows its byte loops white
(no Python C-API call on any of their lines), as docs/performance.md states. A change that slips
a Python object into the emulator's feed or the PTY read loop fails here, not in a benchmark."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("Cython", reason="cython -a needs Cython (pip install -e '.[test]')")

PTYD = Path(__file__).resolve().parent.parent / "ptyd"
# setup.py's release directives: bounds and initialisation checks off, C division.
DIRECTIVES = ("boundscheck=False", "wraparound=False", "cdivision=True", "initializedcheck=False")
# Lines that may touch the C-API by design: a function's entry (argument conversion), raising,
# returning an object, and the PyBytes accessor macros around a frame's one allocation.
BY_DESIGN = re.compile(r"^\s*(cdef|cpdef|def|raise|return)\b|PyBytes_")
DEFINITION = re.compile(r"^(\s*)(?:cdef|cpdef|def)\s[^(]*?\b(\w+)\(")
SCORED_LINE = re.compile(
    r'<pre class="cython line score-(\d+)"[^>]*>.*?<span class="">(\d+)</span>'
)


def annotate(source: Path, out: Path) -> dict[int, int]:
    """Line number -> Cython's score (0: white, pure C) for ``source``."""
    command = [sys.executable, "-m", "cython", "-a", "-3", str(source), "-o", str(out)]
    for directive in DIRECTIVES:
        command += ["-X", directive]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    html = out.with_suffix(".html").read_text()
    return {int(line): int(score) for score, line in SCORED_LINE.findall(html)}


def block(lines: list[str], start: int) -> range:
    """Line numbers (1-based) of the statement at index ``start`` and its indented body."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines):
        text = lines[end]
        is_code = text.strip() and not text.lstrip().startswith("#")
        if is_code and len(text) - len(text.lstrip()) <= indent:
            break
        end += 1
    return range(start + 1, end + 1)


def functions(lines: list[str]) -> dict[str, tuple[int, bool]]:
    """Each function's name -> (index of its definition, whether it is declared nogil)."""
    found = {}
    for index, text in enumerate(lines):
        match = DEFINITION.match(text)
        if match:
            header, end = text.split("#")[0], index
            while not header.rstrip().endswith(":") and end + 1 < len(lines):
                end += 1  # a signature over several lines
                header += lines[end].split("#")[0]
            found[match.group(2)] = (index, "nogil" in header)
    return found


def yellow_lines(source: Path, scores: dict[int, int], numbers: range) -> list[str]:
    lines = source.read_text().splitlines()
    return [
        f"{source.name}:{number}: score {scores[number]}: {lines[number - 1].strip()}"
        for number in numbers
        if scores.get(number) and not BY_DESIGN.search(lines[number - 1])
    ]


def test_every_nogil_function_of_the_emulator_is_white(tmp_path: Path) -> None:
    """The emulator's whole feed (``feed_c`` and all it calls) runs without the GIL."""
    source = PTYD / "_vt.pyx"
    scores = annotate(source, tmp_path / "_vt.c")
    lines = source.read_text().splitlines()
    hot = {name: index for name, (index, is_nogil) in functions(lines).items() if is_nogil}
    assert {"feed_c", "process", "put_ascii", "put_char", "csi_dispatch", "scroll_up"} <= set(hot)
    yellow = [
        line for index in hot.values() for line in yellow_lines(source, scores, block(lines, index))
    ]
    assert yellow == []


def test_pump_ring_and_frame_encoding_are_white(tmp_path: Path) -> None:
    """``_fast``: the PTY read loops, the replay ring's copy, and the frame's assembly."""
    source = PTYD / "_fast.pyx"
    scores = annotate(source, tmp_path / "_fast.c")
    lines = source.read_text().splitlines()
    found = functions(lines)
    checked = [
        block(lines, found[name][0])
        for name in ("read_until_quiet", "_put_be", "grow", "append_c", "_encode_output")
    ]
    pump = found["pump"][0]
    loop = next(i for i in range(pump, len(lines)) if lines[i].strip().startswith("while "))
    checked.append(block(lines, loop))  # pump's read loop (the batch is published after it)
    yellow = [line for numbers in checked for line in yellow_lines(source, scores, numbers)]
    assert yellow == []


def test_the_attach_relays_quiet_loop_is_white(tmp_path: Path) -> None:
    """``_relay``: a socket read's frame checks and writes, a terminal read's input frame."""
    source = PTYD / "_relay.pyx"
    scores = annotate(source, tmp_path / "_relay.c")
    lines = source.read_text().splitlines()
    found = functions(lines)
    hot = (
        "from_socket",
        "from_terminal",
        "set_expected",
        "pack_uint",
        "put_be",
        "get_be",
        "start_spin",
        "is_spinning",
        "parse_runnable",
        "monotonic_ns",
    )
    assert all(found[name][1] for name in hot), "each runs without the GIL"
    yellow = [
        line for name in hot for line in yellow_lines(source, scores, block(lines, found[name][0]))
    ]
    assert yellow == []
