"""The Redis adapter's messages, sans I/O: encoding, decoding, channels."""

from __future__ import annotations

import pytest

from tether.exceptions import PacketError
from tether.realtime.adapters.base import BroadcastOptions
from tether.realtime.adapters.redis import messages
from tether.realtime.adapters.redis.messages import (
    AckRequest,
    Broadcast,
    Channels,
    Reply,
    ServerEvent,
    decode,
    encode,
    opts_from_wire,
    opts_to_wire,
    split_payload,
)


@pytest.mark.parametrize(
    "message",
    [
        Broadcast("n:1", "/", ["news", {"a": [1, "é"]}], {"r": ["room"]}),
        Broadcast("n:2", "/chat", ["bin", b"\x00\x01", {"deep": [b"\xff"]}], {}, origin="n"),
        AckRequest("n:3", "n", "/", {"x": ["sid"]}, ["question", 1], 2.5),
        Reply("n:3", True, expect=2, items=[{"sid": "s"}]),
        Reply("n:3", False, items=[b"\x02"]),
        ServerEvent("n", "reload", [1, None, True]),
    ],
)
def test_round_trip(message: messages.Message) -> None:
    assert decode(encode(message)) == message


def test_binary_rides_after_a_nul() -> None:
    body = encode(Broadcast("n:1", "/", ["bin", b"\x00\n\x00"], {}))
    text, nul, _ = body.partition(b"\0")
    assert nul and b"_placeholder" in text


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'["?", {}]', b'["b", {"id": 1}]', b'["b", {}]\x00\x00\x00\x00\x09ab'],
)
def test_malformed_bodies_raise_packet_error(body: bytes) -> None:
    with pytest.raises(PacketError):
        decode(body)


def test_payload_offset_line() -> None:
    assert split_payload(b"1700000000000-3\n[]") == ("1700000000000-3", b"[]")
    assert split_payload(b"\n[]") == (None, b"[]")


def test_options_round_trip() -> None:
    opts = BroadcastOptions(frozenset({"a", "b"}), frozenset({"c"}), volatile=True)
    assert opts_from_wire(opts_to_wire(opts)) == opts
    assert opts_to_wire(BroadcastOptions()) == {}


def test_channels() -> None:
    channels = Channels("p")
    assert channels.for_rooms("/", []) == ["p#/#"]
    assert channels.for_rooms("/chat", ["b", "a"]) == ["p#/chat#a#", "p#/chat#b#"]
    assert channels.node("n1") == "p#node#n1"
    assert channels.server == "p#server"
