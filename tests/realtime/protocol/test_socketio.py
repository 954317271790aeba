"""Socket.IO v5 packets: text form, binary attachments, the decoder, refusals.

The wire strings come from the Socket.IO v5 specification and its test suite
(socketio/socket.io-protocol, README and test-suite/).
"""

from __future__ import annotations

import contextlib
import doctest
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import PacketError
from tether.limits import DEFAULT_REALTIME_LIMITS
from tether.realtime.protocol import engineio, socketio
from tether.realtime.protocol.socketio import (
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    decode,
    deconstruct,
    encode,
    has_binary,
    reconstruct,
)

T = PacketType
B4 = b"\x01\x02\x03\x04"


def ph(num: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


# -- the spec's examples ----------------------------------------------------------------

# (text, attachments, packet): §Packet encoding / Examples, the sample session and
# test-suite/ (there prefixed with the Engine.IO message type "4").
EXAMPLES = [
    # Connection to a namespace
    ("0", [], Packet(T.CONNECT)),
    ("0/admin,", [], Packet(T.CONNECT, "/admin")),
    (
        '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}',
        [],
        Packet(T.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
    ),
    (
        '0{"sid":"wZX3oN0bSVIhsaknAAAI"}',
        [],
        Packet(T.CONNECT, data={"sid": "wZX3oN0bSVIhsaknAAAI"}),
    ),
    (
        '0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}',
        [],
        Packet(T.CONNECT, "/admin", {"sid": "-G5j-67EZFp-q59rADQM"}),
    ),
    ('0{"token":"123"}', [], Packet(T.CONNECT, data={"token": "123"})),
    ("0/custom,", [], Packet(T.CONNECT, "/custom")),
    ('0/custom,{"token":"abc"}', [], Packet(T.CONNECT, "/custom", {"token": "abc"})),
    (
        '4{"message":"Not authorized"}',
        [],
        Packet(T.CONNECT_ERROR, data={"message": "Not authorized"}),
    ),
    (
        '4/random,{"message":"Invalid namespace"}',
        [],
        Packet(T.CONNECT_ERROR, "/random", {"message": "Invalid namespace"}),
    ),
    # Sending and receiving data
    ('2["foo"]', [], Packet(T.EVENT, data=["foo"])),
    ('2/admin,["bar"]', [], Packet(T.EVENT, "/admin", ["bar"])),
    ('2["hello",1]', [], Packet(T.EVENT, data=["hello", 1])),
    ('2["hey","Jude"]', [], Packet(T.EVENT, data=["hey", "Jude"])),
    ('2["auth",{}]', [], Packet(T.EVENT, data=["auth", {}])),
    (
        '2/custom,["auth",{"token":"abc"}]',
        [],
        Packet(T.EVENT, "/custom", ["auth", {"token": "abc"}]),
    ),
    (
        '2["message",1,"2",{"3":[true]}]',
        [],
        Packet(T.EVENT, data=["message", 1, "2", {"3": [True]}]),
    ),
    ('51-["baz",{"_placeholder":true,"num":0}]', [B4], Packet(T.BINARY_EVENT, data=["baz", B4])),
    (
        '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        [b"\x01\x02", b"\x03\x04"],
        Packet(T.BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
    ),
    (
        '52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        [b"\x01\x02\x03", b"\x04\x05\x06"],
        Packet(T.BINARY_EVENT, data=["message", b"\x01\x02\x03", b"\x04\x05\x06"]),
    ),
    # Acknowledgement
    ('212["foo"]', [], Packet(T.EVENT, data=["foo"], id=12)),
    ("312[]", [], Packet(T.ACK, data=[], id=12)),
    ('3/admin,13["bar"]', [], Packet(T.ACK, "/admin", ["bar"], 13)),
    ('2/admin,13["foo"]', [], Packet(T.EVENT, "/admin", ["foo"], 13)),
    ('314["bar"]', [], Packet(T.ACK, data=["bar"], id=14)),
    ('2/admin,1["tellme"]', [], Packet(T.EVENT, "/admin", ["tellme"], 1)),
    (
        '2456["message-with-ack",1,"2",{"3":[false]}]',
        [],
        Packet(T.EVENT, data=["message-with-ack", 1, "2", {"3": [False]}], id=456),
    ),
    ('3456[1,"2",{"3":[false]}]', [], Packet(T.ACK, data=[1, "2", {"3": [False]}], id=456)),
    (
        '61-15["bar",{"_placeholder":true,"num":0}]',
        [B4],
        Packet(T.BINARY_ACK, data=["bar", B4], id=15),
    ),
    (
        '61-/admin,1[{"_placeholder":true,"num":0}]',
        [b"\xff"],
        Packet(T.BINARY_ACK, "/admin", [b"\xff"], 1),
    ),
    (
        '52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        [b"\x01\x02\x03", b"\x04\x05\x06"],
        Packet(T.BINARY_EVENT, data=["message-with-ack", b"\x01\x02\x03", b"\x04\x05\x06"], id=789),
    ),
    (
        '62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        [b"\x01\x02\x03", b"\x04\x05\x06"],
        Packet(T.BINARY_ACK, data=[b"\x01\x02\x03", b"\x04\x05\x06"], id=789),
    ),
    # Disconnection from a namespace
    ("1", [], Packet(T.DISCONNECT)),
    ("1/admin,", [], Packet(T.DISCONNECT, "/admin")),
]


@pytest.mark.parametrize(("text", "attachments", "packet"), EXAMPLES)
def test_examples_round_trip(text: str, attachments: list[bytes], packet: Packet) -> None:
    assert encode(packet) == (text, attachments)
    assert decode(text, attachments) == packet


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        # test-suite/: the reference client leaves out the comma after a lone namespace.
        ("0/custom", Packet(T.CONNECT, "/custom")),
        ("0/random", Packet(T.CONNECT, "/random")),
        ("1/custom", Packet(T.DISCONNECT, "/custom")),
        # The main namespace spelt out.
        ('2/,["foo"]', Packet(T.EVENT, data=["foo"])),
        # Leading zeros in an ack id.
        ('2007["foo"]', Packet(T.EVENT, data=["foo"], id=7)),
        # A CONNECT_ERROR message as a bare string (Socket.IO v4 style).
        ('4"Not authorized"', Packet(T.CONNECT_ERROR, data="Not authorized")),
        # Placeholders mean nothing outside a binary packet.
        ('2["x",{"_placeholder":true,"num":0}]', Packet(T.EVENT, data=["x", ph(0)])),
        # A binary packet with no attachment is whole at once.
        ('50-["foo"]', Packet(T.BINARY_EVENT, data=["foo"])),
        # Unicode is not escaped by the reference encoder.
        ('2["é","\\u00e9"]', Packet(T.EVENT, data=["é", "é"])),
    ],
)
def test_decode_only_forms(text: str, packet: Packet) -> None:
    assert decode(text) == packet


def test_engineio_framing_of_the_sample_session() -> None:
    """Socket.IO packets travel as Engine.IO messages: "4" + text, then binary frames."""
    frames: list[str | bytes] = [
        '42["hey","Jude"]',
        "461-/admin,1[" + '{"_placeholder":true,"num":0}]',
    ]
    frames.append(b"\xff")
    decoder = Decoder()
    got = []
    for frame in frames:
        packet = engineio.decode_packet(frame)
        assert packet.type is engineio.PacketType.MESSAGE
        result = decoder.feed(packet.data)
        if result is not None:
            got.append(result)
    assert got == [
        Packet(T.EVENT, data=["hey", "Jude"]),
        Packet(T.BINARY_ACK, "/admin", [b"\xff"], 1),
    ]
    body = engineio.encode_payload(
        engineio.Packet(engineio.PacketType.MESSAGE, encode(Packet.event(name))[0])
        for name in ("hello", "world")
    )
    assert body == '42["hello"]\x1e42["world"]'


# -- binary data ------------------------------------------------------------------------------

NESTED = [
    "event",
    b"top",
    {"a": b"depth1", "b": [b"depth2", {"c": [[b"depth4"]]}]},
    [[[[[b"deep"]]]], {"k": {"k": {"k": b""}}}],
    bytearray(b"ba"),
    memoryview(b"mv"),
]
NESTED_PLACEHOLDERS = [
    "event",
    ph(0),
    {"a": ph(1), "b": [ph(2), {"c": [[ph(3)]]}]},
    [[[[[ph(4)]]]], {"k": {"k": {"k": ph(5)}}}],
    ph(6),
    ph(7),
]
NESTED_ATTACHMENTS = [b"top", b"depth1", b"depth2", b"depth4", b"deep", b"", b"ba", b"mv"]


def test_deconstruct_nested() -> None:
    data, attachments = deconstruct(NESTED)
    assert data == NESTED_PLACEHOLDERS
    assert attachments == NESTED_ATTACHMENTS
    assert all(type(a) is bytes for a in attachments)
    assert NESTED[1] == b"top"  # the input is left alone


def test_reconstruct_nested() -> None:
    rebuilt = reconstruct(NESTED_PLACEHOLDERS, NESTED_ATTACHMENTS)
    assert rebuilt == NESTED
    assert NESTED_PLACEHOLDERS[1] == ph(0)  # the input is left alone


def test_nested_binary_packet_both_ways() -> None:
    packet = Packet.event(*NESTED, namespace="/nsp", id=3)  # type: ignore[arg-type]
    assert packet.type is T.BINARY_EVENT
    text, attachments = encode(packet)
    assert text.startswith("58-/nsp,3[")
    assert attachments == NESTED_ATTACHMENTS
    decoded = decode(text, attachments)
    assert decoded == packet
    assert decoded.data[2]["b"][1]["c"][0][0] == b"depth4"


def test_deconstruct_tuples_become_lists() -> None:
    assert deconstruct(("a", (b"x",))) == (["a", [ph(0)]], [b"x"])


def test_has_binary() -> None:
    assert has_binary(NESTED)
    assert has_binary({"a": [1, {"b": bytearray()}]})
    assert not has_binary(["a", {"b": [1, 2.5, None, True, "x"]}])
    assert not has_binary({b"key": 1})  # keys are not data


def test_factories_pick_the_binary_types() -> None:
    assert Packet.event("a", 1) == Packet(T.EVENT, data=["a", 1])
    assert Packet.event("a", [b"x"], id=2) == Packet(T.BINARY_EVENT, data=["a", [b"x"]], id=2)
    assert Packet.ack(5) == Packet(T.ACK, data=[], id=5)
    assert Packet.ack(5, {"x": b"y"}, namespace="/n").type is T.BINARY_ACK


def test_decoder_takes_attachments_one_at_a_time() -> None:
    decoder = Decoder()
    assert (
        decoder.feed('52-["a",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]') is None
    )
    assert decoder.expected == 2
    assert decoder.feed(b"first") is None
    assert decoder.expected == 1
    packet = decoder.feed(bytearray(b"second"))
    assert packet == Packet(T.BINARY_EVENT, data=["a", b"second", b"first"])
    assert decoder.expected == 0
    assert decoder.feed('2["next"]') == Packet(T.EVENT, data=["next"])


def test_placeholder_may_repeat_an_index() -> None:
    text = '51-["a",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":0}]]'
    assert decode(text, [b"x"]).data == ["a", b"x", [b"x"]]


# -- refusals ---------------------------------------------------------------------------------

PH0 = '{"_placeholder":true,"num":0}'


@pytest.mark.parametrize(
    ("text", "attachments", "match"),
    [
        ("", [], "empty packet"),
        # bad type
        ("abc", [], "unknown packet type 'a'"),  # test-suite/: "4abc"
        ("7", [], "unknown packet type '7'"),
        ("9[]", [], "unknown packet type"),
        ("٣[]", [], "unknown packet type"),
        # bad payloads (test-suite/: "42{}")
        ("2{}", [], "EVENT data must be a non-empty list, got dict"),
        ("2", [], "EVENT data must be a non-empty list, got nothing"),
        ("2[]", [], "non-empty list"),
        ('2"foo"', [], "non-empty list"),
        ("2[1]", [], "event name must be a string, got int"),
        ("2[null]", [], "event name must be a string"),
        ('2[["foo"]]', [], "event name must be a string, got list"),
        ('2["disconnect"]', [], "'disconnect' is a reserved event name"),
        ('2["newListener",1]', [], "reserved"),
        ('51-["connect",' + PH0 + "]", [b"x"], "reserved"),
        ("51-[" + PH0 + "]", [b"x"], "event name must be a string, got dict"),
        ("3", [], "ACK packets need an ack id"),
        ("3[]", [], "ACK packets need an ack id"),
        ("31", [], "ACK data must be a list, got nothing"),
        ("31{}", [], "ACK data must be a list"),
        ("0[]", [], "CONNECT data must be an object, got list"),
        ('0"x"', [], "CONNECT data must be an object"),
        ("1{}", [], "DISCONNECT carries no data"),
        ("1/admin,[]", [], "DISCONNECT carries no data"),
        ("4", [], "CONNECT_ERROR data must be an object or a string, got nothing"),
        ("4[]", [], "CONNECT_ERROR"),
        # bad namespace: it runs to the end and leaves the EVENT without data
        ('2/admin["foo"]', [], "EVENT data must be a non-empty list, got nothing"),
        # bad ack id (test-suite/: '42abc[...]')
        ('2abc["message-with-ack",1,"2",{"3":[false]}]', [], "invalid JSON"),
        ('2/admin,x1["a"]', [], "invalid JSON"),
        ('2-1["a"]', [], "invalid JSON"),
        ('21.5["a"]', [], "invalid JSON"),
        ("2" + "9" * 17 + '["a"]', [], "too large"),
        ("2" + "9" * 5000 + '["a"]', [], "too large"),
        ('29007199254740992["a"]', [], "ack id must be an integer from 0 to 9007199254740991"),
        ("01{}", [], "CONNECT packets carry no ack id"),
        ('41{"message":"x"}', [], "CONNECT_ERROR packets carry no ack id"),
        ("11", [], "DISCONNECT packets carry no ack id"),
        # invalid JSON
        ('2["foo"', [], "invalid JSON"),
        ("2[NaN]", [], "invalid JSON"),
        ('2["a",Infinity]', [], "invalid JSON"),
        ('2["a",-Infinity]', [], "invalid JSON"),
        ("2['a']", [], "invalid JSON"),
        ('2["a"] x', [], "invalid JSON"),
        ('2["a"]\x1e', [], "invalid JSON"),
        ("2" + "[" * 100_000, [], "invalid JSON|nested too deeply"),
        ("2" + "[" * 100_000 + "]" * 100_000, [], "nested too deeply"),
        # attachment counts
        ('5["a"]', [], "lacks its '<attachments>-' count"),
        ('5-["a"]', [], "lacks its '<attachments>-' count"),
        ('5x-["a"]', [], "lacks"),
        ('5٣-["a"]', [], "lacks"),
        ('511-["a"]', [], "11 attachments exceed the limit of 10"),
        ('599999999999999-["a"]', [], "exceeds the limit of 10"),
        ('51-["a"]', [b"x"], "declares 1 attachment\\(s\\) but refers to 0"),
        ('52-["a",' + PH0 + "]", [b"x", b"y"], "declares 2 attachment\\(s\\) but refers to 1"),
        ('51-["a"]', [], "declares 1 attachment\\(s\\) but refers to 0"),
        # placeholder indexes out of range
        ('51-["a",{"_placeholder":true,"num":1}]', [b"x"], "refers to attachment 1"),
        ('51-["a",{"_placeholder":true,"num":-1}]', [b"x"], "refers to attachment -1"),
        ('51-["a",{"_placeholder":true,"num":true}]', [b"x"], "refers to attachment True"),
        ('51-["a",{"_placeholder":true,"num":"0"}]', [b"x"], "refers to attachment '0'"),
        ('51-["a",{"_placeholder":true,"num":0.0}]', [b"x"], "refers to attachment 0.0"),
        ('51-["a",{"_placeholder":true}]', [b"x"], "refers to attachment None"),
        ('50-["a",' + PH0 + "]", [], "declares 0 attachment"),
        ('51-["a",{"x":[{"_placeholder":true,"num":9}]}]', [b"x"], "refers to attachment 9"),
        # wrong number of attachments supplied
        ('52-["a",' + PH0 + ',{"_placeholder":true,"num":1}]', [b"x"], "awaits 1 more"),
        ('51-["a",' + PH0 + "]", [b"x", b"y"], "more attachments than the packet declares"),
        ('2["a"]', [b"x"], "more attachments than the packet declares"),
    ],
)
def test_refusals(text: str, attachments: list[bytes], match: str) -> None:
    with pytest.raises(PacketError, match=match):
        decode(text, attachments)


def test_text_while_attachments_are_due() -> None:
    decoder = Decoder()
    assert decoder.feed('51-["a",' + PH0 + "]") is None
    with pytest.raises(PacketError, match="expected 1 more attachment\\(s\\), got a text packet"):
        decoder.feed('2["b"]')
    # The decoder was reset: it starts over cleanly.
    assert decoder.expected == 0
    assert decoder.feed('2["b"]') == Packet(T.EVENT, data=["b"])


def test_attachment_beyond_the_declared_count() -> None:
    decoder = Decoder()
    assert decoder.feed('51-["a",' + PH0 + "]") is None
    assert decoder.feed(b"x") is not None
    with pytest.raises(PacketError, match="no binary packet awaits one"):
        decoder.feed(b"y")


def test_attachment_without_a_packet() -> None:
    with pytest.raises(PacketError, match="no binary packet awaits one"):
        Decoder().feed(b"x")


@pytest.mark.parametrize("message", [None, 1, ["2"]])
def test_decoder_refuses_other_types(message: object) -> None:
    with pytest.raises(PacketError, match="expected str or bytes"):
        Decoder().feed(message)  # type: ignore[arg-type]


# -- limits ---------------------------------------------------------------------------------


def test_attachment_count_limit() -> None:
    assert DEFAULT_REALTIME_LIMITS.max_attachments == 10
    placeholders = ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(11))
    text = f'511-["a",{placeholders}]'
    with pytest.raises(PacketError, match="exceed the limit of 10"):
        decode(text, [b""] * 11)
    assert len(decode(text, [b""] * 11, max_attachments=11).data) == 12
    with pytest.raises(PacketError, match="exceed the limit of 0"):
        decode('51-["a",' + PH0 + "]", [b"x"], max_attachments=0)
    assert decode('50-["a"]', max_attachments=0) == Packet(T.BINARY_EVENT, data=["a"])


