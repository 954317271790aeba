"""The parsers (:mod:`tether.realtime.protocol.parsers`): the JSON parser's
serializer options, and the msgpack parser fed raw MessagePack, every bound kept."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from realtime.parser_helpers import AT, Point, hook
from tether.exceptions import PacketError
from tether.realtime.protocol import parsers
from tether.realtime.protocol.parsers import JsonParser, MsgpackParser, make_parser
from tether.realtime.protocol.socketio import MAX_DEPTH, Packet, PacketType

msgpack = pytest.importorskip("msgpack")
orjson = pytest.importorskip("orjson")

LIMITS = {"max_payload": 10_000, "max_attachments": 4}


# -- JSON ------------------------------------------------------------------------------


def test_json_refuses_a_datetime_without_default() -> None:
    with pytest.raises(TypeError, match="datetime"):
        JsonParser().encode(Packet.event("at", AT))


@pytest.mark.parametrize("module", [None, orjson], ids=["json", "orjson"])
def test_json_default_hook(module: Any) -> None:
    parser = JsonParser(json=module, default=hook)
    [text] = parser.encode(Packet.event("at", AT, Point(1, 2)))
    assert text == '2["at","2026-12-03T07:00:00+00:00",{"x":1,"y":2}]'


def test_orjson_round_trip_with_attachments() -> None:
    parser = JsonParser(json=orjson)
    payloads = parser.encode(Packet.event("e", "é", {"b": b"\x01"}, id=5, namespace="/n"))
    assert payloads == ['51-/n,5["e","é",{"b":{"_placeholder":true,"num":0}}]', b"\x01"]
    decoder = parser.decoder(**LIMITS)
    assert decoder.feed(payloads[0]) is None
    assert decoder.feed(payloads[1]) == Packet(
        PacketType.BINARY_EVENT, "/n", ["e", "é", {"b": b"\x01"}], 5
    )


def test_orjson_decoder_keeps_the_limits() -> None:
    decoder = JsonParser(json=orjson).decoder(**LIMITS)
    with pytest.raises(PacketError, match="invalid JSON"):
        decoder.feed('2["e",NaN]')
    with pytest.raises(PacketError, match="nested deeper"):
        decoder.feed("2" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(PacketError, match="exceeds"):
        decoder.feed('2["' + "x" * LIMITS["max_payload"] + '"]')
    with pytest.raises(PacketError, match="exceed the limit"):
        decoder.feed('55-["e"]')


# -- msgpack ---------------------------------------------------------------------------

MSGPACK = MsgpackParser()


def packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def decode(message: str | bytes, **limits: int) -> Packet | None:
    return MSGPACK.decoder(**{**LIMITS, **limits}).feed(message)


def test_msgpack_wire_format() -> None:
    # socket.io-msgpack-parser: one map {type, nsp, data, id}; binary in place,
    # and only types 0 to 4 (a BINARY_EVENT goes out as an EVENT).
    [payload] = MSGPACK.encode(Packet.event("e", b"\x01", {"n": [b"\x02"]}, id=3))
    assert isinstance(payload, bytes)
    assert msgpack.unpackb(payload) == {
        "type": 2,
        "nsp": "/",
        "data": ["e", b"\x01", {"n": [b"\x02"]}],
        "id": 3,
    }
    [connect] = MSGPACK.encode(Packet(PacketType.CONNECT, "/admin"))
    assert msgpack.unpackb(connect) == {"type": 0, "nsp": "/admin"}


@pytest.mark.parametrize(
    "packet",
    [
        Packet(PacketType.CONNECT, "/", {"token": "t"}),
        Packet(PacketType.DISCONNECT, "/chat"),
        Packet.event("e", 1, 2.5, True, None, "é", {"a": [1, {"b": None}]}),
        Packet.event("bin", b"", bytearray(b"\x00\xff"), {"deep": [[b"x" * 300]]}, id=9),
        Packet.ack(7, b"\x01", [b"\x02", {"c": b"\x03"}], namespace="/n"),
        Packet.ack(8),
        Packet(PacketType.CONNECT_ERROR, "/", {"message": "no", "data": {"code": 1}}),
    ],
    ids=["connect", "disconnect", "event", "binary-event", "binary-ack", "ack", "error"],
)
def test_msgpack_round_trip(packet: Packet) -> None:
    [payload] = MSGPACK.encode(packet)
    decoded = decode(payload)
    assert decoded is not None
    assert decoded == packet  # bytearray == bytes
    assert decoded.type is packet.type  # binary types restored


def test_msgpack_default_hook() -> None:
    [payload] = MsgpackParser(default=hook).encode(Packet.event("at", AT, Point(1, 2)))
    assert decode(payload) == Packet.event("at", AT.isoformat(), {"x": 1, "y": 2})
    with pytest.raises(TypeError):
        MSGPACK.encode(Packet.event("at", AT))


def test_msgpack_from_notepack_extensions() -> None:
    # notepack.io (what the npm parser uses) sends undefined as fixext 1 type 0,
    # and a browser's ArrayBuffer as ext type 0.
    undefined = b"\xd4\x00\x00"
    array_buffer = b"\xc7\x03\x00abc"
    message = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x93\xa1e" + undefined + array_buffer
    assert decode(message) == Packet(PacketType.BINARY_EVENT, "/", ["e", None, b"abc"])


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("2[]", "binary messages"),
        (b"\xc1", "invalid MessagePack"),  # never used
        (b"\x92\x01", "invalid MessagePack"),  # truncated
        (packed({"type": 2, "nsp": "/", "data": ["e"]}) + b"\x00", "invalid MessagePack"),
        (packed([2, "/", ["e"]]), "must be a map"),
        (packed({"type": 5, "nsp": "/", "data": ["e"]}), "unknown packet type"),
        (packed({"type": True, "nsp": "/", "data": ["e"]}), "unknown packet type"),
        (packed({"type": 2, "nsp": 1, "data": ["e"]}), "namespace"),
        (packed({"type": 2, "nsp": "/", "data": "e"}), "non-empty list"),
        (packed({"type": 2, "nsp": "/", "data": ["e"], "id": -1}), "ack id"),
        (packed({"type": 2, "nsp": "/", "data": ["e", {1: 2}]}), "invalid MessagePack"),
        (packed({"type": 2, "nsp": "/", "data": ["e"]}).replace(b"\xa1e", b"\xa1\xff"), "invalid"),
        (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\xd6\x05abcd", "invalid MessagePack"),
        (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\xd6\xffabcd", "unexpected Timestamp"),
    ],
    ids=[
        "text",
        "bad-byte",
        "truncated",
        "trailing",
        "not-a-map",
        "binary-type",
        "bool-type",
        "namespace",
        "data",
        "ack-id",
        "int-key",
        "bad-utf8",
        "extension",
        "timestamp",
    ],
)
def test_msgpack_refuses(message: str | bytes, error: str) -> None:
    with pytest.raises(PacketError, match=error):
        decode(message)


def test_msgpack_limits() -> None:
    big = packed({"type": 2, "nsp": "/", "data": ["e", "x" * 200]})
    assert decode(big, max_payload=len(big)) is not None
    with pytest.raises(PacketError, match="exceeds"):
        decode(big, max_payload=len(big) - 1)

    five = packed({"type": 2, "nsp": "/", "data": ["e", [b"1", b"2"], {"a": [b"3", b"4", b"5"]}]})
    assert decode(five, max_attachments=5) is not None
    with pytest.raises(PacketError, match="more than 4 binaries"):
        decode(five, max_attachments=4)

    def nested(levels: int) -> bytes:
        data: Any = "leaf"
        for _ in range(levels - 1):
            data = [data]
        return packed({"type": 2, "nsp": "/", "data": ["e", data]})

    assert decode(nested(MAX_DEPTH)) is not None  # the data list is level 1
    with pytest.raises(PacketError, match="nested deeper"):
        decode(nested(MAX_DEPTH + 1))
    # Far deeper than msgpack's own stack: still a PacketError.
    with pytest.raises(PacketError):
        decode(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data" + b"\x91" * 5000 + b"\xc0")


def test_msgpack_decoder_counts_containers() -> None:
    decoder = MSGPACK.decoder(**LIMITS)
    decoder.feed(packed({"type": 2, "nsp": "/", "data": ["e", [], {"a": [[]]}]}))
    assert decoder.containers == 5  # type: ignore[attr-defined]


# -- choosing ----------------------------------------------------------------------------


def test_make_parser() -> None:
    assert isinstance(make_parser(), JsonParser)
    assert make_parser(json=orjson).json is orjson  # type: ignore[attr-defined]
    assert isinstance(make_parser("msgpack"), MsgpackParser)
    custom = JsonParser()
    assert make_parser(custom) is custom
    with pytest.raises(ValueError, match="'json', 'msgpack'"):
        make_parser("cbor")
    with pytest.raises(ValueError, match="json= does not apply"):
        make_parser("msgpack", json=orjson)
    with pytest.raises(ValueError, match="built-in parsers only"):
        make_parser(custom, default=str)


def test_missing_msgpack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # import fails
    with pytest.raises(ImportError, match=r"tether\[msgpack\]"):
        make_parser("msgpack")
    assert parsers.JsonParser  # the module itself never needs it
