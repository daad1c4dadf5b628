"""Fuzz loops for the two parsers that read untrusted bytes: the emulator feed (checklist E1, on
both backends, asserting the E3 invariants after every chunk) and the request frame decoder with
its schema validation (B1-B4).

Run: python -m benchmarks.fuzz --seconds N [--target frames|emulator] [--backend compiled|pure]
     [--engine atheris|mutate] [--crashes DIR] [--save-corpus DIR]

Each (target, backend) runs in its own process for N seconds. The engine is atheris (libFuzzer,
coverage-guided over the Python code; ``pip install atheris``) when it is importable, otherwise a
random-mutation loop; both start from the same seeds: the shared conformance corpora
(tests/emulator_corpus.py), the E4 hostile outputs and one valid frame of every request type.
A finding is an exception other than the parser's own errors, an input taking over 1 s, or the
process growing past 512 MiB; its input is saved under --crashes (default: a temporary folder)
and the run exits 1. Commit a reproducer as a regression test (H4): put it in
tests/fuzz_regressions/<target>/ under a name that says what it broke;
tests/test_fuzz_regressions.py replays every file there on each run. ``--save-corpus DIR``
keeps the inputs atheris found interesting (new coverage) in DIR/<target>/, the way that
folder was filled.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MAX_LEN = 4096
TIMEOUT = 1.0  # seconds one input may take
RSS_LIMIT_MB = 512
TARGETS = ("emulator", "frames")
BACKENDS = ("compiled", "pure")
# Bytes the mutator splices in: the pieces escape sequences and frames are made of.
TOKENS = [
    b"\x1b[", b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b\\", b"\x07", b";", b"?", b":", b"9" * 12,
    b"2147483647", b"\x18", b"\x1a", b"\xc2\x9b", b"\xe2\x80\x8b", b"\xcc\x81", b"\x1b(0",
    b"\x1b[?1049h", b"\xdd\xff\xff\xff\xff", b"\xc1", b"\x00\x00\x00\x10", b"\xff\xff\xff\xff",
]  # fmt: skip


# -- targets ------------------------------------------------------------------------------------


def emulator_target(backend: str) -> Callable[[bytes], None]:
    """Feed the input in up to 8 chunks to a small screen; the invariants hold after each."""
    from ptyd._vt import VtEmulator
    from ptyd.pyte_backend import PyteEmulator
    from tests.test_reliability_figures import assert_invariants

    cls = VtEmulator if backend == "compiled" else PyteEmulator

    def run(data: bytes) -> None:
        if len(data) < 3:
            return
        cols, rows, scrollback = data[0] % 40 + 1, data[1] % 12 + 1, data[2] % 4
        body = data[3:]
        step = max(1, len(body) // (data[2] % 8 + 1))
        emu = cls(cols, rows, scrollback=scrollback)
        for start in range(0, len(body), step):
            emu.feed(body[start : start + step])
            assert_invariants(emu, cols, rows, scrollback)
        emu.take_replies()
        emu.snapshot_ansi()
        emu.snapshot_json(scrollback)

    return run


def frames_target(backend: str) -> Callable[[bytes], None]:
    """The daemon's side of a connection: decode frames, validate each as a request; the only
    acceptable failures are ProtocolErrors (answered with an error code, or close)."""
    from ptyd import errors, events, protocol, schemas

    def run(data: bytes) -> None:
        decoder = protocol.FrameDecoder(
            protocol.DEFAULT_MAX_REQUEST_FRAME, protocol.MAX_REQUEST_CONTAINER
        )
        step = max(1, len(data) // 3)
        for start in range(0, len(data), step):
            try:
                messages = decoder.feed(data[start : start + step])
            except errors.ProtocolError:
                return  # unrecoverable framing: the daemon closes the connection
            for message in messages:
                if isinstance(message, errors.ProtocolError):
                    continue
                events.from_wire(message)
                with contextlib.suppress(errors.ProtocolError):
                    schemas.parse_request(message)

    return run


def seeds(target: str) -> list[bytes]:
    """The starting corpus, each seed at most MAX_LEN bytes."""
    from ptyd import protocol, schemas

    if target == "frames":
        found = [
            protocol.encode(protocol.request(1, kind, **_sample_fields(kind)))
            for kind in schemas.SCHEMAS
        ]
        found += [struct.pack(">I", 2**32 - 1), b"\x00\x00\x00\x01\xc1", b"\x00\x00\x00\x00"]
        return found
    from tests.emulator_corpus import CORPUS
    from tests.test_reliability_figures import hostile_outputs

    size = MAX_LEN - len(SEED_HEADER)
    found = [SEED_HEADER + data[:size] for data in hostile_outputs().values()]
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix not in (".md", ".json", ".toml", ".rs", ".py"):
            found.append(SEED_HEADER + path.read_bytes()[:size])
    return found


def _sample_fields(kind: str) -> dict[str, object]:
    """Plausible values for a request's fields (enough to reach each validator)."""
    from ptyd import protocol, schemas

    samples: dict[str, object] = {
        "session": 1, "argv": ["sh"], "cols": 80, "rows": 24, "data": b"x", "name": "demo",
        "version": protocol.VERSION_TEXT, "format": "text", "snapshot": "ansi", "signal": "HUP",
    }  # fmt: skip
    return {name: samples[name] for name in schemas.SCHEMAS[kind] if name in samples}


