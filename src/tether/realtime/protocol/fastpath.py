"""Fast paths of the JSON parser (:class:`.parsers.JsonParser`) for the
commonest packets, sans-I/O.

Almost every packet of a busy session is an ``EVENT`` or an ``ACK`` whose
arguments are plain JSON, in the main namespace or a short one. For these the
general path of :mod:`.socketio` builds a JSON decoder or encoder, walks the
data for bytes, validates the packet and formats it in many small steps.
The fast paths here do the same checks in fewer steps, with the JSON
encoder and decoder built once.

Each fast path only ever *accepts*: whatever it is not sure of (any other
packet type, attachments, an error of any kind, data that might nest deeper
than :data:`.socketio.MAX_DEPTH`) goes to the general path, which gives the
result or raises the error it always did. A malformed packet may so be read
twice; it closes its session anyway. tests/realtime/protocol/test_fastpath.py
checks both paths against each other on a corpus and on random input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from .checks import RESERVED_EVENTS, scan_json, strict_json
from .socketio import (
    DEFAULT_NAMESPACE,
    MAX_ACK_ID,
    MAX_DEPTH,
    Decoder,
    Packet,
    PacketType,
    json_dumps,
)

__all__ = ["FastDecoder", "JsonOut", "ack_text", "event_text"]

_BINARY = (bytes, bytearray, memoryview)
# How a frozen dataclass sets its fields in __init__.
_new, _set = object.__new__, object.__setattr__
_EVENT, _ACK = PacketType.EVENT, PacketType.ACK
_FAST_TYPES = {"2": _EVENT, "3": _ACK}
# "<2|3>[/namespace,][ack id][" (§Format): the JSON data must follow and be a
# list. [0-9], not \d, which takes other scripts' digits; 16 digits at most,
# as MAX_ACK_ID has.
_HEAD = re.compile(r"([23])(?:(/[^,]*),)?([0-9]{1,16})?\[")


# --- JSON out ---------------------------------------------------------------------


class JsonOut:
    """:func:`.socketio.json_dumps` with ``default``, its encoder built once:
    :meth:`dumps` gives the same text or raises the same error.

    The encoder is the stdlib's C one, without its circular-reference
    bookkeeping (a dict per encoder, which a failed call would leave stale
    and which threads would share): a cyclic object makes it recurse until
    :class:`RecursionError`. Any error hands the data to
    :func:`.socketio.json_dumps`, which raises what it always raised (a
    ``default`` that fails is so called twice on the object it fails on).

    >>> JsonOut().dumps(["a", {"b": 1.5, "c": None}])
    '["a",{"b":1.5,"c":null}]'
    """

    def __init__(self, default: Callable[[Any], Any] | None = None) -> None:
        self.default = default
        self._encode = _c_encoder(default)

    def attempt(self, data: Any) -> str | None:
        """The JSON text of ``data``, or ``None`` whenever :func:`.socketio.json_dumps`
        might do otherwise (bytes, a cycle, an object ``default`` refuses...)."""
        encode = self._encode
        if encode is None:  # pragma: no cover - CPython always has _json
            return None
        try:
            return "".join(encode(data, 0))
        except Exception:  # the general path judges
            return None

    def dumps(self, data: Any) -> str:
        """Exactly ``json_dumps(data, default)``."""
        text = self.attempt(data)
        return json_dumps(data, self.default) if text is None else text


def _c_encoder(default: Callable[[Any], Any] | None) -> Callable[[Any, int], Any] | None:
    """The stdlib's C encoder as :func:`.socketio.json_dumps` configures it,
    with ``default`` never asked about bytes; ``None`` without ``_json``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has _json
        return None

    def fallback(value: Any) -> Any:
        if isinstance(value, _BINARY) or default is None:
            raise TypeError("left to the general path")
        return default(value)

    try:
        encode: Callable[[Any, int], Any] = make(
            None, fallback, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
        probe = ["é\x1e", {"k": [1, 2.5, True, None]}]
        if "".join(encode(probe, 0)) != json_dumps(probe):  # pragma: no cover
            return None
    except TypeError:  # pragma: no cover - another signature in another Python
        return None
    return encode


# --- JSON in ----------------------------------------------------------------------


class FastDecoder(Decoder):
    """A :class:`.socketio.Decoder` that reads the commonest text packets
    (``EVENT`` and ``ACK``, no attachments) in fewer steps; the rest, and
    every error, is the general path's. Same bounds, same results, same errors.

    >>> FastDecoder().feed('3/chat,12["ok"]')
    Packet(type=<PacketType.ACK: 3>, namespace='/chat', data=['ok'], id=12)
    """

    def feed(self, message: str | bytes) -> Packet | None:
        # Over the size limit only if 4 bytes per character could be: then
        # the general path counts the bytes.
        if type(message) is str and self._pending is None and 4 * len(message) <= self.max_payload:
            packet = self._common(message)
            if packet is not None:
                return packet
        return super().feed(message)

    def _common(self, text: str) -> Packet | None:
        if text[1:2] == "[":  # "2[...": the main namespace, no ack id
            kind = _FAST_TYPES.get(text[0])
            namespace, ack_id, start = DEFAULT_NAMESPACE, None, 1
        else:
            head = _HEAD.match(text)
            if head is None:
                return None
            kind = _FAST_TYPES[head[1]]
            namespace = head[2] or DEFAULT_NAMESPACE
            digits = head[3]
            ack_id = None if digits is None else int(digits)
            start = head.end() - 1
        if kind is None or (ack_id is not None and ack_id > MAX_ACK_ID):
            return None
        # Fewer brackets than MAX_DEPTH cannot nest deeper (the general
        # path's own test, on the data alone); this also keeps the JSON
        # decoder far from Python's recursion limit. A text no longer than
        # MAX_DEPTH cannot hold more (most events: not counted).
        if len(text) > MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
            return None
        try:
            if self.loads is strict_json:
                # strict_json's own scanner, from the data's first character:
                # no slice, no call around it. The data must end the text.
                data, end = scan_json(text, start)
                if end != len(text):
                    return None
            else:
                data = self.loads(text[start:] if start else text)
        except (ValueError, StopIteration):
            return None
        if type(data) is not list:
            return None
        if kind is _EVENT:
            if not data or not isinstance(data[0], str) or data[0] in RESERVED_EVENTS:
                return None
        elif ack_id is None:
            return None
        # Every check of Packet.__post_init__ is made above (the type, the
        # namespace by _HEAD, the ack id, the data), so the packet is built
        # without making them again: a third of this path's cost otherwise.
        packet: Packet = _new(Packet)
        _set(packet, "type", kind)
        _set(packet, "namespace", namespace)
        _set(packet, "data", data)
        _set(packet, "id", ack_id)
        return packet


# --- Encode once ------------------------------------------------------------------


def _head(kind: str, namespace: str, ack_id: int | None) -> str | None:
    """``<type>[<namespace>,][<ack id>]``, or ``None`` if the general path must judge."""
    if namespace != DEFAULT_NAMESPACE:
        if type(namespace) is not str or not namespace.startswith("/") or "," in namespace:
            return None
        kind += namespace + ","
    if ack_id is None:
        return kind
    if type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID:
        return None
    return kind + str(ack_id)


def event_text(
    name: str, args: Sequence[Any], namespace: str, ack_id: int | None, out: JsonOut
) -> str | None:
    """The text form of ``Packet.event(name, *args, namespace=, id=)`` when it
    is a plain ``EVENT`` that ``out`` writes without error; else ``None``
    (bytes, a reserved or non-str name, data that might nest too deeply...),
    and the caller takes the general path, which gives its result or error.

    >>> event_text("chat", ("hi",), "/room", 7, JsonOut())
    '2/room,7["chat","hi"]'
    """
    if type(name) is not str or name in RESERVED_EVENTS:
        return None
    if namespace == DEFAULT_NAMESPACE and ack_id is None:
        return _body("2", [name, *args], out)  # what _head gives, without the call
    head = _head("2", namespace, ack_id)
    return None if head is None else _body(head, [name, *args], out)


def ack_text(ack_id: int, args: Sequence[Any], namespace: str, out: JsonOut) -> str | None:
    """:func:`event_text` for ``Packet.ack(ack_id, *args, namespace=)``.

    >>> ack_text(3, ("ok", 1), "/", JsonOut())
    '33["ok",1]'
    """
    head = None if ack_id is None else _head("3", namespace, ack_id)
    return None if head is None else _body(head, list(args), out)


def _body(head: str, data: list[Any], out: JsonOut) -> str | None:
    # JsonOut.attempt, inlined: this runs once per event sent.
    encode = out._encode
    if encode is None:  # pragma: no cover - CPython always has _json
        return None
    try:
        text = "".join(encode(data, 0))
    except Exception:  # the general path judges (bytes, a cycle...)
        return None
    # Data that might nest deeper than MAX_DEPTH goes to the general path too
    # (a list or dict writes a bracket; a text no longer than MAX_DEPTH
    # cannot hold more).
    if len(text) > MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
        return None
    return head + text
