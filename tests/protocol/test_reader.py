"""The receive side on its own: :class:`tether.protocol.reader.Reader` fed raw bytes.

Its narrow interface to the connection: events appended in wire order,
:attr:`Reader.controls` set for what needs an answer, protocol errors raised
with nothing left buffered. The frame loop runs over both implementations of
its step, :func:`speedups.parse_frames` in C and in pure Python (the
differential tests over random traffic are in ``test_speedups.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tether.exceptions import PayloadTooBig, ProtocolError
from tether.limits import Limits
from tether.protocol import speedups
from tether.protocol.events import Close, Event, Ping, Pong
from tether.protocol.frames import Opcode, encode_frame, pack_close
from tether.protocol.reader import Reader

try:
    from tether.protocol import _speedups as c_module

    C_STEP: Any = c_module.parse_frames
except ImportError:
    C_STEP = None

MASK = b"\x01\x02\x03\x04"


@pytest.fixture(
    params=[
        pytest.param(speedups.parse_frames_py, id="python"),
        pytest.param(
            C_STEP,
            id="c",
            marks=pytest.mark.skipif(C_STEP is None, reason="the C extension is not built"),
        ),
    ]
)
def step(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the test with the frame loop's step in C, then in pure Python."""
    saved = speedups.parse_frames
    speedups.parse_frames = request.param
    try:
        yield
    finally:
        speedups.parse_frames = saved


def wire(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A frame as a client sends it (masked, §5.3)."""
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


def reader(**limits: int) -> Reader:
    return Reader(masked=True, limits=Limits(**limits), deflate=None)


def receive(rx: Reader, data: bytes, max_messages: int | None = None) -> list[Event]:
    events: list[Event] = []
    rx.receive(data, events, max_messages, None)
    return events


@pytest.mark.usefixtures("step")
def test_messages_and_control_frames_in_wire_order() -> None:
    rx = reader()
    data = wire(Opcode.TEXT, b"a") + wire(Opcode.PONG, b"p") + wire(Opcode.BINARY, b"b")
    assert receive(rx, data) == ["a", Pong(b"p"), b"b"]
    assert not rx.controls  # a pong needs no answer (§5.5.3)
    assert receive(rx, wire(Opcode.PING, b"x")) == [Ping(b"x")]
    assert rx.controls  # the connection answers it, and clears the flag


@pytest.mark.usefixtures("step")
def test_nothing_after_a_close_frame_is_parsed() -> None:
    # §5.5.1: the close frame is the last one the peer may send.
    rx = reader()
    data = wire(Opcode.CLOSE, pack_close(1000, "bye")) + wire(Opcode.TEXT, b"late")
    assert receive(rx, data) == [Close(1000, "bye")]
    assert rx.controls
    assert rx.pending_bytes == 0


@pytest.mark.usefixtures("step")
def test_fragments_are_reassembled() -> None:
    # §5.4: a message in fragments, with a ping between them.
    rx = reader()
    data = wire(Opcode.TEXT, b"he", fin=False) + wire(Opcode.PING, b"")
    data += wire(Opcode.CONT, b"ll", fin=False) + wire(Opcode.CONT, b"o")
    assert receive(rx, data) == [Ping(b""), "hello"]


@pytest.mark.usefixtures("step")
def test_max_messages_holds_the_rest_back_unparsed() -> None:
    rx = reader()
    data = b"".join(wire(Opcode.BINARY, bytes([i])) for i in range(3))
    assert receive(rx, data, max_messages=1) == [b"\x00"]
    assert rx.pending_bytes == 2 * len(wire(Opcode.BINARY, b"x"))
    assert receive(rx, b"", max_messages=5) == [b"\x01", b"\x02"]
    assert rx.pending_bytes == 0


@pytest.mark.usefixtures("step")
@pytest.mark.parametrize(
    ("data", "error"),
    [
        (encode_frame(Opcode.TEXT, b"unmasked"), ProtocolError),  # §5.1
        (wire(0x3, b""), ProtocolError),  # reserved opcode, §5.2
        (wire(Opcode.PING, b"", fin=False), ProtocolError),  # §5.5
        (wire(Opcode.BINARY, b"x" * 101), PayloadTooBig),
    ],
)
def test_an_error_is_raised_with_nothing_left_buffered(data: bytes, error: type) -> None:
    rx = reader(max_frame_size=100)
    events: list[Event] = []
    with pytest.raises(error):
        rx.receive(wire(Opcode.TEXT, b"ok") + data + b"\x81", events, None, None)
    assert events == ["ok"]  # what came before the error is still reported
    assert rx.pending_bytes == 0 and not rx.assembling


@pytest.mark.usefixtures("step")
def test_a_large_frame_is_assembled_across_reads() -> None:
    rx = reader()
    data = wire(Opcode.BINARY, b"z" * (speedups.ASSEMBLE_AT + 10))
    assert receive(rx, data[:100]) == []
    assert rx.assembling and rx.pending_bytes == 0
    assert receive(rx, data[100:]) == [b"z" * (speedups.ASSEMBLE_AT + 10)]
    assert not rx.assembling
