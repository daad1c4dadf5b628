"""Loaders for the shared conformance corpora used by the emulator tests and benchmarks."""

from __future__ import annotations

import json
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
XTERM = CORPUS / "xtermjs-escape-sequence-files"
PYTE = CORPUS / "pyte-captured"
ALACRITTY = CORPUS / "alacritty-ref"
VTEBENCH = CORPUS / "vtebench" / "benchmarks"
VT100 = CORPUS / "vt100-rust"

# xterm files outside the supported set, each with the reason.
XTERM_UNCOVERED = {
    "t0103-reverse_wrap": "reverse-wraparound mode 45 is not supported (also skipped by "
    "xterm.js); captured from an xterm older than 2023, whose mode 45 wrapped from the top "
    "line to the bottom one: current xterm wraps only within a wrapped line (1045: any line)",
}


def xterm_cases() -> list[str]:
    return sorted(p.stem for p in XTERM.glob("*.in"))


def xterm_case(name: str) -> tuple[bytes, list[str]]:
    """The input as a TTY delivers it (ONLCR) after xterm.js's reset, and the 80x25 screen."""
    data = b"\x1bc\x1b[H" + (XTERM / f"{name}.in").read_bytes().replace(b"\n", b"\r\n")
    text = (XTERM / f"{name}.text").read_text("utf-8", "replace").split("\n")[:25]
    expected = [line.rstrip() for line in text]
    return data, expected + [""] * (25 - len(expected))


def pyte_cases() -> list[str]:
    return sorted(p.stem for p in PYTE.glob("*.input"))


def pyte_case(name: str) -> tuple[bytes, list[str]]:
    data = (PYTE / f"{name}.input").read_bytes()
    expected = json.loads((PYTE / f"{name}.output").read_text())
    return data, [line.rstrip() for line in expected]


# Alacritty recordings whose expected screen follows Alacritty where it departs from xterm.
ALACRITTY_UNCOVERED = {
    "decaln_reset": "DECALN homes the cursor (VT510, xterm); Alacritty leaves it in place",
    "deccolm_reset": "DECCOLM is ignored, as xterm does by default (allowColumns off); "
    "Alacritty clears the screen",
    "erase_in_line": "EL clears a pending wrap and erases the last column (xterm, t0055-EL); "
    "Alacritty keeps the wrap pending",
    "saved_cursor_alt": "DECRC does not restore a pending wrap (xterm, t0060-DECSC); Alacritty "
    "restores it",
    "wrapline_alt_toggle": "DECRC does not restore a pending wrap (xterm, t0060-DECSC); "
    "Alacritty restores it",
}


def alacritty_cases() -> list[str]:
    return sorted(p.name for p in ALACRITTY.iterdir() if (p / "screen.txt").exists())


def alacritty_case(name: str) -> tuple[bytes, int, int, int, list[str]]:
    """Recording, columns, rows, history size and the screen (U+00A0 shown as a space).

    Alacritty draws DEC graphics 0x5f as a space; xterm and ptyd store U+00A0 there.
    """
    test = ALACRITTY / name
    size = json.loads((test / "size.json").read_text())
    config = test / "config.json"
    history = json.loads(config.read_text()).get("history_size", 0) if config.exists() else 0
    rows = size["screen_lines"]
    expected = (test / "screen.txt").read_text("utf-8").split("\n")[:rows]
    expected += [""] * (rows - len(expected))
    data = (test / "alacritty.recording").read_bytes()
    return data, size["columns"], rows, history, expected


def vt100_steps() -> list[tuple[str, int]]:
    fixtures = VT100 / "fixtures"
    return [
        (group.stem, int(step.stem))
        for group in sorted(fixtures.glob("*.in"))
        for step in sorted((fixtures / group.stem).glob("*.json"), key=lambda p: int(p.stem))
    ]


def vt100_input(group: str, step: int) -> bytes:
    """Steps 1..step of a vt100-rust fixture group, concatenated."""
    folder = VT100 / "fixtures" / group
    return b"".join((folder / f"{n}.typescript").read_bytes() for n in range(1, step + 1))