def test_size_limit_on_text() -> None:
    text = '2["' + "x" * 5 + '"]'  # 10 bytes
    assert decode(text, max_payload=10).data == ["a" * 0 + "x" * 5]
    with pytest.raises(PacketError, match="11 bytes exceeds the limit of 10 bytes"):
        decode('2["' + "x" * 6 + '"]', max_payload=10)
    with pytest.raises(PacketError, match="exceeds"):
        decode('2["' + "é" * 3 + '"]', max_payload=10)  # 8 characters, 11 bytes


def test_size_limit_counts_the_attachments() -> None:
    text = '51-["a",' + PH0 + "]"  # 38 bytes
    assert decode(text, [b"x" * 12], max_payload=50).data == ["a", b"x" * 12]
    decoder = Decoder(max_payload=50)
    decoder.feed(text)
    with pytest.raises(PacketError, match="51 bytes exceeds the limit of 50 bytes"):
        decoder.feed(b"x" * 13)
    assert decoder.expected == 0  # reset
    # Text counts in UTF-8 bytes: "é" is 2.
    decoder.feed('51-["é",' + PH0 + "]")  # 39 bytes
    with pytest.raises(PacketError, match="51 bytes exceeds"):
        decoder.feed(b"x" * 12)


# -- caller errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"type": 2, "data": ["a"]}, "packet type"),
        ({"type": T.EVENT, "namespace": "admin", "data": ["a"]}, "invalid namespace 'admin'"),
        ({"type": T.EVENT, "namespace": "/a,b", "data": ["a"]}, "invalid namespace"),
        ({"type": T.EVENT, "namespace": "", "data": ["a"]}, "invalid namespace"),
        ({"type": T.EVENT, "data": ["a"], "id": -1}, "ack id"),
        ({"type": T.EVENT, "data": ["a"], "id": True}, "ack id"),
        ({"type": T.EVENT, "data": ["a"], "id": 2**53}, "ack id"),
        ({"type": T.EVENT, "data": ["connect_error"]}, "reserved"),
        ({"type": T.EVENT, "data": ("a",)}, "list"),
        ({"type": T.ACK, "data": []}, "need an ack id"),
        ({"type": T.CONNECT, "data": ["a"]}, "object"),
        ({"type": T.CONNECT, "id": 1}, "carry no ack id"),
    ],
)
def test_packet_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        Packet(**kwargs)
    assert not isinstance(info.value, PacketError)  # a local error, not the peer's