TARGET_FACTORIES = {"emulator": emulator_target, "frames": frames_target}
# The emulator target's first three bytes for the seeds: 40 columns, 12 rows, scrollback 3, fed
# in 4 chunks (see emulator_target).
SEED_HEADER = bytes([39, 11, 3])


# -- engines (run in a child process) -----------------------------------------------------------


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four random edits: flip, insert a token or random bytes, delete, repeat, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(out))
        op = rng.randrange(6)
        if op == 0 and out:
            out[min(where, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[where:where] = rng.choice(TOKENS)
        elif op == 2:
            out[where:where] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            del out[where : where + rng.randint(1, 64)]
        elif op == 4:
            out[where:where] = out[where : where + rng.randint(1, 32)] * rng.randint(2, 50)
        else:
            other = rng.choice(corpus)
            start = rng.randint(0, len(other))
            out[where:where] = other[start : start + rng.randint(1, 256)]
    return bytes(out[:MAX_LEN])


def save_finding(crashes: Path, data: bytes, reason: str) -> Path:
    crashes.mkdir(parents=True, exist_ok=True)
    path = crashes / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    print(f"FINDING {reason}: {path}", file=sys.stderr)
    return path


def run_mutation(
    run: Callable[[bytes], None], corpus: list[bytes], seconds: float, crashes: Path
) -> int:
    """Random mutation of the seeds for ``seconds``; returns the number of executions."""
    rng = random.Random(int(os.environ.get("PTYD_FUZZ_SEED", "0")) or None)
    execs = 0
    deadline = time.monotonic() + seconds
    pending = list(corpus)  # every seed once as it is, then mutations
    while pending or time.monotonic() < deadline:
        data = pending.pop() if pending else mutate(rng, rng.choice(corpus), corpus)
        start = time.monotonic()
        try:
            run(data)
        except Exception as exc:
            save_finding(crashes, data, f"{type(exc).__name__}: {exc}")
            raise
        if time.monotonic() - start > TIMEOUT:
            save_finding(crashes, data, f"slow input: {time.monotonic() - start:.2f} s")
            sys.exit(1)
        execs += 1
        if execs % 1000 == 0:
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            if rss_mb > RSS_LIMIT_MB:
                save_finding(crashes, data, f"RSS {rss_mb:.0f} MiB")
                sys.exit(1)
    return execs


def run_atheris(
    run: Callable[[bytes], None], corpus: list[bytes], seconds: float, crashes: Path, work: Path
) -> None:
    """libFuzzer through atheris; it prints its own summary ("Done N runs") and exits."""
    import atheris

    seed_dir = work / "seeds"  # libFuzzer adds the inputs it finds interesting here
    seed_dir.mkdir()
    for index, data in enumerate(corpus):
        (seed_dir / f"seed-{index}").write_bytes(data)
    crashes.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(seconds))}",
        f"-timeout={int(TIMEOUT)}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        os.fspath(seed_dir),
    ]
    atheris.Setup(argv, run)
    atheris.Fuzz()