LIBVTERM = CORPUS / "libvterm" / "t"
# libvterm expectations ptyd does not meet, per file: (count, reason).
LIBVTERM_UNCOVERED = {
    "11state_movecursor": (2, "HPB/VPB (CSI j, CSI k) are ECMA-48 only; xterm ignores them"),
    "13state_edit": (1, "IL moves to column 0 as xterm does (t0051-IL); libvterm keeps it"),
    "15state_mode": (1, "left/right margins (DECSLRM) are not supported"),
    "16state_resize": (2, "libvterm reports the pending-wrap cursor past the last column"),
    "28state_dbl_wh": (1, "double-width lines are not supported"),
    "63screen_resize": (
        7,
        "shrinking drops the rows below the cursor even when they have text, and growing takes"
        " lines back from the emulator's own (here empty) scrollback, as xterm and tmux do;"
        " libvterm keeps those rows and asks its host for lines",
    ),
    "65screen_protect": (1, "selective erase (DECSCA) is not supported"),
    "69screen_reflow": (14, "no reflow on resize (libvterm's opt-in reflow)"),
}


def _libvterm_bytes(text: str) -> bytes:
    out = bytearray()
    i = 0
    simple = {"e": 27, "n": 10, "r": 13, "t": 9, "b": 8, "0": 0}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
        elif text[i + 1] == "x" and text[i + 2] == "{":
            end = text.index("}", i)
            out += chr(int(text[i + 3 : end], 16)).encode()
            i = end + 1
        elif text[i + 1] == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out.append(simple.get(text[i + 1], ord(text[i + 1])))
            i += 2
    return bytes(out)


def libvterm_cases() -> list[str]:
    return sorted(p.stem for p in LIBVTERM.glob("*.test"))


def libvterm_script(name: str) -> list[tuple[str, object]]:
    """The portable subset of a libvterm test script (80x25): steps and expectations.

    ("init", None), ("push", bytes), ("resize", (cols, rows)), ("cursor", (row, col)),
    ("row", (row, text)); everything tied to libvterm's callbacks is left out.
    """
    lines: list[str] = []
    for line in (LIBVTERM / f"{name}.test").read_text().split("\n"):
        seq = re.match(r"\$SEQ (\d+) (\d+): (.*)", line)
        rep = re.match(r"\$REP (\d+): (.*)", line)
        if seq:
            lines += [seq[3].replace("\\#", str(k)) for k in range(int(seq[1]), int(seq[2]) + 1)]
        elif rep:
            lines += [rep[2]] * int(rep[1])
        else:
            lines.append(line)
    steps: list[tuple[str, object]] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(("INIT", "RESET")):
            steps.append(("init", None))
        elif line.startswith("PUSH "):
            parts = re.findall(r'"((?:[^"\\]|\\.)*)"\s*(?:x\s*(\d+))?', line[5:])
            steps.append(("push", b"".join(_libvterm_bytes(t) * int(n or 1) for t, n in parts)))
        elif line.startswith("RESIZE "):
            rows, cols = map(int, line[7:].split(","))
            steps.append(("resize", (cols, rows)))
        elif line.startswith("?cursor"):
            row, col = map(int, line.split("=")[1].split(","))
            steps.append(("cursor", (row, col)))
        elif match := re.match(r'\?screen_row\s+(\d+)\s*=\s*"(.*)"$', line):
            text = _libvterm_bytes(match[2]).decode("utf-8", "replace").rstrip()
            steps.append(("row", (int(match[1]), text)))
    return steps


# vt100-rust steps whose cell attributes differ from ptyd's, with the reason (xterm's rules).
VT100_ATTRIBUTE_DIFFERENCES = {
    ("attrs", 7): "bold and faint can both be set (xterm); vt100-rust keeps one",
    ("attrs", 10): "ECH fills with the background colour only (BCE); vt100-rust keeps all",
    ("colors", 11): "ED fills with the background colour only (BCE); vt100-rust keeps fg too",
    ("colors", 12): "ED fills with the background colour only (BCE); vt100-rust keeps fg too",
    ("ich_dch_ech", 15): "ICH inserts blanks with the background colour only (BCE)",
}


def vt100_expected_attributes(group: str, step: int) -> dict[str, dict[str, object]]:
    """Non-default cell attributes of a vt100-rust step, keyed "row,col"."""
    cells = json.loads((VT100 / "fixtures" / group / f"{step}.json").read_text())["cells"]
    names = ("fgcolor", "bgcolor", "bold", "dim", "italic", "underline", "inverse")
    out = {key: {k: v for k, v in cell.items() if k in names} for key, cell in cells.items()}
    return {key: attrs for key, attrs in out.items() if attrs}
