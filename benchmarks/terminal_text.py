"""Realistic terminal text, shared by the micro benchmarks and the side-by-side runner."""

from __future__ import annotations

import random

COLUMNS = 80
_WORDS = [
    "build",
    "test",
    "error",
    "warning",
    "info",
    "debug",
    "request",
    "response",
    "session",
    "client",
    "server",
    "socket",
    "buffer",
    "offset",
    "frame",
    "stream",
    "render",
    "update",
    "commit",
    "branch",
    "merge",
    "deploy",
    "config",
    "value",
]
_UNICODE = ("héllo", "naïve", "Größe", "日本語", "→", "✓", "π≈3.14", "…", "ñandú", "中文")


def generate(size: int, seed: int = 4) -> bytes:
    """About ``size`` bytes of 80-column lines: a quarter with SGR colours, some UTF-8."""
    rng = random.Random(seed)
    lines = []
    total = 0
    n = 0
    while total < size:
        words: list[str] = []
        width = 0
        while True:
            word = rng.choice(_UNICODE) if rng.random() < 0.05 else rng.choice(_WORDS)
            if width + len(word) + 1 > COLUMNS - 8:
                break
            words.append(word)
            width += len(word) + 1
        text = f"{n:06d} " + " ".join(words)
        if n % 4 == 0:
            colour = 31 + n % 7
            head, middle, tail = text[:7], text[7:30], text[30:]
            text = f"\x1b[1;{colour}m{head}\x1b[0m{middle}\x1b[38;5;{n % 256}m{tail}\x1b[m"
        line = text.encode() + b"\n"
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)