def test_encode_refuses_bytes_in_a_text_packet() -> None:
    with pytest.raises(ValueError, match="use BINARY_EVENT"):
        encode(Packet(T.EVENT, data=["a", b"x"]))
    with pytest.raises(ValueError, match="BINARY_ACK"):
        encode(Packet(T.ACK, data=[{"x": b"x"}], id=1))


def test_encode_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode(Packet.event("a", float("nan")))
    with pytest.raises(TypeError, match="set"):
        encode(Packet.event("a", {1, 2}))


def nested(depth: int, inner: str = "") -> str:
    """JSON data ``depth`` levels deep: the event list, then lists and objects alternating."""
    opening = ['["e",'] + ['{"k":' if level % 2 else "[" for level in range(1, depth)]
    closing = ["}" if level % 2 else "]" for level in reversed(range(1, depth))] + ["]"]
    return "".join(opening) + (inner or "1") + "".join(closing)


@pytest.mark.parametrize("depth", [socketio.MAX_DEPTH + 1, 400, 900])
def test_decoder_refuses_data_deeper_than_max_depth(depth: int) -> None:
    # 400-900 levels are what json.loads accepts and the walks after it did not.
    with pytest.raises(PacketError, match=f"nested deeper than {socketio.MAX_DEPTH} levels"):
        decode("2" + nested(depth))
    decoder = Decoder()
    with pytest.raises(PacketError, match="nested deeper"):
        decoder.feed("21" + nested(depth))
    assert decoder.feed('2["after"]') == Packet.event("after")  # reset, still usable


