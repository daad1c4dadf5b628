"""Framing, limits and request validation of the wire protocol (in process, both hot paths)."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptyd import config, errors, protocol, schemas


def test_frame_round_trip() -> None:
    message = {"type": "input", "id": 7, "session": 1, "data": bytes(range(256))}
    frame = protocol.encode(message)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert protocol.FrameDecoder(1 << 20).feed(frame) == [message]


def test_encode_from_many_threads_and_after_a_big_frame() -> None:
    """encode() reuses a packer per thread: frames from concurrent threads stay whole, and a
    big frame (a snapshot) does not leave its buffer behind for the next small one."""
    from concurrent.futures import ThreadPoolExecutor

    big = {"type": "response", "id": 1, "ok": True, "result": {"data": b"x" * (1 << 20)}}
    assert protocol.FrameDecoder(1 << 21).feed(protocol.encode(big)) == [big]

    def frames(worker: int) -> bool:
        for i in range(2000):
            message = {"type": "input", "id": i, "session": worker, "data": bytes([worker]) * i}
            if protocol.FrameDecoder(1 << 20).feed(protocol.encode(message)) != [message]:
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(frames, range(4)))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.data())
def test_decoder_handles_any_split(payloads: list[bytes], data: st.DataObject) -> None:
    messages = [{"type": "input", "id": i, "session": 1, "data": p} for i, p in enumerate(payloads)]
    stream = b"".join(protocol.encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = protocol.FrameDecoder(1 << 20)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[start:end])
    assert out == messages
    assert decoder.buffered == 0


def test_oversized_length_prefix_is_refused_before_the_body() -> None:
    decoder = protocol.FrameDecoder(1024)
    with pytest.raises(errors.ProtocolError) as info:
        decoder.feed(struct.pack(">I", 0xFFFFFFFF))
    assert info.value.code == errors.FRAME_TOO_LARGE
    assert decoder.buffered == 4  # nothing of the declared 4 GiB was allocated


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # never-used byte
        b"\x93\x01",  # truncated array
        msgpack.packb([1, 2, 3]),  # not a map
        b"\xdd\xff\xff\xff\xff",  # array declaring 4 billion items in a 5-byte frame
        b"\x91" * 100_000,  # nesting bomb
        b"\xa3\xff\xfe\xfd",  # invalid UTF-8 string
    ],
    ids=["reserved", "truncated", "not-map", "huge-container", "deep-nesting", "bad-utf8"],
)
def test_malformed_bodies_become_errors_and_keep_the_stream(body: bytes) -> None:
    decoder = protocol.FrameDecoder(1 << 20)
    good = {"type": "list", "id": 1}
    out = decoder.feed(struct.pack(">I", len(body)) + body + protocol.encode(good))
    assert isinstance(out[0], errors.ProtocolError) and out[0].code == errors.BAD_FRAME
    assert out[1] == good


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xc1", "invalid data (a byte that starts no msgpack value"),
        (b"\xd4\x01\x00", "ext values are not accepted"),
        (msgpack.packb({"type": "list"}) + b"\x01", "data after the message"),
        (b"\xdd\xff\xff\xff\xff", "a map or array of 4294967295 entries is too large"),
        (b"\x91" * 100_000 + b"\xc0", "maps and arrays nested too deeply"),
        (msgpack.packb({"x": [[[]] * 4000] * 4}), "at most 12288 maps, arrays and entries in all"),
    ],
)
def test_a_malformed_body_says_what_is_wrong_in_words(body: bytes, reason: str) -> None:
    refused = protocol.decode_body(body, protocol.MAX_REQUEST_CONTAINER)
    assert isinstance(refused, errors.ProtocolError) and refused.code == errors.BAD_FRAME
    assert reason in str(refused)


def test_request_containers_are_capped_at_4096_entries() -> None:
    """A 4 MiB frame of 450,000 tiny keys is refused as bad_frame on the daemon's side (it took
    70 MiB and most of a second to decode and validate); 4,096 entries, env's own limit, pass;
    the client's decoder keeps the body-length bound (json snapshots hold long row lists)."""
    import time

    limit = protocol.MAX_REQUEST_CONTAINER
    env = {f"V{i}": "x" for i in range(limit)}
    fine = protocol.encode(protocol.request(1, "create", argv=["sh"] * limit, env=env))
    bomb = protocol.encode({"type": "list", "id": 2, **{f"k{i}": 0 for i in range(450_000)}})
    daemon_side = protocol.FrameDecoder(protocol.DEFAULT_MAX_REQUEST_FRAME, limit)
    start = time.monotonic()
    decoded = daemon_side.feed(fine + bomb)
    print(f"\nbomb refused in {(time.monotonic() - start) * 1000:.0f} ms")
    assert schemas.parse_request(decoded[0]).fields["env"] == env
    assert isinstance(decoded[1], errors.ProtocolError) and decoded[1].code == errors.BAD_FRAME
    rows = protocol.encode({"event": "snapshot", "rows": [[]] * (limit + 1)})
    assert protocol.FrameDecoder(protocol.MAX_RESPONSE_FRAME).feed(rows)[0]["rows"] == [[]] * (
        limit + 1
    )


