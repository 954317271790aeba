"""Engine.IO v4 packets: WebSocket frames, long-polling payloads, handshake, probe.

The wire strings come from the Engine.IO v4 specification and its test suite
(socketio/engine.io-protocol, README and test-suite/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import PacketError, TetherError
from tether.limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits
from tether.realtime.protocol import engineio
from tether.realtime.protocol.engineio import (
    PING_PROBE,
    PONG_PROBE,
    Handshake,
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)

T = PacketType

# -- the spec's examples ----------------------------------------------------------------

# (frame, packet): §Heartbeat, §Upgrade, §Packet encoding / WebSocket, test-suite/.
WEBSOCKET_EXAMPLES = [
    ("4hello", Packet(T.MESSAGE, "hello")),
    ("2", Packet(T.PING)),
    ("3", Packet(T.PONG)),
    ("1", Packet(T.CLOSE)),
    ("5", Packet(T.UPGRADE)),
    ("6", Packet(T.NOOP)),
    ("2probe", PING_PROBE),
    ("3probe", PONG_PROBE),
    (b"\x01\x02\x03\x04", Packet(T.MESSAGE, b"\x01\x02\x03\x04")),
    ('42["hello"]', Packet(T.MESSAGE, '2["hello"]')),
]

# (body, packets): §Packet encoding / HTTP long-polling, test-suite/.
POLLING_EXAMPLES = [
    (
        "4hello\x1e2\x1e4world",
        [Packet(T.MESSAGE, "hello"), Packet(T.PING), Packet(T.MESSAGE, "world")],
    ),
    ("4hello\x1ebAQIDBA==", [Packet(T.MESSAGE, "hello"), Packet(T.MESSAGE, b"\x01\x02\x03\x04")]),
    ("4test1\x1e4test2\x1e4test3", [Packet(T.MESSAGE, f"test{i}") for i in (1, 2, 3)]),
    ("4hello", [Packet(T.MESSAGE, "hello")]),
    ("2", [Packet(T.PING)]),
    ("3", [Packet(T.PONG)]),
    ("1", [Packet(T.CLOSE)]),
    ("6", [Packet(T.NOOP)]),
    (
        '42["hello"]\x1e42["world"]',
        [Packet(T.MESSAGE, '2["hello"]'), Packet(T.MESSAGE, '2["world"]')],
    ),
]

# The open packet of the Socket.IO spec's sample session.
SAMPLE_OPEN = (
    '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
    '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}'
)
SAMPLE_HANDSHAKE = Handshake("lv_VI97HAXpY6yYWAAAC", ("websocket",), 25000, 5000, 1000000)


@pytest.mark.parametrize(("frame", "packet"), WEBSOCKET_EXAMPLES)
def test_websocket_examples_round_trip(frame: str | bytes, packet: Packet) -> None:
    assert encode_packet(packet) == frame
    assert decode_packet(frame) == packet


@pytest.mark.parametrize(("body", "packets"), POLLING_EXAMPLES)
def test_polling_examples_round_trip(body: str, packets: list[Packet]) -> None:
    assert encode_payload(packets) == body
    assert decode_payload(body) == packets
    assert decode_payload(body.encode()) == packets


def test_handshake_example_round_trips() -> None:
    packet = SAMPLE_HANDSHAKE.to_packet()
    assert encode_packet(packet) == SAMPLE_OPEN
    assert encode_payload([packet]) == SAMPLE_OPEN
    assert Handshake.from_packet(decode_packet(SAMPLE_OPEN)) == SAMPLE_HANDSHAKE


def test_handshake_websocket_only_has_no_upgrades() -> None:
    # test-suite/: a WebSocket-only session is offered no upgrade.
    handshake = Handshake("abc", (), 300, 200, 1000000)
    text = encode_packet(handshake.to_packet())
    assert isinstance(text, str)
    assert json.loads(text[1:]) == {
        "sid": "abc",
        "upgrades": [],
        "pingInterval": 300,
        "pingTimeout": 200,
        "maxPayload": 1000000,
    }
    assert Handshake.from_packet(decode_packet(text)) == handshake


def test_handshake_without_max_payload_and_with_unknown_keys() -> None:
    # maxPayload came late to v4; older servers leave it out.
    packet = Packet(T.OPEN, '{"sid":"x","upgrades":[],"pingInterval":1,"pingTimeout":2,"new":0}')
    handshake = Handshake.from_packet(packet)
    assert handshake == Handshake("x", (), 1, 2, None)
    assert (
        handshake.to_packet().data == '{"sid":"x","upgrades":[],"pingInterval":1,"pingTimeout":2}'
    )


def test_probe_constants() -> None:
    assert Packet(T.PING, engineio.PROBE) == PING_PROBE
    assert Packet(T.PONG, "probe") == PONG_PROBE
    assert engineio.PROTOCOL_VERSION == 4
    assert engineio.RECORD_SEPARATOR == "\x1e"


def test_base64_in_a_websocket_text_frame_is_binary() -> None:
    # The reference decoder takes "b<base64>" in any text frame (forceBase64 clients).
    assert decode_packet("bAQIDBA==") == Packet(T.MESSAGE, b"\x01\x02\x03\x04")
    assert decode_packet("b") == Packet(T.MESSAGE, b"")


def test_binary_frame_types() -> None:
    assert decode_packet(bytearray(b"\x00")) == Packet(T.MESSAGE, b"\x00")
    assert decode_packet(memoryview(b"\x00")) == Packet(T.MESSAGE, b"\x00")
    assert decode_packet(b"") == Packet(T.MESSAGE, b"")
    assert Packet(T.MESSAGE, b"x").is_binary
    assert not Packet(T.MESSAGE, "x").is_binary


def test_every_type_has_its_digit() -> None:
    assert [t.value for t in PacketType] == list(range(7))
    for t in PacketType:
        assert encode_packet(Packet(t)) == str(t.value)
        assert decode_packet(str(t.value)) == Packet(t)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("", "empty packet"),
        ("abc", "unknown packet type 'a'"),  # test-suite/: invalid packet format
        ("7", "unknown packet type '7'"),
        ("-1", "unknown packet type"),
        ("\x1e4", "unknown packet type"),
        ("b!!!!", "base64"),
        ("bAQIDBA", "base64"),  # missing padding
        ("bAQ IDBA==", "base64"),
        ("béé=", "base64"),
    ],
)
def test_websocket_refusals(frame: str, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode_packet(frame)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("", "empty packet"),
        ("abc", "unknown packet type"),  # test-suite/: closes the session
        ("4hello\x1e", "empty packet"),
        ("\x1e4hello", "empty packet"),
        ("4a\x1e\x1e4b", "empty packet"),
        ("4hello\x1ebAQ", "base64"),
        (b"4\xff", "UTF-8"),
        (b"4\xed\xa0\x80", "UTF-8"),  # an encoded surrogate
    ],
)
def test_polling_refusals(body: str | bytes, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode_payload(body)


def test_packet_error_is_a_tether_value_error() -> None:
    with pytest.raises(TetherError):
        decode_packet("x")
    with pytest.raises(ValueError):
        decode_packet("x")


@pytest.mark.parametrize("frame", [123, None, ["4"]])
def test_decoders_refuse_other_types(frame: object) -> None:
    with pytest.raises(PacketError, match="expected str or bytes"):
        decode_packet(frame)  # type: ignore[arg-type]
    with pytest.raises(PacketError, match="expected str or bytes"):
        decode_payload(frame)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ('{"sid":"x","upgrades":[],"pingInterval":1}', "pingTimeout"),
        ('{"upgrades":[],"pingInterval":1,"pingTimeout":1}', "sid"),
        ('{"sid":"","upgrades":[],"pingInterval":1,"pingTimeout":1}', "sid"),
        ('{"sid":1,"upgrades":[],"pingInterval":1,"pingTimeout":1}', "sid"),
        ('{"sid":"x","upgrades":"websocket","pingInterval":1,"pingTimeout":1}', "upgrades"),
        ('{"sid":"x","upgrades":[1],"pingInterval":1,"pingTimeout":1}', "upgrades"),
        ('{"sid":"x","pingInterval":1,"pingTimeout":1}', "upgrades"),
        ('{"sid":"x","upgrades":[],"pingInterval":-1,"pingTimeout":1}', "pingInterval"),
        ('{"sid":"x","upgrades":[],"pingInterval":1.5,"pingTimeout":1}', "pingInterval"),
        ('{"sid":"x","upgrades":[],"pingInterval":true,"pingTimeout":1}', "pingInterval"),
        (
            '{"sid":"x","upgrades":[],"pingInterval":1,"pingTimeout":1,"maxPayload":"1"}',
            "maxPayload",
        ),
        ('{"sid":"x","upgrades":[],"pingInterval":NaN,"pingTimeout":1}', "JSON"),
        ('{"sid":"x"', "JSON"),
        ("", "JSON"),
        ('["x"]', "object"),
        ("[" * 100_000, "JSON"),
    ],
)
def test_handshake_refusals(data: str, match: str) -> None:
    with pytest.raises(PacketError, match=match):
        Handshake.from_packet(Packet(T.OPEN, data))


@pytest.mark.parametrize("packet", [Packet(T.MESSAGE, "{}"), Packet(T.MESSAGE, b"{}")])
def test_handshake_needs_an_open_packet(packet: Packet) -> None:
    with pytest.raises(PacketError, match="open packet"):
        Handshake.from_packet(packet)


# -- limits ---------------------------------------------------------------------------------

LIMIT = 10


def test_websocket_size_limit() -> None:
    assert decode_packet("4" + "x" * 9, max_payload=LIMIT).data == "x" * 9
    with pytest.raises(PacketError, match="11 bytes exceeds the limit of 10 bytes"):
        decode_packet("4" + "x" * 10, max_payload=LIMIT)
    assert decode_packet(b"x" * 10, max_payload=LIMIT).data == b"x" * 10
    with pytest.raises(PacketError, match="exceeds"):
        decode_packet(b"x" * 11, max_payload=LIMIT)


def test_text_size_limit_counts_utf8_bytes() -> None:
    assert decode_packet("4" + "é" * 4, max_payload=9).data == "é" * 4  # 9 bytes
    with pytest.raises(PacketError, match="11 bytes"):
        decode_packet("4" + "é" * 5, max_payload=LIMIT)  # 6 characters, 11 bytes
    with pytest.raises(PacketError, match="exceeds"):
        decode_payload("4" + "€" * 4, max_payload=LIMIT)  # 5 characters, 13 bytes


def test_polling_size_limit_is_checked_before_decoding() -> None:
    assert len(decode_payload("4xxx\x1e4xxx", max_payload=9)) == 2
    with pytest.raises(PacketError, match="exceeds"):
        decode_payload("4xxxx\x1e4xxxx", max_payload=LIMIT)
    # Invalid UTF-8 past the limit is not even decoded.
    with pytest.raises(PacketError, match="exceeds"):
        decode_payload(b"4" + b"\xff" * 20, max_payload=LIMIT)


def test_default_limit_is_the_engineio_default() -> None:
    assert DEFAULT_REALTIME_LIMITS.max_payload == 1_000_000
    assert len(decode_payload("4" + "x" * 999_999)[0].data) == 999_999
    with pytest.raises(PacketError):
        decode_payload("4" + "x" * 1_000_000)


def test_realtime_limits_are_validated() -> None:
    assert RealtimeLimits() == DEFAULT_REALTIME_LIMITS
    assert {"max_payload", "max_attachments", "max_pending_bytes"} <= set(RealtimeLimits.describe())
    for value in (-1, True, 1.5, "1", None):
        with pytest.raises(ValueError, match="max_payload"):
            RealtimeLimits(max_payload=value)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_REALTIME_LIMITS.max_payload = 1  # type: ignore[misc]


# -- caller errors ------------------------------------------------------------------------


def test_packet_validation() -> None:
    with pytest.raises(ValueError, match="binary"):
        Packet(T.PING, b"x")
    with pytest.raises(ValueError, match="packet type"):
        Packet(4, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="str or bytes"):
        Packet(T.MESSAGE, 1)  # type: ignore[arg-type]


def test_encode_payload_refusals() -> None:
    with pytest.raises(ValueError, match="record separator"):
        encode_payload([Packet(T.MESSAGE, "a\x1eb")])
    with pytest.raises(ValueError, match="at least one"):
        encode_payload([])


def test_handshake_validation() -> None:
    with pytest.raises(ValueError, match="sid"):
        Handshake("", (), 1, 1, None)
    with pytest.raises(ValueError, match="pingTimeout"):
        Handshake("x", (), 1, -1, None)


def test_doctests() -> None:
    assert doctest.testmod(engineio).failed == 0


# -- properties -----------------------------------------------------------------------------

text_packets = st.builds(
    Packet, st.sampled_from(PacketType), st.text().filter(lambda s: "\x1e" not in s)
)
binary_packets = st.builds(Packet, st.just(T.MESSAGE), st.binary())
packets = text_packets | binary_packets


@given(packets)
def test_websocket_round_trip(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(packets, min_size=1))
def test_polling_round_trip(batch: list[Packet]) -> None:
    body = encode_payload(batch)
    assert decode_payload(body) == batch
    assert decode_payload(body.encode("utf-8")) == batch


@given(
    st.text(min_size=1),
    st.lists(st.text(), max_size=3),
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.none() | st.integers(0, 2**31),
)
def test_handshake_round_trip(
    sid: str, upgrades: list[str], interval: int, timeout: int, max_payload: int | None
) -> None:
    handshake = Handshake(sid, tuple(upgrades), interval, timeout, max_payload)
    assert Handshake.from_packet(decode_packet(encode_packet(handshake.to_packet()))) == handshake


garbage_text = st.text() | st.text(alphabet="0123456789b\x1e/,AQ=-[]{}\"'é ")


@given(garbage_text | st.binary())
def test_garbage_decodes_or_raises_packet_error(frame: str | bytes) -> None:
    for decode in (decode_packet, decode_payload):
        with contextlib.suppress(PacketError):
            decode(frame, max_payload=64)


@given(garbage_text)
def test_garbage_handshake_decodes_or_raises_packet_error(data: str) -> None:
    with contextlib.suppress(PacketError):
        Handshake.from_packet(Packet(T.OPEN, data))
