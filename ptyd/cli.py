"""``ptyd`` command line: argv to commands. The only module that prints for humans.

Global options (-S/--socket, -L, --no-autostart) are accepted before or after the command name.
Every error is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
import time
from collections.abc import Callable, Sequence

from . import config as config_module
from . import handoff as handoff_module
from . import launcher, protocol
from ._record import fields
from ._version import __version__
from .blocking import BlockingConnection
from .config import Config
from .errors import (
    NAME_TAKEN,
    AlreadyRunning,
    ConfigError,
    ConnectionFailed,
    PtydError,
    RequestError,
    ScreenWaitFailed,
    SessionNotFound,
)
from .identity import check_identity
from .keys import key_input, parse_detach_key
from .records import SessionInfo
from .socketdir import is_listening

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from typing import Any

    from .handoff import Handoff

EXIT_ERROR = 1
EXIT_USAGE = 2


def _print_json(data: Any, indent: int | None) -> None:
    import json  # here, not at the top: only --json and the JSON snapshot need it

    print(json.dumps(data, indent=indent), flush=True)


def _shell_join(argv: list[str]) -> str:
    import shlex  # here, not at the top: only the listings need it

    return _printable(shlex.join(argv))


# Control characters as escapes: a command's newline or ESC must not break a listing or
# reach the terminal that shows it.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL_ESCAPES.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})
# Bidirectional controls too: they reorder what follows them on the line ("Trojan Source").
_BIDI_CONTROLS = [0x61C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROL_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI_CONTROLS})


def _printable(text: str) -> str:
    return text.translate(_CONTROL_ESCAPES)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 80x24")
    if not all(1 <= int(part) <= protocol.MAX_SIZE for part in match.groups()):
        limit = protocol.MAX_SIZE
        raise argparse.ArgumentTypeError(f"{text!r}: sizes go from 1x1 to {limit}x{limit}")
    return int(match.group(1)), int(match.group(2))


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return name, value


def _detach_key(text: str) -> int:
    try:
        return parse_detach_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _spin_us(text: str) -> int:
    from .attach import parse_spin_us

    try:
        return parse_spin_us(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_options(parser: argparse.ArgumentParser, *, is_top: bool) -> None:
    """-S/-L/--no-autostart, on the top parser and on every command (after its name)."""
    default = None if is_top else argparse.SUPPRESS
    group = parser.add_argument_group("daemon selection")
    group.add_argument(
        "-S", "--socket", metavar="PATH", default=default, help="socket path (PTYD_SOCKET)"
    )
    group.add_argument(
        "-L",
        dest="socket_name",
        metavar="NAME",
        default=default,
        help="use NAME.sock in the default directory",
    )
    group.add_argument(
        "--no-autostart",
        action="store_true",
        default=False if is_top else argparse.SUPPRESS,
        help="never start a daemon (PTYD_NO_AUTOSTART=1)",
    )


@functools.cache
def _help_width() -> int:
    """What argparse would ask of ``shutil.get_terminal_size``, less its margin of 2."""
    text = os.environ.get("COLUMNS", "")
    columns = int(text) if protocol.is_ascii_digits(text) else 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the width: argparse finds it through shutil, whose import
    loads the bz2 and lzma libraries, 7 ms of every 40 ms command here, help or not."""

    def __init__(self, prog: str, **options: Any) -> None:
        options.setdefault("width", _help_width())
        super().__init__(prog, **options)


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--asyncio", action="store_true", help="use the asyncio loop instead of uvloop"
    )
    for name, setting in config_module.SETTINGS.items():
        if name in ("socket", "autostart"):
            continue
        serve.add_argument(
            config_module.flag_for(name),
            dest=f"set_{name}",
            metavar=setting.unit.upper(),
            action="append" if name == "allowed_uids" else "store",
            help=f"{setting.help} ({setting.env})",
        )