def test_unknown_fields_are_named_up_to_ten() -> None:
    message = {"type": "list", "id": 1, **{f"k{i:02}": 0 for i in range(25)}}
    with pytest.raises(errors.ProtocolError) as refused:
        schemas.parse_request(message)
    assert str(refused.value).endswith(
        "k00, k01, k02, k03, k04, k05, k06, k07, k08, k09 and 15 more"
    )


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "nope", "id": 1}, errors.UNKNOWN_TYPE),
        ({"type": "list"}, errors.BAD_REQUEST),
        ({"type": "info", "id": 1}, errors.BAD_REQUEST),
        ({"type": "input", "id": 1, "session": 1, "data": "text, not bin"}, errors.BAD_REQUEST),
        ({"type": "resize", "id": 1, "session": 1, "cols": 0, "rows": 24}, errors.BAD_REQUEST),
        ({"type": "resize", "id": 1, "session": 1, "cols": 80, "rows": 1001}, errors.BAD_REQUEST),
        ({"type": "create", "id": 1, "argv": ["sh"], "cols": 1001}, errors.BAD_REQUEST),
        ({"type": "create", "id": 1, "name": "1abc"}, errors.BAD_REQUEST),
        ({"type": "create", "id": 1, "argv": []}, errors.BAD_REQUEST),
        ({"type": "list", "id": 1, "extra": 1}, errors.BAD_REQUEST),
        ({"type": "attach", "id": 1, "session": 1, "policy": "drop"}, errors.BAD_REQUEST),
    ],
)
def test_schema_violations_name_the_problem(message: dict, code: str) -> None:
    with pytest.raises(errors.ProtocolError) as info:
        schemas.parse_request(message)
    assert info.value.code == code
    assert str(info.value)


def test_the_largest_size_is_the_emulators() -> None:
    """A PTY larger than its emulator would have snapshots that do not match its screen."""
    from ptyd import emulator

    assert protocol.MAX_SIZE == emulator.MAX_DIMENSION
    request = {"type": "resize", "id": 1, "session": 1, "cols": 1000, "rows": 1000}
    assert schemas.parse_request(request).fields["cols"] == 1000


def test_defaults_are_filled_in() -> None:
    request = schemas.parse_request({"type": "snapshot", "id": 3, "session": "main"})
    assert request.fields == {"session": "main", "format": "text", "scrollback": 0}
    assert schemas.parse_request({"type": "info", "id": 1, "session": "12"}).fields["session"] == 12


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("1.0", True),
        ("1.7", True),
        ("1", True),
        ("2.0", False),
        ("x", False),
        ("\uff11", False),  # a fullwidth 1: digits are ASCII digits
        ("1.\u0663", False),
    ],
)
def test_version_compatibility(version: str, ok: bool) -> None:
    assert protocol.is_compatible(version) is ok


@pytest.mark.parametrize("offset", [0, 1, 2**40])
def test_output_frames_of_both_hot_paths_decode_to_the_documented_event(fast, offset: int) -> None:
    data = bytes(range(256)) * 3
    frame = fast.encode_output(protocol.output_frame_prefix(42), offset, data)
    assert protocol.FrameDecoder(1 << 20).feed(frame) == [
        {"type": "event", "event": "output", "session": 42, "offset": offset, "data": data}
    ]


@pytest.mark.parametrize("offset", [0, 1, 2**40])
@pytest.mark.parametrize("size", [0, 1, 300, 70_000])
def test_output_frames_are_read_from_their_layout_and_nothing_else_is(
    fast, offset: int, size: int
) -> None:
    """``parse_output`` (the attach relay's fast path) agrees with msgpack on every output
    frame of its session, and takes no other frame for one: another session's output, a
    response, an event with the same keys in another form."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    prefix = protocol.output_frame_prefix(42)
    stream = (
        fast.encode_output(prefix, offset, data)
        + fast.encode_output(protocol.output_frame_prefix(43), offset, data)
        + protocol.encode(protocol.ok_response(7, {}))
        + protocol.encode(
            {"type": "event", "event": "output", "session": 42, "offset": offset, "data": data}
        )
    )
    decoder = protocol.FrameDecoder(1 << 20)
    bodies = decoder.feed_bodies(stream[:5]) + decoder.feed_bodies(stream[5:])
    assert [protocol.decode_body(body) for body in bodies] == protocol.FrameDecoder(1 << 20).feed(
        stream
    )
    assert protocol.parse_output(bodies[0], prefix) == (offset, data)
    assert protocol.parse_output(bodies[1], prefix) is None
    assert protocol.parse_output(bodies[2], prefix) is None
    # The same map packed compactly (small ints, bin8/16) is valid msgpack but mostly not the
    # layout: it goes to the decoder. Where msgpack's own choice is the layout, it is read right.
    assert protocol.parse_output(bodies[3], prefix) in (None, (offset, data))
    for cut in range(len(bodies[0])):
        assert protocol.parse_output(bodies[0][:cut], prefix) is None


def test_every_error_code_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    missing = [code for code in errors.ALL_CODES if f"`{code}`" not in doc]
    assert not missing


@pytest.mark.parametrize("text", ["+5", "1_000", "\u0663", "1000,,1001", "-1", "5,"])
def test_allowed_uids_are_ascii_numbers_with_one_comma_between(text: str) -> None:
    with pytest.raises(ValueError, match="is not a list of numeric uids"):
        config.parse_uids(text)
    assert config.parse_uids(" 1000, 1001 1002") == (1000, 1001, 1002)
