"""The cluster wire: frames built and read back, bounds checked before
buffering, malformed bodies refused. No I/O."""

from __future__ import annotations

import struct

import pytest

from tether.exceptions import PacketError
from tether.realtime.adapters.cluster.wire import (
    HEAD,
    FrameTooLarge,
    decode,
    encode,
    frame_length,
    from_wire,
    to_wire,
)
from tether.realtime.adapters.interface import BroadcastOptions, SavedSession, SocketInfo


def test_a_message_with_binary_attachments_round_trips() -> None:
    message = {"t": "bc", "nsp": "/", "data": ["e", b"\x00\xff", {"k": [b"", "text"]}]}
    frame = encode(message)
    assert frame_length(frame[:HEAD]) == len(frame) - HEAD
    assert decode(frame[HEAD:]) == message


def test_the_bound_is_checked_both_ways() -> None:
    message = {"t": "bc", "data": ["x" * 100]}
    size = len(encode(message)) - HEAD
    assert decode(encode(message, size)[HEAD:]) == message  # exactly the bound: fine
    with pytest.raises(FrameTooLarge):
        encode(message, size - 1)
    # The reader refuses from the 4-byte prefix alone, before reading a body.
    assert frame_length(struct.pack(">I", 1000), 1000) == 1000
    with pytest.raises(FrameTooLarge):
        frame_length(struct.pack(">I", 1001), 1000)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00",  # a truncated length
        struct.pack(">I", 10) + b"{}",  # a truncated chunk
        struct.pack(">I", 2) + b"[]",  # not an object
        struct.pack(">I", 2) + b"{}",  # no kind
        struct.pack(">I", 3) + b"{x}",  # not JSON
        struct.pack(">I", 39) + b'{"t":"b","d":{"_placeholder":true,"num":0}}'[:39],
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(PacketError):
        decode(body)


def test_the_interface_dataclasses_travel_as_json() -> None:
    opts = BroadcastOptions(frozenset({"b", "a"}), frozenset({"x"}), True, sids=frozenset({"s"}))
    wire = to_wire(opts, skip=("local",))
    assert wire == {"rooms": ["a", "b"], "except_rooms": ["x"], "volatile": True, "sids": ["s"]}
    assert from_wire(BroadcastOptions, wire) == opts
    assert to_wire(BroadcastOptions(local=True), skip=("local",)) == {}
    info = SocketInfo("s", "/", frozenset({"s", "r"}), {"u": 1}, {"headers": {}})
    assert from_wire(SocketInfo, to_wire(info)) == info
    session = SavedSession("s", "p", "/", ["r"], {"u": 1}, "e-1")
    back = from_wire(SavedSession, to_wire(session, skip=("saved_at",)))
    assert (back.sid, back.pid, back.namespace, back.rooms, back.data, back.offset) == (
        "s",
        "p",
        "/",
        ["r"],
        {"u": 1},
        "e-1",
    )
