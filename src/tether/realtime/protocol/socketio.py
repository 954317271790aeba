"""Socket.IO protocol v5 packets, sans-I/O.

Section names refer to the Socket.IO v5 specification,
https://github.com/socketio/socket.io-protocol (README, "Exchange protocol"
and "Packet encoding").

Each Socket.IO packet travels as the data of an Engine.IO ``message``
packet (:mod:`tether.realtime.protocol.engineio`). Its text form is (§Format)::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]

A ``BINARY_EVENT`` or ``BINARY_ACK`` carries ``bytes`` anywhere in its data:
:func:`encode` replaces each with a placeholder ``{"_placeholder":true,"num":N}``
and returns the bytes as *attachments*, sent as binary Engine.IO messages right
after the text. A :class:`Decoder` takes the text, then the attachments, and
gives back the whole packet.

>>> encode(Packet.event("hello", 1))
('2["hello",1]', [])
>>> encode(Packet.event("baz", b"\\x01\\x02", namespace="/admin"))
('51-/admin,["baz",{"_placeholder":true,"num":0}]', [b'\\x01\\x02'])
>>> decode('3/admin,13["bar"]')
Packet(type=<PacketType.ACK: 3>, namespace='/admin', data=['bar'], id=13)

Decoders raise :class:`~tether.exceptions.PacketError`, and only that, on any
input they refuse. Building a :class:`Packet` the protocol forbids raises
:class:`ValueError`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...exceptions import PacketError
from ...limits import DEFAULT_REALTIME_LIMITS
from .checks import RESERVED_EVENTS, check_text_size, strict_json, too_big

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_ACK_ID",
    "MAX_DEPTH",
    "PROTOCOL_VERSION",
    "RESERVED_EVENTS",
    "Decoder",
    "Dumps",
    "Loads",
    "Packet",
    "PacketType",
    "ack_args",
    "decode",
    "deconstruct",
    "encode",
    "has_binary",
    "json_dumps",
    "reconstruct",
]

PROTOCOL_VERSION = 5

DEFAULT_NAMESPACE = "/"
"""The main namespace, left out of the text form (§Format)."""

MAX_ACK_ID = 2**53 - 1
"""Largest ack id accepted: the largest integer a JavaScript peer holds exactly."""

MAX_DEPTH = 64
"""Deepest nesting of lists and objects in a packet's data (the data list itself
is level 1), both ways: :class:`Decoder` refuses deeper packets with a
:class:`~tether.exceptions.PacketError`, and :func:`encode`, :func:`has_binary`
and :func:`deconstruct` refuse deeper data with :class:`ValueError`.

Far above what events carry (a few levels), and far below Python's recursion
limit (1000 frames, shared with whatever called us): ``json.loads`` accepts
data almost that deep, and every recursive walk after it (placeholders,
``has_binary`` on an acknowledgement) would then fail somewhere far from the
peer that sent it. Not a :class:`~tether.limits.RealtimeLimits` field because
raising it is unsafe and the encoding functions take no limits."""

Dumps = Callable[[Any], str]  # a packet's data (placeholders in place) -> JSON text
Loads = Callable[[str], Any]  # JSON text -> data; ValueError on bad input

_PLACEHOLDER = "_placeholder"
_DIGITS = frozenset("0123456789")  # str.isdigit() would also take "²" or "٣"
_MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))


class PacketType(enum.IntEnum):
    """Socket.IO packet types (§Exchange protocol); the value is the digit on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6

    @property
    def is_binary(self) -> bool:
        """Whether packets of this type carry binary attachments."""
        return self in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)


_CHAR_TYPES = {str(t.value): t for t in PacketType}
_TYPE_CHARS = {t: c for c, t in _CHAR_TYPES.items()}
_EVENTS = (PacketType.EVENT, PacketType.BINARY_EVENT)
_ACKS = (PacketType.ACK, PacketType.BINARY_ACK)


