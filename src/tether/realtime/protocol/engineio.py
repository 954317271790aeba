"""Engine.IO protocol v4 packets, sans-I/O.

Section names refer to the Engine.IO v4 specification,
https://github.com/socketio/engine.io-protocol (README, "Protocol" and
"Packet encoding").

A packet is a type and optional data: text (``str``) or, for ``message``
packets only, binary (``bytes``). Two encodings exist:

* WebSocket: one packet per frame. A text packet is the text frame
  ``"<type><data>"``; a binary message is the raw binary frame.
* HTTP long-polling: a *payload* of packets joined by the record separator
  ``"\\x1e"``, binary messages written as ``"b"`` + base64.

>>> encode_packet(Packet(PacketType.MESSAGE, "hello"))
'4hello'
>>> encode_payload([Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.MESSAGE, b"\\x01")])
'4hello\\x1ebAQ=='
>>> decode_payload("4hello\\x1e2")
[Packet(type=<PacketType.MESSAGE: 4>, data='hello'), Packet(type=<PacketType.PING: 2>, data='')]

Decoders raise :class:`~tether.exceptions.PacketError`, and only that, on any
input they refuse; encoders raise :class:`ValueError` on packets that cannot
be put on the wire.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ...exceptions import PacketError
from ...limits import DEFAULT_REALTIME_LIMITS
from .checks import check_text_size, strict_json, too_big

__all__ = [
    "PING_PROBE",
    "PONG_PROBE",
    "PROBE",
    "PROTOCOL_VERSION",
    "RECORD_SEPARATOR",
    "Handshake",
    "Packet",
    "PacketType",
    "decode_packet",
    "decode_payload",
    "encode_message",
    "encode_packet",
    "encode_payload",
    "iter_payload",
]

PROTOCOL_VERSION = 4
"""The ``EIO`` query parameter of this protocol version (§Transports)."""

RECORD_SEPARATOR = "\x1e"
"""Separates the packets of a long-polling payload (§Packet encoding, HTTP long-polling)."""

PROBE = "probe"
"""Data of the ping / pong pair that tests a WebSocket before an upgrade (§Upgrade)."""

_BINARY_PREFIX = "b"


class PacketType(enum.IntEnum):
    """Engine.IO packet types (§Protocol); the value is the digit on the wire."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


# The digit each type is written as, and back.
_TYPE_CHARS = {t: str(t.value) for t in PacketType}
_CHAR_TYPES = {c: t for t, c in _TYPE_CHARS.items()}


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet.

    ``data`` is text for every type; a ``MESSAGE`` may carry ``bytes`` instead.
    An empty string means no data.
    """

    type: PacketType
    data: str | bytes = ""

    def __post_init__(self) -> None:
        if not isinstance(self.type, PacketType):
            raise ValueError(f"not an Engine.IO packet type: {self.type!r}")
        if isinstance(self.data, bytes):
            if self.type is not PacketType.MESSAGE:
                raise ValueError(f"only message packets carry binary data, not {self.type.name}")
        elif not isinstance(self.data, str):
            raise ValueError(f"packet data must be str or bytes, not {type(self.data).__name__}")

    @property
    def is_binary(self) -> bool:
        """Whether this is a binary message."""
        return isinstance(self.data, bytes)


PING_PROBE = Packet(PacketType.PING, PROBE)
"""Sent by the client on the new WebSocket to test it before upgrading (§Upgrade)."""

PONG_PROBE = Packet(PacketType.PONG, PROBE)
"""The server's answer to :data:`PING_PROBE` (§Upgrade)."""


# --- WebSocket (§Packet encoding, WebSocket) --------------------------------


def encode_packet(packet: Packet) -> str | bytes:
    """Encode a packet as one WebSocket frame: ``str`` for a text frame, ``bytes`` for binary.

    >>> encode_packet(PING_PROBE)
    '2probe'
    >>> encode_packet(Packet(PacketType.MESSAGE, b"\\x01\\x02"))
    b'\\x01\\x02'
    """
    # "Binary payloads are sent as is, without modification."
    if isinstance(packet.data, bytes):
        return packet.data
    return _TYPE_CHARS[packet.type] + packet.data


