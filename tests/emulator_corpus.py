"""Loaders for the shared conformance corpora used by the emulator tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
XTERM = CORPUS / "xtermjs-escape-sequence-files"
PYTE = CORPUS / "pyte-captured"
ALACRITTY = CORPUS / "alacritty-ref"
VTEBENCH = CORPUS / "vtebench" / "benchmarks"

# xterm files outside the supported set, each with the reason.
XTERM_UNCOVERED = {
    "t0084-CBT": "xterm quirk: CBT while a wrap is pending keeps the pending wrap "
    "(also skipped by xterm.js)",
    "t0103-reverse_wrap": "reverse-wraparound mode 45 is not supported (also skipped by xterm.js)",
    "t600-DECSTBM_SR": "SR (CSI SP A) horizontal scrolling is not supported",
    "t601-DECSTBM_SL": "SL (CSI SP @) horizontal scrolling is not supported",
    "t602-DECSTBM_DECIC": "DECIC (CSI ' }) column insertion is not supported",
    "t603-DECSTBM_DECDC": "DECDC (CSI ' ~) column deletion is not supported",
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
