"""``Connection.receive_close``: a read that is exactly one close frame.

Whatever it answers, the connection must end as ``buffer_updated`` leaves it
for the same bytes (the same close received and sent, the same state and
reply); for anything else it returns None having changed nothing, so that
``buffer_updated`` then parses the bytes as if it had not been called.
"""

from __future__ import annotations

import random
import struct

import pytest

from tether.protocol.connection import Connection, Side, State
from tether.protocol.events import Close
from tether.protocol.frames import encode_frame

MASK = b"\x01\x02\x03\x04"


def close_frame(payload: bytes, *, first: int = 0x88, mask: bytes | None = MASK) -> bytes:
    """A close frame (or whatever ``first`` makes it) from a client, masked."""
    if mask is None:
        return bytes([first, len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(payload)]) + mask + masked


def code(value: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", value) + reason


CASES = {
    "normal": close_frame(code(1000)),
    "no status": close_frame(b""),
    "reason": close_frame(code(1001, "going away, ünïcödé".encode())),
    "longest reason": close_frame(code(3000, b"x" * 123)),
    "private code": close_frame(code(4999)),
    "reserved code": close_frame(code(1005)),
    "code under 1000": close_frame(code(999)),
    "one byte": close_frame(b"\x03"),
    "bad utf-8": close_frame(code(1000, b"\xff\xfe")),
    "over 125": bytes([0x88, 0xFE, 0, 126]) + MASK + bytes(126),
    "unmasked": close_frame(code(1000), mask=None),
    "rsv1": close_frame(code(1000), first=0xC8),
    "not fin": close_frame(code(1000), first=0x08),
    "ping": close_frame(b"hi", first=0x89),
    "text": close_frame(b"hi", first=0x81),
    "trailing byte": close_frame(code(1000)) + b"\x00",
    "two frames": close_frame(code(1000)) + close_frame(code(1001)),
    "message first": close_frame(b"hi", first=0x81) + close_frame(code(1000)),
    "incomplete": close_frame(code(1000))[:-1],
    "one header byte": b"\x88",
}


def read(connection: Connection, scratch: memoryview, data: bytes, lone: bool) -> object:
    """Feed ``data`` as one read; return what the connection then looks like."""
    view = connection.get_buffer(scratch)
    view[: len(data)] = data
    close = connection.receive_close(scratch, len(data)) if lone else None
    events = [close] if close is not None else list(connection.buffer_updated(scratch, len(data)))
    return (
        events,
        connection.state,
        connection.close_rcvd,
        connection.close_sent,
        None if connection.error is None else str(connection.error),
        b"".join(connection.data_to_send()),
        connection.pending_bytes,
    )


def history(reads: list[bytes], lone: bool, *, we_closed: bool = False) -> list[object]:
    connection = Connection(Side.SERVER)
    scratch = memoryview(bytearray(1 << 16))
    if we_closed:
        connection.send_close(1001, "bye")
    return [read(connection, scratch, data, lone) for data in reads]


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_buffer_updated(name: str) -> None:
    reads = [CASES[name], close_frame(code(1000))]
    assert history(reads, True) == history(reads, False)
    assert history(reads, True, we_closed=True) == history(reads, False, we_closed=True)


@pytest.mark.parametrize("status", [1001, 4321])
def test_answers_the_close_frame_it_takes(status: int) -> None:
    # Twice: the second server connection's reply is the one kept for the code.
    for _ in range(2):
        connection = Connection(Side.SERVER)
        scratch = memoryview(bytearray(1 << 16))
        data = close_frame(code(status, "going away, ünïcödé".encode()))
        connection.get_buffer(scratch)[: len(data)] = data
        close = connection.receive_close(scratch, len(data))
        assert close == Close(status, "going away, ünïcödé")
        assert connection.state is State.CLOSED
        assert connection.close_rcvd == close
        # §5.5.1: the reply echoes the status code.
        assert connection.data_to_send() == [encode_frame(0x8, code(status))]


def test_held_back_bytes_go_to_buffer_updated() -> None:
    # Half a message read before: the close frame is not the read's only frame.
    message = close_frame(b"hello", first=0x81)
    reads = [message[:4], message[4:] + close_frame(code(1000))]
    assert history(reads, True) == history(reads, False)
    connection = Connection(Side.SERVER)
    scratch = memoryview(bytearray(1 << 16))
    connection.get_buffer(scratch)[:4] = message[:4]
    connection.buffer_updated(scratch, 4)
    rest = message[4:] + close_frame(code(1000))
    connection.get_buffer(scratch)[4 : 4 + len(rest)] = rest
    assert connection.receive_close(scratch, len(rest)) is None


def test_random_reads() -> None:
    rng = random.Random(1000)
    pieces = list(CASES.values())
    for _ in range(500):
        reads = [rng.choice(pieces)[: rng.randint(1, 140)] for _ in range(rng.randint(1, 4))]
        assert history(reads, True) == history(reads, False), reads


def test_a_close_is_decoded_anew_unless_it_is_a_code_alone() -> None:
    # lone_close keeps the Close of a payload that is a code alone: each
    # payload here must still get its own reason, whatever came before it.
    payloads = [code(1000), code(1000, b"bye"), code(1000), b"", code(1000, b"\x00\x00"), b""]
    for payload in payloads * 2:
        connection = Connection(Side.SERVER)
        scratch = memoryview(bytearray(1 << 16))
        data = close_frame(payload)
        connection.get_buffer(scratch)[: len(data)] = data
        close = connection.receive_close(scratch, len(data))
        assert close is not None
        assert (close.code, close.reason) == (
            (1005, "") if not payload else (1000, payload[2:].decode())
        )
        assert connection.close_sent == Close(close.code)


def test_what_lone_close_keeps_is_bounded_by_the_valid_codes() -> None:
    from tether.protocol import reader

    rng = random.Random(7)
    for _ in range(3000):
        # Random codes (most invalid, refused) and random reasons (not kept).
        payload = code(rng.randrange(65536), bytes([rng.randrange(32, 127)]) * rng.randint(0, 3))
        connection = Connection(Side.SERVER)
        scratch = memoryview(bytearray(1 << 16))
        data = close_frame(payload)
        connection.get_buffer(scratch)[: len(data)] = data
        connection.receive_close(scratch, len(data))
    assert all(len(key) <= 2 for key in reader._CODE_ONLY)
    # §7.4: 1000-1003, 1007-1014, 3000-4999, and no status at all.
    assert len(reader._CODE_ONLY) <= 4 + 8 + 2000 + 1