def child(
    target: str, backend: str, engine: str, seconds: float, crashes: Path, work: Path
) -> None:
    if engine == "atheris":
        import atheris

        # Coverage feedback from ptyd's Python code (imported here for the first time); pyte
        # and the compiled engine run uninstrumented, at full speed.
        with atheris.instrument_imports(include=["ptyd"]):
            run = TARGET_FACTORIES[target](backend)
    else:
        run = TARGET_FACTORIES[target](backend)
    corpus = seeds(target)
    if engine == "atheris":
        run_atheris(run, corpus, seconds, crashes, work)
    execs = run_mutation(run, corpus, seconds, crashes)
    print(f"Done {execs} runs in {int(seconds)} second(s)", file=sys.stderr)


# -- driver -------------------------------------------------------------------------------------


def default_engine() -> str:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "mutate"
    return "atheris"


def fuzz_one(
    target: str,
    backend: str,
    engine: str,
    seconds: float,
    crashes: Path,
    save_corpus: Path | None = None,
) -> tuple[int, int]:
    """Run one target in a child process; returns (executions, exit status)."""
    env = {k: v for k, v in os.environ.items() if k != "PTYD_PURE"}
    if backend == "pure":
        env["PTYD_PURE"] = "1"
    work = Path(tempfile.mkdtemp(prefix="ptyd-fuzz-"))
    command = [sys.executable, "-m", "benchmarks.fuzz", "--child", target, backend, engine]
    command += [str(seconds), os.fspath(crashes), os.fspath(work)]
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"  {target}/{backend}: hung (no exit {seconds + 120:.0f} s)", file=sys.stderr)
        return 0, 1
    finally:
        if save_corpus is not None:
            _keep_found_inputs(work / "seeds", save_corpus / target)
        shutil.rmtree(work, ignore_errors=True)
    done = re.findall(r"Done (\d+) runs", result.stderr)
    if result.returncode != 0:
        print(f"  {target}/{backend} failed:\n{result.stderr[-4000:]}", file=sys.stderr)
    return (int(done[-1]) if done else 0), result.returncode


def _keep_found_inputs(seed_dir: Path, into: Path) -> None:
    """Copy what libFuzzer added to the seed folder (named by content hash; seeds are
    ``seed-N``) into ``into``."""
    if not seed_dir.is_dir():
        return
    into.mkdir(parents=True, exist_ok=True)
    for path in seed_dir.iterdir():
        if not path.name.startswith("seed-"):
            shutil.copyfile(path, into / path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per target and backend")
    parser.add_argument("--target", choices=TARGETS, action="append", help="default: both")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    parser.add_argument("--crashes", type=Path, default=None, help="where findings are saved")
    parser.add_argument(
        "--save-corpus", type=Path, default=None, help="keep inputs atheris found here"
    )
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        target, backend, engine, seconds, crashes, work = args.child
        child(target, backend, engine, float(seconds), Path(crashes), Path(work))
        return 0
    engine = args.engine or default_engine()
    crashes = args.crashes or Path(tempfile.mkdtemp(prefix="ptyd-fuzz-crashes-"))
    failed = False
    print(f"engine {engine}, {args.seconds:g} s per run, findings to {crashes}")
    print(f"{'target':10} {'backend':9} {'executions':>11} {'per second':>11}  result")
    for target in args.target or TARGETS:
        # The frame decoder is the same code on both backends: it runs once.
        backends = args.backend or BACKENDS if target == "emulator" else ["shared"]
        for backend in backends:
            execs, status = fuzz_one(
                target, backend, engine, args.seconds, crashes, args.save_corpus
            )
            failed |= status != 0 or execs == 0
            result = "ok" if status == 0 and execs else f"FAILED (exit {status})"
            print(f"{target:10} {backend:9} {execs:11,} {execs / args.seconds:11,.0f}  {result}")
    if not failed and args.crashes is None:
        shutil.rmtree(crashes, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