def test_decoder_takes_data_max_depth_deep() -> None:
    packet = decode("2" + nested(socketio.MAX_DEPTH))
    assert encode(packet)[0] == "2" + nested(socketio.MAX_DEPTH)
    # Many brackets side by side are not depth.
    wide = '["e",' + ",".join(["[[]]", "{}"] * 1000) + "]"
    assert len(decode("2" + wide).data) == 2001
    # Brackets inside strings are text.
    assert decode('2["e","' + "[" * 1000 + '"]').data == ["e", "[" * 1000]


def test_binary_placeholder_counts_as_a_level() -> None:
    # Bytes inside the deepest container allowed would need a placeholder one
    # level below it: refused when encoding, as the decoder would refuse it.
    deepest: Any = b"x"
    for _ in range(socketio.MAX_DEPTH - 1):
        deepest = [deepest]
    with pytest.raises(ValueError, match="nested deeper"):
        encode(Packet.event("e", deepest))
    text, attachments = encode(Packet.event("e", deepest[0]))
    assert decode(text, attachments) == Packet.event("e", deepest[0])


def test_encoding_refuses_deep_data_with_a_clear_error() -> None:
    deep: Any = []
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(ValueError, match=f"nested deeper than {socketio.MAX_DEPTH} levels"):
        Packet.event("e", deep)
    with pytest.raises(ValueError, match="nested deeper"):
        Packet.ack(1, deep)
    with pytest.raises(ValueError, match="nested deeper"):
        has_binary({"k": deep})
    with pytest.raises(ValueError, match="nested deeper"):
        deconstruct([deep, b"x"])
    with pytest.raises(ValueError, match="nested deeper"):
        encode(Packet(T.EVENT, data=["e", deep]))  # built by hand: json.dumps recursion
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested deeper"):
        Packet.event("e", cyclic)
    # Bytes found before the depth runs out: has_binary answers; deconstruct refuses.
    assert has_binary([b"x", deep])
    with pytest.raises(ValueError, match="nested deeper"):
        encode(Packet.event("e", b"x", deep))


