"""The JSON parser's fast paths against the general path: the same packets,
texts and errors on the Socket.IO corpus (test_socketio.py's examples and
refusals, plus cases aimed at the fast paths) and on random input."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import PacketError
from tether.realtime.protocol import checks, engineio, fastpath, parsers, socketio
from tether.realtime.protocol.checks import strict_json
from tether.realtime.protocol.fastpath import FastDecoder, JsonOut
from tether.realtime.protocol.socketio import MAX_DEPTH, Decoder, Packet, PacketType, json_dumps


def _load_sibling(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SIO = _load_sibling("test_socketio")
REFUSALS = [(text, attachments) for text, attachments, _ in SIO.test_refusals.pytestmark[0].args[1]]
EXAMPLES = [(text, attachments) for text, attachments, _ in SIO.EXAMPLES]
# Aimed at the fast paths' own steps: the head, the ack id, the namespace,
# the bracket count, whitespace and the JSON decoder's shortcut.
AIMED = [
    '2["a"]',
    '3["a"]',
    '20["a"]',
    "2" + "9" * 16 + '["a"]',
    "2" + "9" * 17 + '["a"]',
    '29007199254740991["a"]',
    '29007199254740992["a"]',
    "30[]",
    "3/x,0[]",
    '2/x,["a"]',
    '2/,["a"]',
    '2/a/b,5["a"]',
    '2/x["a"]',
    '2/x,/y,["a"]',
    '2 ["a"]',
    '2["a"] ',
    '2\n["a"]',
    '2[ "a" ]',
    '2["a"]]',
    '2["a"][',
    "2[]",
    "2[1]",
    '2["connect"]',
    '2["a",NaN]',
    '2["a",1e400]',
    '2["a",{"b":[1,2,{"c":null}]}]',
    '2["\\ud800"]',
    '2["é","\\u00e9"]',
    '2\ufeff["a"]',
    "2" + "[" * MAX_DEPTH + '"a"' + "]" * MAX_DEPTH,
    "2" + "[" * (MAX_DEPTH + 1) + '"a"' + "]" * (MAX_DEPTH + 1),
    '2["' + "[" * 100 + '"]',
    "3" + "1" * 3 + '{"a":1}',
    '2٣["a"]',
    '2¹["a"]',
    "2" + '["a","' + "é" * 100 + '"]',
]


def outcome(decoder: Decoder, messages: list[str | bytes]) -> list[Any]:
    """What each message gives: the packet (with its exact types) or the error."""
    results: list[Any] = []
    for message in messages:
        try:
            packet = decoder.feed(message)
        except PacketError as exc:
            results.append(("error", str(exc)))
        else:
            results.append(None if packet is None else (packet, type(packet.type), type(packet.id)))
    return results


def both(messages: list[str | bytes], **limits: Any) -> tuple[list[Any], list[Any]]:
    limits = {"max_payload": 200, "max_attachments": 3, **limits}
    return outcome(Decoder(**limits), messages), outcome(FastDecoder(**limits), messages)


@pytest.mark.parametrize(("text", "attachments"), EXAMPLES + REFUSALS + [(t, []) for t in AIMED])
@pytest.mark.parametrize("max_payload", [10**6, 24])
def test_fast_decoder_matches_the_general_one(
    text: str, attachments: list[bytes], max_payload: int
) -> None:
    general, fast = both([text, *attachments], max_payload=max_payload, max_attachments=10)
    assert fast == general


@pytest.mark.parametrize("loads", [json.loads, strict_json])
def test_fast_decoder_with_another_loads(loads: Any) -> None:
    for text in AIMED:
        general = outcome(Decoder(loads=loads), [text])
        assert outcome(FastDecoder(loads=loads), [text]) == general


def test_fast_decoder_skips_the_general_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def general(*args: Any) -> Any:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(socketio, "_parse", general)
    decoder = FastDecoder()
    assert decoder.feed('2["echo","x"]') == Packet(PacketType.EVENT, "/", ["echo", "x"])
    assert decoder.feed("3/chat,7[1]") == Packet(PacketType.ACK, "/chat", [1], 7)
    with pytest.raises(AssertionError):
        decoder.feed('2["disconnect"]')  # refused: the general path says why


def test_the_json_parser_decodes_with_the_fast_decoder() -> None:
    decoder = parsers.JsonParser().decoder(max_payload=100, max_attachments=1)
    assert isinstance(decoder, FastDecoder)


# -- strict JSON ---------------------------------------------------------------------------


def reference_loads(text: Any) -> Any:
    try:
        return ("ok", json.loads(text, parse_constant=checks._reject_constant))
    except (ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc))


def ours(text: Any) -> Any:
    try:
        return ("ok", strict_json(text))
    except (ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc))


JSON_TOKENS = [*'[]{}":,. -+eE0123456789', "true", "null", "NaN", "Infinity", "\ufeff", "\\u", "é"]
json_ish = st.text() | st.lists(st.sampled_from(JSON_TOKENS), max_size=20).map("".join)


@given(json_ish)
def test_strict_json_matches_json_loads(text: str) -> None:
    assert ours(text) == reference_loads(text)


@pytest.mark.parametrize(
    "text", ["", " ", "[1] ", " [1]", "\ufeff[1]", "[1]x", "NaN", b"[1]", "[" * 5000]
)
def test_strict_json_edges(text: Any) -> None:
    assert ours(text) == reference_loads(text)


# -- JSON out --------------------------------------------------------------------------------


def dumped(dumps: Any, data: Any) -> Any:
    try:
        return ("ok", dumps(data))
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


cyclic: list[Any] = []
cyclic.append(cyclic)
deep: list[Any] = []
for _ in range(2000):
    deep = [deep]
ODD = [
    b"x",
    ["a", bytearray(b"x")],
    {"k": memoryview(b"x")},
    math.nan,
    [math.inf],
    {1: "int key", None: 0, 2.5: True},
    {(1,): "tuple key"},
    {1.5, 2},
    object(),
    cyclic,
    deep,
    "\x1e\u2028é",
    [True, 1, 1.0, -0.0, 10**30],
]


@pytest.mark.parametrize("default", [None, str, repr])
@pytest.mark.parametrize("data", ODD, ids=range(len(ODD)))
def test_json_out_matches_json_dumps(data: Any, default: Any) -> None:
    out = JsonOut(default)
    general = dumped(lambda d: json_dumps(d, default), data)
    assert dumped(out.dumps, data) == general
    attempt = out.attempt(data)
    assert attempt is None or ("ok", attempt) == general


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_data = st.recursive(
    json_scalars | st.binary(max_size=4),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_data)
def test_json_out_matches_json_dumps_on_random_data(data: Any) -> None:
    assert dumped(JsonOut().dumps, data) == dumped(json_dumps, data)
    assert dumped(JsonOut(str).dumps, data) == dumped(lambda d: json_dumps(d, str), data)


# -- encode once --------------------------------------------------------------------------------


def encoded(call: Any) -> Any:
    try:
        return ("ok", call())
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


names = st.text(max_size=6) | st.sampled_from([*socketio.RESERVED_EVENTS, ""]) | st.integers()
spaces = st.sampled_from(["/", "/chat", "chat", "/a,b", "", "/é"]) | st.text(max_size=5)
ids = (
    st.none()
    | st.integers(-2, 3)
    | st.just(socketio.MAX_ACK_ID)
    | st.sampled_from([2**53, True, 1.0])
)
arguments = st.lists(
    json_data | st.builds(nested, st.integers(MAX_DEPTH - 3, MAX_DEPTH + 1)), max_size=3
)


@given(names, arguments, spaces, ids, st.sampled_from([None, str]))
def test_encode_event_matches_packet_event(
    name: Any, args: list[Any], namespace: Any, id: Any, default: Any
) -> None:
    parser = parsers.JsonParser(default=default)
    general = encoded(lambda: parser.encode(Packet.event(name, *args, namespace=namespace, id=id)))
    assert encoded(lambda: parser.encode_event(name, args, namespace, id)) == general
    assert encoded(lambda: parsers.encode_event(parser, name, args, namespace, id)) == general


@given(ids, arguments, spaces)
def test_encode_ack_matches_packet_ack(id: Any, args: list[Any], namespace: Any) -> None:
    parser = parsers.JsonParser()
    general = encoded(lambda: parser.encode(Packet.ack(id, *args, namespace=namespace)))
    assert encoded(lambda: parser.encode_ack(id, args, namespace)) == general
    assert encoded(lambda: parsers.encode_ack(parser, id, args, namespace)) == general


@pytest.mark.parametrize(
    "args", [[cyclic], [nested(MAX_DEPTH - 1)], [nested(MAX_DEPTH)], ["[" * 100], [deep]]
)
def test_encode_event_edges(args: list[Any]) -> None:
    parser = parsers.JsonParser()
    general = encoded(lambda: parser.encode(Packet.event("e", *args)))
    assert encoded(lambda: parser.encode_event("e", args)) == general


@given(names, arguments, spaces, ids)
def test_json_parser_encode_matches_socketio_encode(
    name: Any, args: list[Any], namespace: Any, id: Any
) -> None:
    try:
        packet = Packet.event(name, *args, namespace=namespace, id=id)
    except ValueError:
        return

    def general() -> list[str | bytes]:
        text, attachments = socketio.encode(packet)
        return [text, *attachments]

    assert encoded(lambda: parsers.JsonParser().encode(packet)) == encoded(general)


def test_encode_message_matches_encode_packet() -> None:
    for data in ['2["a"]', "", b"\x01", b""]:
        packet = engineio.Packet(engineio.PacketType.MESSAGE, data)
        assert engineio.encode_message(data) == engineio.encode_packet(packet)
    with pytest.raises(ValueError, match="not bytearray"):
        engineio.encode_message(bytearray(b"x"))  # type: ignore[arg-type]


class _Custom:
    """A parser without encode_event / encode_ack."""

    def __init__(self) -> None:
        self.inner = parsers.JsonParser()

    def encode(self, packet: Packet) -> list[str | bytes]:
        return self.inner.encode(packet)

    def decoder(self, *, max_payload: int, max_attachments: int) -> parsers.PacketDecoder:
        return self.inner.decoder(max_payload=max_payload, max_attachments=max_attachments)


def test_encode_helpers_take_any_parser() -> None:
    assert parsers.encode_event(_Custom(), "a", [b"x"]) == [
        '51-["a",{"_placeholder":true,"num":0}]',
        b"x",
    ]
    assert parsers.encode_ack(_Custom(), 4, [1]) == ["34[1]"]


@given(names, arguments, spaces, ids, st.sampled_from([None, str]))
def test_encode_packet_matches_encode(
    name: Any, args: list[Any], namespace: Any, id: Any, default: Any
) -> None:
    try:
        event = Packet.event(name, *args, namespace=namespace, id=id)
        ack = Packet.ack(id, *args, namespace=namespace)
    except ValueError:
        return
    parser = parsers.JsonParser(default=default)
    for packet in (event, ack):
        general = encoded(lambda: parser.encode(packet))  # noqa: B023 (called at once)
        assert encoded(lambda: parsers.encode_packet(parser, packet)) == general  # noqa: B023


@pytest.mark.parametrize(
    "packet",
    [
        Packet(PacketType.CONNECT, "/", {"sid": "s"}),
        Packet(PacketType.DISCONNECT, "/chat"),
        Packet(PacketType.CONNECT_ERROR, "/", {"message": "no"}),
        Packet.event("e", b"\x01", id=3),
        Packet.ack(4, b"\x01", namespace="/n"),
        Packet.event("e", 1, namespace="/n", id=2),
        Packet.ack(4, "ok"),
    ],
    ids=["connect", "disconnect", "error", "binary-event", "binary-ack", "event", "ack"],
)
@pytest.mark.parametrize("parser", [parsers.JsonParser(), _Custom()], ids=["json", "custom"])
def test_encode_packet_of_every_type(packet: Packet, parser: parsers.Parser) -> None:
    assert parsers.encode_packet(parser, packet) == parser.encode(packet)


# -- random streams -----------------------------------------------------------------------------

TOKENS = [*'0123456-/,[]{}":. ', "2", "3", "/chat,", "12", "true", "null", "NaN", '"connect"']
texts = st.text(max_size=30) | st.lists(st.sampled_from(TOKENS), max_size=20).map("".join)
heads = st.sampled_from(["2", "3", "21", "3/x,9", "2/x,", "51-", "6"])


@given(st.lists(texts | heads.map(lambda h: h + '["a",1]') | st.binary(max_size=4), max_size=6))
def test_random_streams_decode_alike(messages: list[str | bytes]) -> None:
    general, fast = both(messages)
    assert fast == general


@given(st.builds(Packet.event, st.text(max_size=5), json_data, id=st.none() | st.integers(0, 99)))
def test_random_events_decode_alike(packet: Packet) -> None:
    try:
        text, attachments = socketio.encode(packet)
    except ValueError:
        return  # NaN and the like: not on the wire
    general, fast = both([text, *attachments], max_payload=10**6)
    assert fast == general


def test_doctests() -> None:
    assert doctest.testmod(fastpath).failed == 0
    assert doctest.testmod(parsers).failed == 0
    assert doctest.testmod(checks).failed == 0