def _new_arguments(new: argparse.ArgumentParser) -> None:
    new.add_argument("-n", "--name", help="unique session name")
    new.add_argument(
        "-d", "--detached", action="store_true", help="print the new session's id and return"
    )
    new.add_argument("--cwd", help="working directory (default: the current one)")
    new.add_argument("--size", type=_size, help="COLSxROWS (default: this terminal's, else 80x24)")
    new.add_argument(
        "-e",
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a variable",
    )
    new.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS... (default: your shell)")


def _attach_arguments(attach: argparse.ArgumentParser) -> None:
    attach.add_argument("target", metavar="TARGET")
    attach.add_argument(
        "-A",
        dest="create",
        action="store_true",
        help="create the session TARGET (running CMD) if it does not exist",
    )
    keys = attach.add_mutually_exclusive_group()
    keys.add_argument(
        "-e",
        dest="detach_key",
        type=_detach_key,
        metavar="KEY",
        help="detach key in ^X notation (default ^\\); pressed twice it is sent through",
    )
    keys.add_argument("-E", dest="no_detach_key", action="store_true", help="no detach key")
    attach.add_argument(
        "-r", dest="read_only", action="store_true", help="read-only: show output, ignore keys"
    )
    attach.add_argument(
        "--no-tty", action="store_true", help="plain byte relay of stdin/stdout, for scripts"
    )
    attach.add_argument(
        "--from-offset",
        type=int,
        metavar="N",
        help="with --no-tty: output from stream offset N, if the daemon still holds it",
    )
    attach.add_argument(
        "--spin-us",
        type=_spin_us,
        metavar="US",
        help="after each key, poll for the echo this long without sleeping, while a CPU is idle;"
        " 0: never (PTYD_SPIN_US, default 300)",
    )
    attach.add_argument(
        "cmd", nargs=argparse.REMAINDER, help="with -A: -- CMD ARGS... (default: your shell)"
    )


def _json_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true")


def _info_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("target", metavar="TARGET")
    _json_argument(info)


def _send_arguments(send: argparse.ArgumentParser) -> None:
    send.add_argument("target", metavar="TARGET")
    mode = send.add_mutually_exclusive_group()
    mode.add_argument(
        "--keys", action="store_true", help="read key names: Enter Tab Escape C-c Up F1 ..."
    )
    mode.add_argument("--stdin", action="store_true", help="send raw bytes from standard input")
    send.add_argument("text", nargs="*", help="text to send as given (words joined by spaces)")


def _snapshot_arguments(snap: argparse.ArgumentParser) -> None:
    snap.add_argument("target", metavar="TARGET")
    snap.add_argument("--format", choices=("text", "ansi", "json"), default="text")
    snap.add_argument(
        "--scrollback", type=int, default=0, metavar="N", help="include N scrollback lines"
    )


def _resize_arguments(resize: argparse.ArgumentParser) -> None:
    resize.add_argument("target", metavar="TARGET")
    resize.add_argument("size", type=_size, metavar="COLSxROWS")


def _signal_arguments(sig: argparse.ArgumentParser) -> None:
    sig.add_argument("target", metavar="TARGET")
    sig.add_argument("signal", metavar="SIGNAL", help="name (HUP, SIGTERM) or number")
    sig.add_argument(
        "--to", choices=("foreground", "process", "group", "session"), default="foreground"
    )


def _kill_arguments(kill: argparse.ArgumentParser) -> None:
    kill.add_argument("target", metavar="TARGET")
    kill.add_argument("--no-wait", action="store_true", help="return without waiting for the exit")


def _wait_arguments(wait: argparse.ArgumentParser) -> None:
    wait.add_argument("target", metavar="TARGET")
    wait.add_argument("--timeout", type=float, metavar="SECONDS")


def _stats_arguments(stats: argparse.ArgumentParser) -> None:
    _json_argument(stats)
    stats.add_argument(
        "--watch", type=float, nargs="?", const=1.0, metavar="SECONDS", help="repeat every SECONDS"
    )