def test_reserved_events_match_the_reference() -> None:
    assert {"connect", "connect_error", "disconnect", "disconnecting"} <= RESERVED_EVENTS
    assert {"newListener", "removeListener"} <= RESERVED_EVENTS


def test_doctests() -> None:
    assert doctest.testmod(socketio).failed == 0


# -- properties -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
# "_placeholder" is the one key the protocol reserves inside binary packets.
keys = st.text().filter(lambda k: k != "_placeholder")
json_with_bytes = st.recursive(
    json_scalars | st.binary(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
event_names = st.text().filter(lambda name: name not in RESERVED_EVENTS)
namespaces = st.just("/") | st.text().filter(lambda s: "," not in s).map(lambda s: "/" + s)
ack_ids = st.none() | st.integers(0, socketio.MAX_ACK_ID)


def count_bytes(data: Any) -> int:
    if isinstance(data, bytes):
        return 1
    if isinstance(data, list):
        return sum(count_bytes(item) for item in data)
    if isinstance(data, dict):
        return sum(count_bytes(item) for item in data.values())
    return 0


@given(json_with_bytes)
def test_deconstruct_reconstruct_round_trip(data: Any) -> None:
    stripped, attachments = deconstruct(data)
    assert not has_binary(stripped)
    assert len(attachments) == count_bytes(data)
    assert reconstruct(stripped, attachments) == data


@given(event_names, st.lists(json_with_bytes, max_size=4), namespaces, ack_ids)
def test_event_round_trip(name: str, args: list[Any], namespace: str, id: int | None) -> None:
    packet = Packet.event(name, *args, namespace=namespace, id=id)
    text, attachments = encode(packet)
    assert decode(text, attachments, max_attachments=1000, max_payload=10**9) == packet
    # Through a Decoder, one message at a time.
    decoder = Decoder(max_attachments=1000, max_payload=10**9)
    results = [decoder.feed(message) for message in [text, *attachments]]
    assert results[-1] == packet
    assert results[:-1] == [None] * len(attachments)


@given(ack_ids.filter(lambda i: i is not None), st.lists(json_with_bytes, max_size=4), namespaces)
def test_ack_round_trip(id: int, args: list[Any], namespace: str) -> None:
    packet = Packet.ack(id, *args, namespace=namespace)
    assert decode(*encode(packet), max_attachments=1000) == packet


json_objects = st.dictionaries(keys, json_scalars, max_size=4)


@given(
    st.sampled_from([T.CONNECT, T.DISCONNECT, T.CONNECT_ERROR]),
    namespaces,
    st.none() | json_objects | st.text(),
)
def test_other_packets_round_trip(kind: PacketType, namespace: str, data: Any) -> None:
    try:
        packet = Packet(kind, namespace, data)
    except ValueError:
        return  # a combination the protocol forbids
    assert decode(*encode(packet)) == packet


# Random text, and text made of the pieces of the format, to get past the first check.
TOKENS = [*'0123456-/,[]{}":. ', "true", "null", '"_placeholder":true', '"num":', "51-", "52-"]
garbage = st.text() | st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """A valid encoding with a few random edits, to reach the deeper checks."""
    packet = draw(st.builds(Packet.event, event_names, json_with_bytes, id=ack_ids))
    text, attachments = encode(packet)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(TOKENS) | st.characters())
        text = draw(st.sampled_from([text[:i] + piece + text[i:], text[:i] + text[i + 1 :]]))
    attachments = draw(st.sampled_from([attachments, attachments[1:], [*attachments, b"x"]]))
    return text, attachments


@given(garbage, st.lists(st.binary(max_size=8), max_size=3))
def test_garbage_decodes_or_raises_packet_error(text: str, attachments: list[bytes]) -> None:
    with contextlib.suppress(PacketError):
        decode(text, attachments, max_payload=200, max_attachments=3)


@given(mutated())
def test_mutated_packets_decode_or_raise_packet_error(case: tuple[str, list[bytes]]) -> None:
    with contextlib.suppress(PacketError):
        decode(*case)


@given(st.lists(garbage | st.binary(max_size=8), max_size=6))
def test_garbage_stream_decodes_or_raises_packet_error(messages: list[str | bytes]) -> None:
    decoder = Decoder(max_payload=200, max_attachments=3)
    for message in messages:
        with contextlib.suppress(PacketError):
            decoder.feed(message)
