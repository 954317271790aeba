"""Socket.IO parsers: how packets become Engine.IO payloads and back, sans-I/O.

A server or client picks one (``parser="msgpack"``, or an object that
implements :class:`Parser`); both ends must use the same. Two ship:

* :class:`JsonParser`, the default: the text form of the Socket.IO v5
  specification, binary data as attachments (:mod:`.socketio`). Its ``json=``
  (any module with ``dumps``/``loads``, such as ``orjson``) and ``default=``
  (what to make of objects JSON cannot hold) are the serializer options.
* :class:`MsgpackParser`: the wire format of npm's ``socket.io-msgpack-parser``
  (one MessagePack map per packet, ``{type, nsp, data, id}``, binary data in
  place, sent as one binary Engine.IO message). Needs the ``msgpack`` package:
  ``pip install 'tether[msgpack]'``.

Both decoders keep the same bounds (:class:`~tether.limits.RealtimeLimits`
``max_payload`` and ``max_attachments``, and :data:`.socketio.MAX_DEPTH`) and
raise :class:`~tether.exceptions.PacketError`, and only that, on what they refuse.

>>> parser = JsonParser(default=str)
>>> import datetime
>>> parser.encode(socketio.Packet.event("at", datetime.date(2026, 1, 2)))
['2["at","2026-01-02"]']
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypedDict

from ...exceptions import PacketError
from . import socketio
from .checks import strict_json, too_big
from .fastpath import FastDecoder, JsonOut, ack_text, event_text
from .socketio import DEFAULT_NAMESPACE, MAX_DEPTH, Packet, PacketType

__all__ = [
    "JsonModule",
    "JsonParser",
    "MsgpackParser",
    "PacketDecoder",
    "Parser",
    "SerializerOptions",
    "encode_ack",
    "encode_event",
    "encode_packet",
    "json_out",
    "make_parser",
    "plain",
]


class PacketDecoder(Protocol):
    """Decodes the packets of one session, fed its Engine.IO messages in order."""

    def feed(self, message: str | bytes) -> Packet | None:
        """Take one message; return a packet once whole, else ``None``.

        Raise :class:`~tether.exceptions.PacketError` on anything refused
        (the session should then be closed)."""
        ...


class Parser(Protocol):
    """A Socket.IO parser: what a server or client is given as ``parser=``.

    ``encode`` turns a packet into the Engine.IO ``message`` payloads to send
    in order (``str`` for text, ``bytes`` for binary); ``decoder`` makes the
    decoder of one session, bounded by the limits given.
    """

    def encode(self, packet: Packet) -> list[str | bytes]: ...

    def decoder(self, *, max_payload: int, max_attachments: int) -> PacketDecoder: ...


class JsonModule(Protocol):
    """A JSON module such as :mod:`json` or ``orjson``: ``dumps`` (returning
    ``str`` or UTF-8 ``bytes``) and ``loads`` (raising :class:`ValueError`)."""

    def dumps(self, obj: Any, /, *args: Any, **kwargs: Any) -> str | bytes: ...

    def loads(self, data: str, /, *args: Any, **kwargs: Any) -> Any: ...


class SerializerOptions(TypedDict, total=False):
    """The serializer options of :class:`~tether.realtime.Server` and
    :class:`~tether.realtime.client.Client` (and so of ``tether.sync``'s clients).

    ``parser`` is ``"json"`` (the default), ``"msgpack"`` or a :class:`Parser`;
    ``json`` and ``default`` configure the JSON parser (see :class:`JsonParser`).
    """

    parser: str | Parser
    json: JsonModule
    default: Callable[[Any], Any]


def make_parser(
    parser: str | Parser = "json",
    json: JsonModule | None = None,
    default: Callable[[Any], Any] | None = None,
) -> Parser:
    """The parser the :class:`SerializerOptions` describe.

    >>> make_parser("msgpack", default=str).default is str
    True
    """
    if not isinstance(parser, str):
        if json is not None or default is not None:
            raise ValueError("json= and default= configure the built-in parsers only")
        return parser
    if parser == "json":
        return JsonParser(json=json, default=default)
    if parser == "msgpack":
        if json is not None:
            raise ValueError("json= does not apply to the msgpack parser")
        return MsgpackParser(default=default)
    raise ValueError(f"parser must be 'json', 'msgpack' or a Parser, got {parser!r}")


_PLAIN = (str, int, float, bool, type(None), bytes, bytearray, memoryview)


def plain(parser: Parser, data: Any) -> Any:
    """``data`` with the objects ``parser``'s ``default`` hook handles already
    turned into what they become (lists, dicts and scalars only).

    For broadcasts: an adapter carries the data to other nodes in its own
    format, which knows nothing of the hook. Without a hook, ``data`` itself.

    >>> plain(JsonParser(default=str), ["at", {1.5, 2}])
    ['at', '{1.5, 2}']
    """
    default = getattr(parser, "default", None)
    if default is None:
        return data

    def walk(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"data nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, (list, tuple)):
            return [walk(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return {key: walk(item, depth + 1) for key, item in value.items()}
        return walk(default(value), depth + 1)

    return walk(data, 0)


# --- JSON ---------------------------------------------------------------------


class JsonParser:
    """The Socket.IO v5 text form (:mod:`.socketio`), binary data as attachments.

    ``json`` is the module that writes and reads the data (the stdlib's by
    default, compact and strict); ``orjson`` is faster. ``default`` is called
    with each object the module cannot write and returns one it can, as
    :func:`json.dumps`'s ``default``::

        realtime.Server(json=orjson, default=lambda o: o.isoformat())
    """

    def __init__(
        self, *, json: JsonModule | None = None, default: Callable[[Any], Any] | None = None
    ) -> None:
        self.json = json
        self.default = default
        # The stdlib's encoder and decoder are built once, here and in checks.
        self._out: JsonOut | None = None
        self._dumps: Callable[[Any], str]
        if json is None:
            self._out = JsonOut(default)
            self._dumps = self._out.dumps
        else:
            self._dumps = _json_dumps(json, default)
        self._loads: Callable[[str], Any] = strict_json if json is None else json.loads

    def encode(self, packet: Packet) -> list[str | bytes]:
        text, attachments = socketio.encode(packet, dumps=self._dumps)
        return [text, *attachments]

    def encode_event(
        self,
        name: str,
        args: Sequence[Any],
        namespace: str = DEFAULT_NAMESPACE,
        id: int | None = None,
    ) -> list[str | bytes]:
        """``encode(Packet.event(name, *args, namespace=namespace, id=id))``, the
        same messages or the same error, without building the packet when the
        event is plain JSON (:func:`.fastpath.event_text`). Encode once, then
        send the messages to every recipient.

        >>> JsonParser().encode_event("chat", ["hi"], "/room")
        ['2/room,["chat","hi"]']
        """
        if self._out is not None:
            text = event_text(name, args, namespace, id, self._out)
            if text is not None:
                return [text]
        return self.encode(Packet.event(name, *args, namespace=namespace, id=id))

    def encode_ack(
        self, id: int, args: Sequence[Any], namespace: str = DEFAULT_NAMESPACE
    ) -> list[str | bytes]:
        """``encode(Packet.ack(id, *args, namespace=namespace))``, as :meth:`encode_event`."""
        if self._out is not None:
            text = ack_text(id, args, namespace, self._out)
            if text is not None:
                return [text]
        return self.encode(Packet.ack(id, *args, namespace=namespace))

    def decoder(self, *, max_payload: int, max_attachments: int) -> PacketDecoder:
        return FastDecoder(
            max_payload=max_payload, max_attachments=max_attachments, loads=self._loads
        )


def json_out(parser: Parser) -> JsonOut | None:
    """The fast JSON encoder of ``parser`` when it is the default
    :class:`JsonParser` (stdlib JSON; not a subclass, which may encode
    otherwise): what :func:`.fastpath.event_text` takes. Else ``None``."""
    return parser._out if type(parser) is JsonParser else None


def encode_event(
    parser: Parser,
    name: str,
    args: Sequence[Any],
    namespace: str = DEFAULT_NAMESPACE,
    id: int | None = None,
) -> list[str | bytes]:
    """The messages of ``Packet.event(name, *args, namespace=, id=)`` by any
    parser: its ``encode_event`` if it has one (:meth:`JsonParser.encode_event`),
    else its ``encode``. What a server calls once per event, whatever its parser.

    >>> encode_event(JsonParser(), "hello", (1,))
    ['2["hello",1]']
    """
    fast = getattr(parser, "encode_event", None)
    if fast is not None:
        return fast(name, args, namespace, id)  # type: ignore[no-any-return]
    return parser.encode(Packet.event(name, *args, namespace=namespace, id=id))


def encode_ack(
    parser: Parser, id: int, args: Sequence[Any], namespace: str = DEFAULT_NAMESPACE
) -> list[str | bytes]:
    """The messages of ``Packet.ack(id, *args, namespace=)`` by any parser,
    as :func:`encode_event`."""
    fast = getattr(parser, "encode_ack", None)
    if fast is not None:
        return fast(id, args, namespace)  # type: ignore[no-any-return]
    return parser.encode(Packet.ack(id, *args, namespace=namespace))


def encode_packet(parser: Parser, packet: Packet) -> list[str | bytes]:
    """``parser.encode(packet)``, through :func:`encode_event` or
    :func:`encode_ack` when ``packet`` is an ``EVENT`` or an ``ACK`` (their
    fast paths where the parser has them): the same messages or the same error.

    >>> encode_packet(JsonParser(), Packet.event("hi", namespace="/chat", id=4))
    ['2/chat,4["hi"]']
    """
    kind, data = packet.type, packet.data
    if kind is PacketType.EVENT:
        fast = getattr(parser, "encode_event", None)
        if fast is not None:
            return fast(data[0], data[1:], packet.namespace, packet.id)  # type: ignore[no-any-return]
    elif kind is PacketType.ACK:
        fast = getattr(parser, "encode_ack", None)
        if fast is not None:
            return fast(packet.id, data, packet.namespace)  # type: ignore[no-any-return]
    return parser.encode(packet)


def _json_dumps(module: JsonModule, default: Callable[[Any], Any] | None) -> Callable[[Any], str]:
    def dumps(data: Any) -> str:
        out = module.dumps(data) if default is None else module.dumps(data, default=default)
        # orjson writes UTF-8 bytes; the text form is a str.
        return out.decode() if isinstance(out, (bytes, bytearray)) else out

    return dumps


# --- MessagePack (npm socket.io-msgpack-parser) ----------------------------------

_BINARY = (bytes, bytearray, memoryview)
_LEAVES = (str, int, float, bool, type(None), bytes)
# socket.io-msgpack-parser only knows these (binary data travels in place).
_WIRE_TYPES = {
    PacketType.BINARY_EVENT: PacketType.EVENT,
    PacketType.BINARY_ACK: PacketType.ACK,
}
_MAX_WIRE_TYPE = PacketType.CONNECT_ERROR


def _msgpack() -> Any:
    try:
        return importlib.import_module("msgpack")
    except ImportError:
        raise ImportError(
            "the msgpack parser needs the msgpack package: pip install 'tether[msgpack]'"
        ) from None


class MsgpackParser:
    """The wire format of npm's ``socket.io-msgpack-parser`` (3.x).

    Each packet is one MessagePack map ``{"type", "nsp", "data"?, "id"?}``
    sent as one binary Engine.IO message; bytes travel in place (``bin``), so
    there are no attachments and ``BINARY_EVENT``/``BINARY_ACK`` go out as
    ``EVENT``/``ACK`` (the reference knows types 0 to 4 only). ``default``
    turns what MessagePack cannot hold into what it can, as for JSON.

    From JavaScript peers (notepack.io): ``undefined`` arrives as ``None``,
    an ``ArrayBuffer`` (browsers) as ``bytes``. A ``Date`` arrives as its 8
    bytes: MessagePack extension 0 cannot be told apart from an 8-byte
    ``ArrayBuffer``, so send dates as strings or numbers.
    """

    def __init__(self, *, default: Callable[[Any], Any] | None = None) -> None:
        self._msgpack = _msgpack()
        self.default = default

    def encode(self, packet: Packet) -> list[str | bytes]:
        kind = _WIRE_TYPES.get(packet.type, packet.type)
        obj: dict[str, Any] = {"type": int(kind), "nsp": packet.namespace}
        if packet.data is not None:
            obj["data"] = packet.data
        if packet.id is not None:
            obj["id"] = packet.id
        try:
            out: bytes = self._msgpack.packb(obj, default=self.default, use_bin_type=True)
        except OverflowError as exc:  # an int past 64 bits
            raise ValueError(str(exc)) from None
        return [out]

    def decoder(self, *, max_payload: int, max_attachments: int) -> PacketDecoder:
        return MsgpackDecoder(
            self._msgpack, max_payload=max_payload, max_attachments=max_attachments
        )


def _ext_hook(code: int, data: bytes) -> Any:
    # notepack.io's extension 0: undefined (one zero byte), Date, ArrayBuffer.
    if code != 0:
        raise ValueError(f"unknown MessagePack extension type {code}")
    return None if data == b"\0" else bytes(data)


class MsgpackDecoder:
    """Decodes MessagePack packets (:class:`MsgpackParser`), one per binary message."""

    def __init__(self, msgpack: Any, *, max_payload: int, max_attachments: int) -> None:
        self.max_payload = max_payload
        self.max_attachments = max_attachments
        #: The lists and maps of the last packet decoded, for a caller that
        #: bounds what packets take once decoded.
        self.containers = 0
        self._unpackb = functools.partial(
            msgpack.unpackb,
            raw=False,
            strict_map_key=True,
            ext_hook=_ext_hook,
            timestamp=0,
        )

    def feed(self, message: str | bytes) -> Packet | None:
        if isinstance(message, str):
            raise PacketError("the msgpack parser takes binary messages, got text")
        if not isinstance(message, _BINARY):
            raise PacketError(f"expected bytes, got {type(message).__name__}")
        # Checked before unpacking anything.
        if len(message) > self.max_payload:
            raise PacketError(too_big("packet", len(message), self.max_payload))
        try:
            obj = self._unpackb(message)
        except RecursionError:
            raise PacketError("packet data is nested too deeply") from None
        except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
            raise PacketError(f"invalid MessagePack packet: {exc}") from None
        return self._packet(obj)

    def _packet(self, obj: Any) -> Packet:
        if not isinstance(obj, dict):
            raise PacketError("a MessagePack packet must be a map")
        kind, nsp, data, ack_id = obj.get("type"), obj.get("nsp"), obj.get("data"), obj.get("id")
        if type(kind) is not int or not 0 <= kind <= _MAX_WIRE_TYPE:
            raise PacketError(f"unknown packet type {kind!r}")
        if not isinstance(nsp, str):
            raise PacketError("the packet's namespace must be a string")
        binaries = self._check(data)
        packet_type = PacketType(kind)
        if binaries and packet_type in (PacketType.EVENT, PacketType.ACK):
            packet_type = (
                PacketType.BINARY_EVENT if kind == PacketType.EVENT else PacketType.BINARY_ACK
            )
        try:
            return Packet(packet_type, nsp, data, ack_id)
        except ValueError as exc:
            raise PacketError(str(exc)) from None

    def _check(self, data: Any) -> int:
        """Walk ``data`` level by level: nesting, map keys, leaf types; return
        how many binaries it holds (each counts as an attachment would)."""
        level, depth, binaries, containers = [data], 0, 0, 0
        while level:
            below: list[Any] = []
            for value in level:
                if isinstance(value, list):
                    containers += 1
                    below += value
                elif isinstance(value, dict):
                    if not all(type(key) is str for key in value):
                        raise PacketError("map keys must be strings")
                    containers += 1
                    below += value.values()
                elif isinstance(value, bytes):
                    binaries += 1
                    if binaries > self.max_attachments:
                        raise PacketError(
                            f"more than {self.max_attachments} binaries in one packet"
                        )
                    continue
                elif isinstance(value, _LEAVES):
                    continue
                else:
                    raise PacketError(f"unexpected {type(value).__name__} in packet data")
                if depth == MAX_DEPTH:
                    raise PacketError(f"packet data nested deeper than {MAX_DEPTH} levels")
            depth += 1
            level = below
        self.containers = containers
        return binaries