def _expect_arguments(expect: argparse.ArgumentParser) -> None:
    expect.add_argument("target", metavar="TARGET")
    expect.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="a Python regular expression, searched in the screen's text: rows without "
        "trailing blanks, ^ and $ at each row",
    )
    expect.add_argument(
        "--quiet", type=float, metavar="SECONDS", help="and no output for SECONDS (or only that)"
    )
    expect.add_argument("--timeout", type=float, metavar="SECONDS", help="give up (status 124)")
    expect.add_argument(
        "--scrollback", type=int, default=0, metavar="N", help="search N lines of history too"
    )
    expect.add_argument(
        "--screen",
        action="store_true",
        help="print the screen instead of the match (on failure too: the last one seen)",
    )


def _record_arguments(record: argparse.ArgumentParser) -> None:
    record.add_argument("target", metavar="TARGET")
    record.add_argument("file", metavar="FILE", help="the asciicast v2 file (- for stdout)")
    record.add_argument("--title", default="", help="the recording's title (default: none)")


def _no_arguments(command: argparse.ArgumentParser) -> None:
    """shutdown: the global options only."""


# Each command: its one-line help and what adds its arguments, in the order help lists them.
COMMAND_LINE: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "serve": ("run the daemon in the foreground (for systemd and containers)", _serve_arguments),
    "new": ("start a session (attached unless -d)", _new_arguments),
    "attach": ("attach this terminal to a session (detach key: Ctrl-\\)", _attach_arguments),
    "ls": ("list sessions", _json_argument),
    "info": ("show one session", _info_arguments),
    "send": ("send text (or keys) to a session", _send_arguments),
    "snapshot": ("print the current screen", _snapshot_arguments),
    "resize": ("resize a session", _resize_arguments),
    "signal": ("send a signal to a session's foreground process group", _signal_arguments),
    "kill": ("hang a session up (SIGHUP, then SIGTERM, then SIGKILL)", _kill_arguments),
    "wait": ("wait until a session exits; exit with its status", _wait_arguments),
    "expect": ("wait until the screen shows a pattern, or output goes quiet", _expect_arguments),
    "record": ("record a session, timed, as an asciicast file", _record_arguments),
    "stats": ("daemon, session and subscriber statistics", _stats_arguments),
    "shutdown": ("stop the daemon and every session", _no_arguments),
}


def command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, when the global options before it are plain to read (-S,
    -L, --no-autostart); None when anything else comes first (help, --version, no command)."""
    tokens = iter(argv)
    for token in tokens:
        if token in ("-S", "-L") or (len(token) > 3 and "--socket".startswith(token)):
            next(tokens, None)
        elif token == "--no-autostart" or token.startswith(("-S", "-L", "--socket=")):
            continue
        elif token.startswith("-"):
            return None
        else:
            return token if token in COMMAND_LINE else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, that command's arguments alone (a command
    parses its own argv: building all fifteen was 5 ms of a 40 ms command here)."""
    parser = argparse.ArgumentParser(
        prog="ptyd",
        description="Terminal sessions that outlive their clients: a PTY session daemon.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print version and backend")
    _global_options(parser, is_top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help, add_arguments) in COMMAND_LINE.items():
        if only is None or name == only:
            sub = commands.add_parser(
                name, help=help, description=help, formatter_class=_HelpFormatter
            )
            _global_options(sub, is_top=False)
            add_arguments(sub)
    return parser