@dataclass(frozen=True, slots=True)
class Packet:
    """One Socket.IO packet.

    ``data`` is JSON-able (``dict``, ``list``, ``str``, numbers, ``bool``,
    ``None``); in a ``BINARY_*`` packet it may hold ``bytes`` at any depth.
    What each type allows (§Exchange protocol):

    =============  =========================================  ======
    type           data                                       ack id
    =============  =========================================  ======
    CONNECT        ``None`` or a ``dict``                     no
    DISCONNECT     ``None``                                   no
    EVENT          a list: event name (``str``), then args    optional
    ACK            a list, possibly empty                     yes
    CONNECT_ERROR  a ``dict`` (``{"message": ...}``) or str   no
    =============  =========================================  ======

    ``BINARY_EVENT`` and ``BINARY_ACK`` follow ``EVENT`` and ``ACK``.
    :meth:`event` and :meth:`ack` pick the binary type when needed.
    """

    type: PacketType
    namespace: str = DEFAULT_NAMESPACE
    data: Any = None
    id: int | None = None

    def __post_init__(self) -> None:
        problem = _packet_problem(self)
        if problem:
            raise ValueError(problem)

    @classmethod
    def event(
        cls, name: str, *args: Any, namespace: str = DEFAULT_NAMESPACE, id: int | None = None
    ) -> Packet:
        """An ``EVENT``, or a ``BINARY_EVENT`` when ``args`` hold bytes.

        >>> Packet.event("hello", b"\\x00").type.name
        'BINARY_EVENT'
        """
        data = [name, *args]
        kind = PacketType.BINARY_EVENT if has_binary(args) else PacketType.EVENT
        return cls(kind, namespace, data, id)

    @classmethod
    def ack(cls, id: int, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> Packet:
        """An ``ACK``, or a ``BINARY_ACK`` when ``args`` hold bytes, answering event ``id``."""
        kind = PacketType.BINARY_ACK if has_binary(args) else PacketType.ACK
        return cls(kind, namespace, list(args), id)


def _packet_problem(packet: Packet) -> str | None:
    """What makes ``packet`` invalid (§Exchange protocol), or ``None``."""
    kind, data, ack_id = packet.type, packet.data, packet.id
    if not isinstance(kind, PacketType):
        return f"not a Socket.IO packet type: {kind!r}"
    namespace = packet.namespace
    # §Format: the namespace runs from "/" up to ",", so it cannot hold one.
    if not isinstance(namespace, str) or not namespace.startswith("/") or "," in namespace:
        return f"invalid namespace {namespace!r}: it must start with '/' and hold no ','"
    if ack_id is not None:
        if kind not in _EVENTS and kind not in _ACKS:
            return f"{kind.name} packets carry no ack id"
        if not isinstance(ack_id, int) or isinstance(ack_id, bool) or not 0 <= ack_id <= MAX_ACK_ID:
            return f"ack id must be an integer from 0 to {MAX_ACK_ID}, got {ack_id!r}"
    if kind in _EVENTS:
        # §Sending and receiving data: "The payload is mandatory and MUST be a
        # non-empty array"; its first item is the event name.
        if not isinstance(data, list) or not data:
            return f"{kind.name} data must be a non-empty list, got {_describe(data)}"
        if not isinstance(data[0], str):
            return f"event name must be a string, got {_describe(data[0])}"
        if data[0] in RESERVED_EVENTS:
            return f"{data[0]!r} is a reserved event name"
    elif kind in _ACKS:
        # §Acknowledgement: "The payload is mandatory and MUST be an array
        # (possibly empty)", sent "with the same event ID".
        if ack_id is None:
            return f"{kind.name} packets need an ack id"
        if not isinstance(data, list):
            return f"{kind.name} data must be a list, got {_describe(data)}"
    elif kind is PacketType.CONNECT:
        if data is not None and not isinstance(data, dict):
            return f"CONNECT data must be an object, got {_describe(data)}"
    elif kind is PacketType.DISCONNECT:
        if data is not None:
            return f"DISCONNECT carries no data, got {_describe(data)}"
    elif not isinstance(data, (dict, str)):  # CONNECT_ERROR
        return f"CONNECT_ERROR data must be an object or a string, got {_describe(data)}"
    return None


def _describe(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# --- Binary data (§Packet encoding: "+ binary attachments extracted") --------


def ack_args(result: Any) -> tuple[Any, ...]:
    """The arguments of the ACK a handler's return value makes, on either side:
    none for ``None``, each item of a tuple, anything else as one argument."""
    if result is None:
        return ()
    if isinstance(result, tuple):
        return result
    return (result,)


_BINARY_TYPES = (bytes, bytearray, memoryview)


def has_binary(data: Any) -> bool:
    """Whether ``data`` holds ``bytes``, ``bytearray`` or ``memoryview`` at any depth.

    Raise :class:`ValueError` when lists, tuples and dicts nest deeper than
    :data:`MAX_DEPTH` (or hold themselves) before any bytes are found.
    """
    # Level by level, without recursion: the data comes from the application
    # and may be as deep (or as cyclic) as it likes.
    level = [data]
    depth = 0
    while level:
        below: list[Any] = []
        for value in level:
            if isinstance(value, _BINARY_TYPES):
                return True
            if isinstance(value, dict):
                below.extend(value.values())
            elif isinstance(value, (list, tuple)):
                below.extend(value)
            else:
                continue
            if depth == MAX_DEPTH:
                raise ValueError(_too_deep())
        depth += 1
        level = below
    return False


def _too_deep() -> str:
    return f"data nested deeper than {MAX_DEPTH} levels"


def _deeper_than_max(data: Any) -> bool:
    """Whether the lists and dicts of decoded JSON ``data`` nest deeper than
    :data:`MAX_DEPTH` (level by level: only containers are visited)."""
    level = [data] if isinstance(data, (list, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        below: list[Any] = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            below += [item for item in items if isinstance(item, (list, dict))]
        level = below
    return False


def deconstruct(data: Any) -> tuple[Any, list[bytes]]:
    """Replace every bytes object in ``data`` by a placeholder; return it and the bytes.

    The input is not modified. Placeholders are numbered in depth-first order,
    which is the order of the attachments.

    >>> data, attachments = deconstruct(["a", {"x": b"\\x01"}, [b"\\x02"]])
    >>> data
    ['a', {'x': {'_placeholder': True, 'num': 0}}, [{'_placeholder': True, 'num': 1}]]
    >>> attachments
    [b'\\x01', b'\\x02']
    """
    attachments: list[bytes] = []

    # Recursive, but never deeper than MAX_DEPTH: a placeholder is an object
    # too, one level below the bytes' container, and must still decode.
    def walk(value: Any, depth: int) -> Any:
        if isinstance(value, _BINARY_TYPES):
            if depth > MAX_DEPTH:
                raise ValueError(_too_deep())
            attachments.append(bytes(value))
            return {_PLACEHOLDER: True, "num": len(attachments) - 1}
        if isinstance(value, (list, tuple, dict)) and depth > MAX_DEPTH:
            raise ValueError(_too_deep())
        if isinstance(value, (list, tuple)):
            return [walk(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return {key: walk(item, depth + 1) for key, item in value.items()}
        return value

    return walk(data, 1), attachments


def reconstruct(data: Any, attachments: Sequence[bytes]) -> Any:
    """Put the attachments back in place of the placeholders of ``data``.

    The input is not modified. Raise :class:`~tether.exceptions.PacketError`
    when a placeholder's index is not one of ``attachments``.

    >>> reconstruct(["a", {"_placeholder": True, "num": 0}], [b"\\x01"])
    ['a', b'\\x01']
    """

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            if value.get(_PLACEHOLDER) is True:
                return attachments[_placeholder_index(value, len(attachments))]
            return {key: walk(item) for key, item in value.items()}
        return value

    return walk(data)


def _placeholder_indexes(data: Any, count: int) -> set[int]:
    """The attachment indexes ``data`` refers to, each checked against ``count``."""
    found: set[int] = set()
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            if value.get(_PLACEHOLDER) is True:
                found.add(_placeholder_index(value, count))
            else:
                stack.extend(value.values())
    return found


def _placeholder_index(placeholder: dict[str, Any], count: int) -> int:
    # Any object whose "_placeholder" is true is a placeholder, as in the
    # reference parser; "num" must then name a declared attachment.
    num = placeholder.get("num")
    if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < count:
        raise PacketError(
            f"placeholder refers to attachment {num!r}, "
            f"but the packet declares {count} attachment(s)"
        )
    return num


# --- Encoding (§Format) -------------------------------------------------------


def encode(packet: Packet, *, dumps: Dumps | None = None) -> tuple[str, list[bytes]]:
    """Encode ``packet`` as its text form and its attachments, in sending order.

    The attachments list is empty unless the packet is ``BINARY_*``. Raise
    :class:`ValueError` when a non-binary packet holds bytes. ``dumps``: :func:`json_dumps`.

    >>> encode(Packet(PacketType.DISCONNECT, "/admin"))
    ('1/admin,', [])
    """
    kind, data, attachments = packet.type, packet.data, list[bytes]()
    head = _TYPE_CHARS[kind]
    if kind is PacketType.BINARY_EVENT or kind is PacketType.BINARY_ACK:
        data, attachments = deconstruct(data)
        head += f"{len(attachments)}-"
    # §Format: "the namespace is only included if it is different from the
    # main namespace".
    if packet.namespace != DEFAULT_NAMESPACE:
        head += packet.namespace + ","
    if packet.id is not None:
        head += str(packet.id)
    if data is not None:
        return head + (dumps or json_dumps)(data), attachments
    return head, attachments


def json_dumps(data: Any, default: Callable[[Any], Any] | None = None) -> str:
    """The stdlib JSON text of ``data``, as the reference implementation writes it;
    ``default`` as :func:`json.dumps`'s (never asked about bytes: :class:`ValueError`)."""

    def refuse(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError("bytes in a packet not BINARY_*: use BINARY_EVENT or BINARY_ACK")
        if default is not None:
            return default(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    # Compact and not ASCII-escaped, like JSON.stringify in the reference
    # implementation. Control characters, "\x1e" included, are still escaped,
    # which keeps long-polling payloads splittable.
    try:
        return json.dumps(
            data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=refuse
        )
    except RecursionError:
        # A packet built by hand around has_binary() (Packet.event checks depth).
        raise ValueError(_too_deep()) from None


# --- Decoding -----------------------------------------------------------------


def decode(
    text: str,
    attachments: Sequence[bytes] = (),
    *,
    max_payload: int = DEFAULT_REALTIME_LIMITS.max_payload,
    max_attachments: int = DEFAULT_REALTIME_LIMITS.max_attachments,
) -> Packet:
    """Decode one packet from its text form and exactly the attachments it declares.

    Raise :class:`~tether.exceptions.PacketError` when anything is malformed.
    See :class:`Decoder` for attachments that arrive one at a time.
    """
    decoder = Decoder(max_payload=max_payload, max_attachments=max_attachments)
    packet = decoder.feed(text)
    for attachment in attachments:
        if packet is not None:
            raise PacketError("more attachments than the packet declares")
        packet = decoder.feed(attachment)
    if packet is None:
        raise PacketError(f"the packet awaits {decoder.expected} more attachment(s)")
    return packet


class Decoder:
    """Decode the Socket.IO packets of one session, attachments included.

    Feed it the data of each Engine.IO ``message`` in order: :meth:`feed` returns
    a packet once it is whole, ``None`` while attachments are still due.

    >>> decoder = Decoder()
    >>> decoder.feed('51-["baz",{"_placeholder":true,"num":0}]') is None
    True
    >>> decoder.feed(b"\\x01\\x02\\x03\\x04").data
    ['baz', b'\\x01\\x02\\x03\\x04']

    After a :class:`~tether.exceptions.PacketError` the decoder is reset, but
    the session should be closed: the peer cannot be trusted to be in step.
    """

    def __init__(
        self,
        *,
        max_payload: int = DEFAULT_REALTIME_LIMITS.max_payload,
        max_attachments: int = DEFAULT_REALTIME_LIMITS.max_attachments,
        loads: Loads = strict_json,
    ) -> None:
        self.max_payload = max_payload
        self.max_attachments = max_attachments
        self.loads = loads
        self._pending: Packet | None = None  # text part of a binary packet
        self._expected = 0
        self._attachments: list[bytes] = []
        self._size = 0

    @property
    def expected(self) -> int:
        """How many attachments the packet being decoded still awaits."""
        return self._expected - len(self._attachments)

    def feed(self, message: str | bytes) -> Packet | None:
        """Take the next message: text for a packet, bytes for an attachment."""
        try:
            if isinstance(message, str):
                return self._feed_text(message)
            if isinstance(message, (bytes, bytearray, memoryview)):
                return self._feed_attachment(bytes(message))
            raise PacketError(f"expected str or bytes, got {type(message).__name__}")
        except PacketError:
            self._reset()
            raise
        except RecursionError:
            # json.loads and the walks above recurse once per nesting level.
            self._reset()
            raise PacketError("packet data is nested too deeply") from None

    def _feed_text(self, text: str) -> Packet | None:
        if self._pending is not None:
            raise PacketError(f"expected {self.expected} more attachment(s), got a text packet")
        check_text_size(text, self.max_payload, "packet")
        packet, count = _parse(text, self.max_attachments, self.loads)
        if count == 0:
            return packet
        # The attachments count against the same limit as the text, in bytes.
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        self._pending, self._expected, self._size = packet, count, size
        return None

    def _feed_attachment(self, attachment: bytes) -> Packet | None:
        pending = self._pending
        if pending is None:
            raise PacketError("got an attachment, but no binary packet awaits one")
        # Checked before keeping the attachment.
        self._size += len(attachment)
        if self._size > self.max_payload:
            raise PacketError(too_big("packet with its attachments", self._size, self.max_payload))
        self._attachments.append(attachment)
        if len(self._attachments) < self._expected:
            return None
        data = reconstruct(pending.data, self._attachments)
        self._reset()
        return Packet(pending.type, pending.namespace, data, pending.id)

    def _reset(self) -> None:
        self._pending, self._expected, self._attachments, self._size = None, 0, [], 0


def _parse(text: str, max_attachments: int, loads: Loads = strict_json) -> tuple[Packet, int]:
    """Parse the text form (§Format); return the packet, placeholders in place, and
    how many attachments it declares."""
    if not text:
        raise PacketError("empty packet")
    kind = _CHAR_TYPES.get(text[0])
    if kind is None:
        raise PacketError(f"unknown packet type {text[0]!r}")
    pos, count = 1, 0
    if kind.is_binary:
        pos, count = _parse_count(text, max_attachments)

    namespace = DEFAULT_NAMESPACE
    if text.startswith("/", pos):
        # Up to the "," or the end: the reference clients send "40/admin"
        # without a trailing comma when there is nothing after it.
        end = text.find(",", pos)
        if end == -1:
            namespace, pos = text[pos:], len(text)
        else:
            namespace, pos = text[pos:end], end + 1

    ack_id = None
    end = pos
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    if end > pos:
        if end - pos > _MAX_ACK_ID_DIGITS:
            raise PacketError(f"ack id of {end - pos} digits is too large")
        ack_id, pos = int(text[pos:end]), end

    data = _loads(text[pos:], loads) if pos < len(text) else None
    try:
        packet = Packet(kind, namespace, data, ack_id)
    except ValueError as exc:
        raise PacketError(str(exc)) from None
    if kind.is_binary:
        referenced = len(_placeholder_indexes(data, count))
        if referenced != count:
            raise PacketError(
                f"the packet declares {count} attachment(s) but refers to {referenced}"
            )
    return packet, count


def _parse_count(text: str, max_attachments: int) -> tuple[int, int]:
    """Parse ``<attachments>-`` after the type; return the position after it and the count."""
    end = 1
    # Stop after one digit too many, so a long run of digits is not scanned.
    limit = min(len(text), 1 + len(str(max_attachments)) + 1)
    while end < limit and text[end] in _DIGITS:
        end += 1
    if end == limit and text[end : end + 1] in _DIGITS:
        raise PacketError(
            f"attachment count {text[1:end]}... exceeds the limit of {max_attachments}"
        )
    if end == 1 or not text.startswith("-", end):
        raise PacketError("binary packet lacks its '<attachments>-' count")
    count = int(text[1:end])
    if count > max_attachments:
        raise PacketError(f"{count} attachments exceed the limit of {max_attachments}")
    return end + 1, count


def _loads(text: str, loads: Loads) -> Any:
    try:
        data = loads(text)
    except ValueError:
        # A non-numeric ack id lands here too: "2abc[...]" reads as data "abc[...]".
        raise PacketError(f"invalid JSON data: {_excerpt(text)}") from None
    # json.loads itself stops near Python's recursion limit (RecursionError,
    # caught by Decoder.feed); MAX_DEPTH is far below that. Fewer brackets
    # than MAX_DEPTH cannot nest deeper, which spares the walk for almost
    # every packet (two scans in C).
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than_max(data):
        raise PacketError(f"packet data nested deeper than {MAX_DEPTH} levels")
    return data


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