def encode_message(data: str | bytes) -> str | bytes:
    """``encode_packet(Packet(PacketType.MESSAGE, data))`` without the packet:
    the frame of one Socket.IO message, for a server that encodes once.

    >>> encode_message('2["hi"]'), encode_message(b"\\x01")
    ('42["hi"]', b'\\x01')
    """
    if isinstance(data, str):
        return "4" + data
    if isinstance(data, bytes):
        return data
    raise ValueError(f"packet data must be str or bytes, not {type(data).__name__}")


def decode_packet(
    frame: str | bytes, *, max_payload: int = DEFAULT_REALTIME_LIMITS.max_payload
) -> Packet:
    """Decode the content of one WebSocket frame (text as ``str``, binary as ``bytes``).

    Raise :class:`~tether.exceptions.PacketError` when it is empty, larger than
    ``max_payload`` bytes, or of an unknown type.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        if len(frame) > max_payload:
            raise PacketError(too_big("binary message", len(frame), max_payload))
        return Packet(PacketType.MESSAGE, bytes(frame))
    if not isinstance(frame, str):
        raise PacketError(f"expected str or bytes, got {type(frame).__name__}")
    if 4 * len(frame) > max_payload:  # else within the limit, however encoded
        check_text_size(frame, max_payload, "text message")
    return _decode_text(frame)


# --- HTTP long-polling (§Packet encoding, HTTP long-polling) ----------------


def encode_payload(packets: Iterable[Packet]) -> str:
    """Encode packets as the body of one long-polling request or response.

    Binary messages become ``"b"`` + base64. The caller should keep the result
    under the peer's ``maxPayload`` (§Packet encoding: the client "SHOULD use the
    maxPayload value ... to decide how many packets should be concatenated").

    >>> encode_payload([Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.PING)])
    '4hello\\x1e2'
    """
    parts = []
    for packet in packets:
        if isinstance(packet.data, bytes):
            parts.append(_BINARY_PREFIX + base64.b64encode(packet.data).decode("ascii"))
        elif RECORD_SEPARATOR in packet.data:
            # The format "assumes the record separator is not used in the data".
            raise ValueError("text data cannot contain the record separator \\x1e")
        else:
            parts.append(_TYPE_CHARS[packet.type] + packet.data)
    if not parts:
        raise ValueError("a payload holds at least one packet")
    return RECORD_SEPARATOR.join(parts)


def decode_payload(
    body: str | bytes, *, max_payload: int = DEFAULT_REALTIME_LIMITS.max_payload
) -> list[Packet]:
    """Decode the body of one long-polling request or response into its packets.

    ``bytes`` are decoded as UTF-8 (§Packet encoding: "The character encoding
    is UTF-8"). Raise :class:`~tether.exceptions.PacketError` when the body is
    larger than ``max_payload`` bytes or any packet in it is malformed: the
    whole body is refused, as the reference server closes the session.
    """
    return list(iter_payload(body, max_payload=max_payload))


def iter_payload(
    body: str | bytes, *, max_payload: int = DEFAULT_REALTIME_LIMITS.max_payload
) -> Iterator[Packet]:
    """:func:`decode_payload` one packet at a time.

    The body's size and encoding are checked at once; each packet is decoded
    when reached (:class:`~tether.exceptions.PacketError` from there on), so a
    server can hand the packets of a large body over in batches without
    decoding tens of thousands of them in one go. The reference server also
    handles the packets before a malformed one.

    >>> next(iter_payload("4hello\x1e2"))
    Packet(type=<PacketType.MESSAGE: 4>, data='hello')
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        # Checked before decoding, so an oversized body costs nothing.
        if len(body) > max_payload:
            raise PacketError(too_big("payload", len(body), max_payload))
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError(f"payload is not valid UTF-8: {exc.reason}") from None
    elif isinstance(body, str):
        check_text_size(body, max_payload, "payload")
    else:
        raise PacketError(f"expected str or bytes, got {type(body).__name__}")
    return map(_decode_text, _records(body))


def _records(text: str) -> Iterator[str]:
    """The parts of ``text`` between record separators, one at a time: a body
    of max_payload bytes may hold hundreds of thousands of them, which
    ``split()`` would make into as many strings at once (tens of MB)."""
    start = 0
    find = text.find
    while (end := find(RECORD_SEPARATOR, start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


# --- Handshake (§Handshake) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handshake:
    """The JSON data of the ``open`` packet the server sends first (§Handshake).

    Durations are in milliseconds, as on the wire. ``max_payload`` is ``None``
    when the server did not send it (servers older than the field). There are
    no defaults: the values are the session's, from its limits and options.

    >>> Handshake("abc", ("websocket",), 25000, 20000, 1000000).to_packet().data
    '{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    """

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: int
    ping_timeout: int
    max_payload: int | None

    def __post_init__(self) -> None:
        problem = _handshake_problem(self)
        if problem:
            raise ValueError(problem)

    def to_packet(self) -> Packet:
        """The ``open`` packet carrying this handshake."""
        fields: dict[str, Any] = {
            "sid": self.sid,
            "upgrades": list(self.upgrades),
            "pingInterval": self.ping_interval,
            "pingTimeout": self.ping_timeout,
        }
        if self.max_payload is not None:
            fields["maxPayload"] = self.max_payload
        return Packet(PacketType.OPEN, json.dumps(fields, separators=(",", ":")))

    @classmethod
    def from_packet(cls, packet: Packet) -> Handshake:
        """Read the handshake from an ``open`` packet; unknown keys are ignored.

        Raise :class:`~tether.exceptions.PacketError` when the packet is not an
        ``open`` packet or its data is not a valid handshake.
        """
        if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
            raise PacketError(f"expected an open packet, got {packet.type.name}")
        try:
            fields = strict_json(packet.data)
        except (ValueError, RecursionError):
            raise PacketError("open packet data is not valid JSON") from None
        if not isinstance(fields, dict):
            raise PacketError("open packet data is not a JSON object")
        upgrades = fields.get("upgrades")
        if not isinstance(upgrades, list):
            raise PacketError("handshake field 'upgrades' must be a list of strings")
        try:
            return cls(
                sid=fields.get("sid"),  # type: ignore[arg-type]  # checked in __post_init__
                upgrades=tuple(upgrades),
                ping_interval=fields.get("pingInterval"),  # type: ignore[arg-type]
                ping_timeout=fields.get("pingTimeout"),  # type: ignore[arg-type]
                max_payload=fields.get("maxPayload"),
            )
        except ValueError as exc:
            raise PacketError(str(exc)) from None


def _handshake_problem(handshake: Handshake) -> str | None:
    if not isinstance(handshake.sid, str) or not handshake.sid:
        return "handshake field 'sid' must be a non-empty string"
    if not all(isinstance(u, str) for u in handshake.upgrades):
        return "handshake field 'upgrades' must be a list of strings"
    for key, value, optional in (
        ("pingInterval", handshake.ping_interval, False),
        ("pingTimeout", handshake.ping_timeout, False),
        ("maxPayload", handshake.max_payload, True),
    ):
        if value is None and optional:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"handshake field {key!r} must be a non-negative integer"
    return None


# --- Helpers -----------------------------------------------------------------


def _decode_text(text: str) -> Packet:
    """Decode ``"<type><data>"`` or ``"b<base64>"``."""
    if not text:
        raise PacketError("empty packet")
    head, data = text[0], text[1:]
    if head == _BINARY_PREFIX:
        # §Packet encoding, HTTP long-polling. The reference decoder also takes
        # this form in WebSocket text frames (clients with forceBase64 send it).
        try:
            return Packet(PacketType.MESSAGE, base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise PacketError("binary packet is not valid base64") from None
    packet_type = _CHAR_TYPES.get(head)
    if packet_type is None:
        raise PacketError(f"unknown packet type {head!r}")
    return Packet(packet_type, data)