def _command_parser(
    parser: argparse.ArgumentParser, command: str | None
) -> argparse.ArgumentParser:
    """The parser of ``command``, whose usage line a usage error shows (else the top one)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What argparse cannot check alone: options that go together, and their ranges."""
    if args.command == "attach":
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if command is args.cmd and command[:1] and command[0].startswith("-"):
            return f"unexpected {command[0]!r}: options go before TARGET, a command after --"
        if command and not args.create:
            return "a command is only used with -A (create the session if it does not exist)"
        if args.from_offset is not None and not args.no_tty:
            return "--from-offset needs --no-tty: a terminal is repainted from a snapshot"
    if args.command == "send":
        if args.stdin and _send_words(args):
            return "--stdin sends standard input: no TEXT with it"
        if not args.stdin and not _send_words(args):
            return 'nothing to send: give TEXT ("" for none), key names with --keys, or --stdin'
    if args.command == "wait" and args.timeout is not None and not args.timeout >= 0:
        return f"--timeout must be 0 (poll) or more seconds, not {args.timeout:g}"
    if args.command == "expect":
        return _expect_problem(args)
    if args.command == "stats" and args.watch is not None and not 0.1 <= args.watch <= 3600:
        return f"--watch must be from 0.1 to 3600 seconds, not {args.watch:g}"
    return None


def _expect_problem(args: argparse.Namespace) -> str | None:
    if args.pattern is None and args.quiet is None:
        return "nothing to wait for: give a PATTERN, --quiet SECONDS, or both"
    for option in ("quiet", "timeout"):
        value = getattr(args, option)
        if value is not None and not value >= 0:
            return f"--{option} must be 0 or more seconds, not {value:g}"
    if not 0 <= args.scrollback <= 10_000_000:
        return f"--scrollback must be 0 to 10000000 lines, not {args.scrollback}"
    if args.pattern is not None:
        try:
            re.compile(args.pattern)
        except re.error as exc:
            return f"invalid PATTERN {args.pattern!r}: {exc}"
    return None


def _config_from(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.socket_name:
        overrides["socket"] = config_module.socket_path_for(args.socket_name)
    if args.socket:
        overrides["socket"] = os.path.abspath(args.socket)
    if args.no_autostart:
        overrides["autostart"] = False
    for name, setting in config_module.SETTINGS.items():
        raw = getattr(args, f"set_{name}", None)
        if raw is None:
            continue
        text = " ".join(raw) if isinstance(raw, list) else raw
        try:
            overrides[name] = setting.parse(text)
        except ValueError as exc:
            raise ConfigError(f"invalid {config_module.flag_for(name)}={text!r}: {exc}") from None
    return config_module.load(**overrides)


def run() -> None:
    """The ``ptyd`` command and ``python -m ptyd``: ``main``, then an exit that skips tearing
    the interpreter down. Once its output is flushed a command has nothing left to clean up,
    and the teardown of every module was 5 ms of a 45 ms ``ptyd ls`` (the daemon, which logs,
    exits the usual way)."""
    status = main()
    for stream in (sys.stdout, sys.stderr):  # None when the descriptor was closed at start
        try:
            if stream is not None:
                stream.flush()
        except OSError:  # as main: output into head(1) and the like, not worth a message
            status = EXIT_ERROR
    if "logging" in sys.modules:
        sys.exit(status)
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    handoff = None
    if handoff_module.ENV in os.environ:  # the ``ptyd`` starter attached and showed the screen
        try:
            handoff = handoff_module.take(os.environ)
            if handoff is not None and not _is_usable(handoff, argv):
                handoff.release()  # before a word is printed; then the command starts over
                handoff = None
        except KeyboardInterrupt:  # held by the starter, delivered as the terminal is given back
            return 130
    try:
        return _main(argv, handoff)
    finally:
        if handoff is not None and not handoff.is_taken:  # the relay did not start
            with contextlib.suppress(KeyboardInterrupt):
                handoff.release()


def _is_usable(handoff: Handoff, argv: Sequence[str] | None) -> bool:
    """Is the starter's attach the one these arguments ask for, with every setting it reads
    valid? Checked without a word printed (the terminal is still raw); what is wrong is then
    reported by the command started over, on the terminal given back."""
    import io

    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            check_identity()
            argv = sys.argv[1:] if argv is None else argv
            args, extra = build_parser("attach").parse_known_args(argv)
            if extra or args.version or _usage_problem(args) is not None:
                return False
            config = _config_from(args)
            from ._backend import relay  # noqa: F401  (PTYD_PURE, read here)
            from .attach import options_from

            options_from(args)  # PTYD_SPIN_US
            protocol.check_hello(handoff.hello)
            return handoff.is_for(args, _target(args.target), config.socket)
    except (SystemExit, PtydError, ValueError, UnicodeError, OSError):
        return False


def _main(argv: Sequence[str] | None, handoff: Handoff | None) -> int:
    try:
        check_identity()
    except PtydError as exc:
        print(f"ptyd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(command_in(argv))
    args, extra = parser.parse_known_args(argv)
    command_parser = _command_parser(parser, args.command)
    if extra and args.command == "send":
        args.text += extra  # words after --keys/--stdin: argparse stops at the first option
    elif args.command == "expect" and args.pattern is None and extra[:1] == ["--"] == extra[:-1]:
        args.pattern = extra[1]  # TARGET --timeout S -- -PATTERN: argparse took TARGET alone
    elif extra:
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if (problem := _usage_problem(args)) is not None:
        command_parser.error(problem)  # before connecting: a daemon is not started for it
    if args.version:
        try:
            from ._backend import BACKEND
        except PtydError as exc:  # PTYD_PURE that is not a boolean
            print(f"ptyd: {exc}", file=sys.stderr)
            return EXIT_ERROR
        print(f"ptyd {__version__} ({BACKEND} backend)")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        config = _config_from(args)
        if args.command == "serve":
            return cmd_serve(config, args)
        handler = _COMMANDS[args.command]
        if handoff is not None:  # the attach these arguments ask for (``_is_usable``)
            with handoff.connection() as client:
                return cmd_attach(client, args, handoff)
        if args.command == "shutdown" and not is_listening(config.socket):
            raise ConnectionFailed(  # starting a daemon only to stop it would hide the mistake
                launcher.lost_socket(config.socket)
                or f"no ptyd daemon is listening on {config.socket}: nothing to shut down"
            )
        with launcher.connect(config) as client:
            return handler(client, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head(1) and the like: not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (PtydError, OSError) as exc:
        print(f"ptyd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except UnicodeEncodeError as exc:  # an argument or variable that is not UTF-8 (the wire's)
        print(f"ptyd: {exc.object[exc.start : exc.end]!r} is not UTF-8 text", file=sys.stderr)
        return EXIT_ERROR


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from . import daemon_log, server  # here: other commands start faster without them

    ready_fd = int(os.environ.pop("PTYD_READY_FD", "-1"))
    if args.background and os.fork() > 0:
        os._exit(0)  # the intermediate exits; the daemon is reparented and has no terminal

    def report(message: bytes) -> None:
        nonlocal ready_fd
        if ready_fd >= 0:
            os.write(ready_fd, message)
            os.close(ready_fd)
            ready_fd = -1

    try:
        if args.background:
            _detach_stdio(config.log_file)
        elif config.log_file:  # created private before logging opens it: it records sessions' argv
            os.close(os.open(config.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        daemon_log.configure(config.log_level, config.log_file)
        status = server.run(
            config, on_ready=lambda: report(launcher.READY), use_uvloop=not args.asyncio
        )
    except AlreadyRunning as exc:
        report(f"already running: {exc}".encode())
        print(f"ptyd: {launcher.lost_socket(config.socket) or exc}", file=sys.stderr)
        return EXIT_ERROR
    except (PtydError, OSError) as exc:  # the command that started it says why
        report(str(exc).encode())
        raise
    return status


def _detach_stdio(log_file: str | None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_file else null
    os.dup2(out, 1)
    os.dup2(out, 2)


def _target(text: str) -> int | str:
    """A session's id (ASCII digits that fit the wire's 64 bits), else its name (the daemon
    answers ``no_such_session`` for a number no session has)."""
    return int(text) if protocol.is_ascii_digits(text) and int(text) < 2**64 else text


def cmd_new(client: BlockingConnection, args: argparse.Namespace) -> int:
    from .attach import attach_terminal, require_terminal, terminal_size

    if not args.detached:
        require_terminal(args)
    argv = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    cols, rows = args.size or terminal_size(sys.stdout.fileno())
    info = client.create(
        argv or [os.environ.get("SHELL") or "/bin/sh"],
        name=args.name,
        cwd=os.path.abspath(args.cwd) if args.cwd else os.getcwd(),
        env=dict(args.env),
        cols=cols,
        rows=rows,
    )
    if args.detached:
        print(info.id)
        return 0
    return attach_terminal(client, info.id, args)


def cmd_attach(
    client: BlockingConnection, args: argparse.Namespace, handoff: Handoff | None = None
) -> int:
    from .attach import attach_terminal, require_terminal, terminal_size

    argv = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd  # checked by _usage_problem
    require_terminal(args)
    target = _target(args.target)
    if args.create:
        try:
            # An exited session's name goes to a new session (its exit is not what -A asks for).
            is_there = client.info(target).is_running or isinstance(target, int)
        except SessionNotFound:
            is_there = False
        if not is_there:
            cols, rows = terminal_size(sys.stdout.fileno())
            try:
                client.create(
                    argv or [os.environ.get("SHELL") or "/bin/sh"],
                    name=args.target,
                    cwd=os.getcwd(),
                    cols=cols,
                    rows=rows,
                )
            except RequestError as exc:
                if exc.code != NAME_TAKEN:  # another ``attach -A`` created it first: attach
                    raise
    return attach_terminal(client, target, args, handoff)


TIMES = ("created_at", "last_attached", "exited_at")  # Unix times, shown as local times


def _moment(unix_time: float, now: float) -> str:
    """A Unix time as people read it: local date and time, and how long ago."""
    shown = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix_time))
    return f"{shown} ({_age(max(now - unix_time, 0))} ago)"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _state(info: SessionInfo) -> str:
    if info.is_running:
        return "running"
    if info.exit_signal is not None:
        return f"signal {info.exit_signal}"
    return f"exit {info.exit_code}"


def cmd_ls(client: BlockingConnection, args: argparse.Namespace) -> int:
    sessions = client.list_sessions()
    if args.json:
        _print_json([_as_dict(info) for info in sessions], indent=2)
        return 0
    rows = [("ID", "NAME", "COMMAND", "SIZE", "CLIENTS", "STATE", "AGE")]
    now = time.time()
    for info in sessions:
        command = _shell_join(info.argv)
        rows.append(
            (
                str(info.id),
                info.name or "-",
                _clipped(command, 40),
                f"{info.cols}x{info.rows}",
                str(info.clients),
                _state(info),
                _age(now - info.created_at),
            )
        )
    widths = [max(_cells(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (
            cell + " " * (width - _cells(cell)) for cell, width in zip(row, widths, strict=True)
        )
        print("  ".join(cells).rstrip())
    return 0


def _cells(text: str) -> int:
    """Terminal cells a listing's text takes: East Asian wide characters two, combining marks
    none (unicodedata's rule: wcwidth's tables would add 19 ms to ``ptyd ls``)."""
    import unicodedata

    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _clipped(text: str, cells: int) -> str:
    """``text`` cut to at most ``cells`` cells, with an ellipsis where it was cut."""
    if _cells(text) <= cells:
        return text
    kept, used = [], 0
    for ch in text:
        used += _cells(ch)
        if used > cells - 1:
            break
        kept.append(ch)
    return "".join(kept) + "…"


def _as_dict(info: SessionInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in fields(info)}


def cmd_info(client: BlockingConnection, args: argparse.Namespace) -> int:
    info = client.info(_target(args.target))
    data = _as_dict(info)
    if args.json:
        _print_json(data, indent=2)
        return 0
    data["argv"] = _shell_join(info.argv)
    data["state"] = _state(info)
    now = time.time()
    for key in TIMES:
        if data[key] is not None:
            data[key] = _moment(data[key], now)
    for key, value in data.items():
        shown = "-" if value is None else _printable(str(value))
        print(f"{key + ':':15} {shown}")
    return 0


def _send_words(args: argparse.Namespace) -> list[str]:
    return args.text[1:] if args.text[:1] == ["--"] else args.text  # "--" ends the options


def cmd_send(client: BlockingConnection, args: argparse.Namespace) -> int:
    words = _send_words(args)
    if args.keys:
        for data, keys in key_input(words):
            client.send(_target(args.target), data, keys=keys)
        return 0
    data = sys.stdin.buffer.read() if args.stdin else " ".join(words).encode()
    client.send(_target(args.target), data)
    return 0


def cmd_snapshot(client: BlockingConnection, args: argparse.Namespace) -> int:
    snap = client.snapshot(_target(args.target), args.format, args.scrollback)
    if args.format == "json":
        _print_json(snap.data, indent=2)
    elif args.format == "ansi":
        sys.stdout.buffer.write(snap.data)
        sys.stdout.flush()
    else:
        print(snap.data)
    return 0


def cmd_resize(client: BlockingConnection, args: argparse.Namespace) -> int:
    client.resize(_target(args.target), *args.size)
    return 0


def cmd_signal(client: BlockingConnection, args: argparse.Namespace) -> int:
    client.signal(_target(args.target), _target(args.signal), args.to)
    return 0


def cmd_kill(client: BlockingConnection, args: argparse.Namespace) -> int:
    target = _target(args.target)
    client.kill(target)
    if not args.no_wait:
        client.wait(target)
    return 0


def cmd_wait(client: BlockingConnection, args: argparse.Namespace) -> int:
    try:
        status = client.wait(_target(args.target), args.timeout)
    except RequestError as exc:
        if exc.code == "timeout":
            print(f"ptyd: {exc}", file=sys.stderr)
            return 124  # as timeout(1)
        raise
    return status.status


def cmd_expect(client: BlockingConnection, args: argparse.Namespace) -> int:
    """The library's ``wait_for``: the one command that needs asyncio (imported here)."""
    from .client import Client

    with Client(client.socket_path, client_name=client.client_name) as library:
        try:
            match = library.wait_for(
                _target(args.target),
                args.pattern,
                quiet=args.quiet,
                scrollback=args.scrollback,
                timeout=args.timeout,
            )
        except ScreenWaitFailed as exc:
            if args.screen and exc.snapshot is not None:
                print(exc.snapshot.data)
            print(f"ptyd: {exc}", file=sys.stderr)
            return 124 if isinstance(exc, TimeoutError) else EXIT_ERROR  # 124: as timeout(1)
    if args.screen:
        print(match.snapshot.data)
    elif match.matched is not None:
        print(match.matched)
    return 0


class _Stopped(Exception):
    """SIGTERM or SIGHUP while recording: end the file as Ctrl-C does."""


def _stop_recording(signum: int, frame: object) -> None:
    raise _Stopped


def cmd_record(client: BlockingConnection, args: argparse.Namespace) -> int:
    """Attach (the library's client: events with their arrival, asyncio imported here) and
    write every output event until the session exits or the recorder is stopped; the status
    is the session's, or 0 when stopped."""
    import signal

    from .asciicast import AsciicastWriter
    from .client import Client
    from .events import DisconnectedEvent, ErrorEvent, ExitEvent, OutputEvent, SnapshotEvent

    if args.file == "-" and sys.stdout is None:
        raise OSError("cannot record to standard output: it is closed")
    with Client(client.socket_path, client_name=client.client_name) as library:
        attached = library.attach(_target(args.target), snapshot="ansi")
        session = attached.session
        if args.file == "-":
            stream = sys.stdout
        else:  # line-buffered: each event is on disk as it comes, whatever stops the recorder
            stream = open(args.file, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop_recording)
        status = 0
        try:
            writer = AsciicastWriter(stream, session.cols, session.rows, title=args.title)
            writer.screen(attached.snapshot)
            try:
                for event in library.events():
                    if isinstance(event, OutputEvent):
                        writer.output(event.data)
                    elif isinstance(event, SnapshotEvent):  # it lagged behind: the screen now
                        writer.screen(event.data)
                    elif isinstance(event, ExitEvent):
                        status = event.status
                        break
                    elif isinstance(event, ErrorEvent):
                        raise ConnectionFailed(f"recording ended: {event.message}")
                    elif isinstance(event, DisconnectedEvent):
                        raise ConnectionFailed(f"lost the ptyd daemon: {event.reason}")
            except (KeyboardInterrupt, _Stopped):
                pass  # stopped by the user: the file ends here, complete
            finally:
                writer.close()
        finally:
            if stream is not sys.stdout:
                stream.close()
    return status


def cmd_stats(client: BlockingConnection, args: argparse.Namespace) -> int:
    while True:
        stats = client.stats()
        if args.json:
            _print_json(stats, indent=2 if not args.watch else None)
        else:
            print(format_stats(stats), flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)  # the client's refresh interval, not daemon synchronisation


def format_stats(stats: dict[str, Any]) -> str:
    daemon = stats["daemon"]
    lines = [
        f"daemon pid {daemon['pid']}  {daemon['backend']} backend  up {_age(daemon['uptime'])}  "
        f"sessions {daemon['sessions']}  clients {daemon['clients']}  "
        f"in {daemon['bytes_in']} B  out {daemon['bytes_out']} B  "
        f"rss {daemon['rss'] / 2**20:.1f} MiB  fds {daemon['open_fds']}"
    ]
    for session in stats["sessions"]:
        lines.append(
            f"  session {session['id']} {session['name'] or '-'}: {session['state']}  "
            f"out {session['bytes_out']} B  {session['read_rate'] / 1024:.1f} KiB/s  "
            f"subscribers {session['subscribers']}  "
            f"emulator backlog {session['emulator_backlog']} B"
            + ("  PAUSED" if session["paused"] else "")
        )
    for sub in stats["subscribers"]:
        lines.append(
            f"    client {sub['client']} ({sub['client_name'] or '-'}) -> session "
            f"{sub['session']}: {sub['policy']}  "
            f"{sub['level']}  backlog {sub['backlog']} B  warnings {sub['warnings']}  "
            f"resyncs {sub['resyncs']}  delivered {sub['bytes_delivered']} B"
        )
    return "\n".join(lines)


def cmd_shutdown(client: BlockingConnection, args: argparse.Namespace) -> int:
    """Ask, then wait for the daemon to exit (as ``tmux kill-server``): a command run next
    starts a new daemon instead of finding this one half gone."""
    pid = client.daemon_info["pid"]
    client.shutdown()
    client.close()  # not one more client for the daemon to flush
    if not launcher.has_exited(os.fspath(client.socket_path), pid, launcher.STOPPING_SECONDS):
        print(
            f"ptyd: the daemon (pid {pid}) is still shutting down after "
            f"{launcher.STOPPING_SECONDS:g} s",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


_COMMANDS: dict[str, Callable[[BlockingConnection, argparse.Namespace], int]] = {
    "new": cmd_new,
    "attach": cmd_attach,
    "ls": cmd_ls,
    "info": cmd_info,
    "send": cmd_send,
    "snapshot": cmd_snapshot,
    "resize": cmd_resize,
    "signal": cmd_signal,
    "kill": cmd_kill,
    "wait": cmd_wait,
    "expect": cmd_expect,
    "record": cmd_record,
    "stats": cmd_stats,
    "shutdown": cmd_shutdown,
}
