"""What nodes say to each other through Redis: typed messages, no I/O.

Every message travels as one Pub/Sub payload (and, for events kept for
connection state recovery, as one Redis Stream entry)::

    <offset>\\n<JSON header>[\\0<attachments>]

* ``offset`` is the stream id of a stored event, empty otherwise. The Lua
  script that stores and publishes an event writes it (the id only exists
  once ``XADD`` ran), so the offset a client sees is the stream id.
* the header is ``[kind, {fields}]``; ``bytes`` anywhere in the fields are
  replaced by Socket.IO placeholders (:func:`tether.realtime.protocol.socketio.deconstruct`)
  and appended after a NUL (which JSON text never contains), each as a 4-byte
  big-endian length and its bytes.

Channels (``#`` separated, like the socket.io Redis adapter's)::

    <prefix>#<nsp>#              every socket of a namespace
    <prefix>#<nsp>#<room>#       the members of a room (a sid is a room)
    <prefix>#node#<node>         one node: replies to its requests, its own sockets
    <prefix>#server              every node: server-side events
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ....exceptions import PacketError
from ...protocol import socketio
from ..base import BroadcastOptions, SocketInfo

__all__ = [
    "AckRequest",
    "Broadcast",
    "Channels",
    "DataRequest",
    "DisconnectRequest",
    "FetchRequest",
    "Message",
    "Reply",
    "Request",
    "RoomsRequest",
    "ServerEvent",
    "decode",
    "encode",
    "opts_from_wire",
    "opts_to_wire",
    "socket_info_from_wire",
    "socket_info_to_wire",
]

_LENGTH = struct.Struct(">I")


class Channels:
    """Channel names under one key prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def namespace(self, nsp: str) -> str:
        return f"{self.prefix}#{nsp}#"

    def room(self, nsp: str, room: str) -> str:
        return f"{self.prefix}#{nsp}#{room}#"

    def node(self, node: str) -> str:
        return f"{self.prefix}#node#{node}"

    @property
    def server(self) -> str:
        return f"{self.prefix}#server"

    def for_rooms(self, nsp: str, rooms: Iterable[str]) -> list[str]:
        """Where a message to ``rooms`` (everyone when empty) is published; a
        message to sids goes on their rooms' channels (each socket's node
        listens to its own room) and is delivered by identity there."""
        names = sorted(rooms)
        if not names:
            return [self.namespace(nsp)]
        return [self.room(nsp, room) for room in names]


def opts_to_wire(opts: BroadcastOptions) -> dict[str, Any]:
    wire: dict[str, Any] = {}
    if opts.rooms:
        wire["r"] = sorted(opts.rooms)
    if opts.except_rooms:
        wire["x"] = sorted(opts.except_rooms)
    if opts.volatile:
        wire["v"] = True
    if opts.sids:
        wire["s"] = sorted(opts.sids)
    return wire


def opts_from_wire(wire: dict[str, Any]) -> BroadcastOptions:
    return BroadcastOptions(
        frozenset(wire.get("r", ())),
        frozenset(wire.get("x", ())),
        bool(wire.get("v", False)),
        sids=frozenset(wire.get("s", ())),
    )


def socket_info_to_wire(info: SocketInfo) -> dict[str, Any]:
    return {
        "sid": info.sid,
        "nsp": info.namespace,
        "rooms": sorted(info.rooms),
        "data": info.data,
        "handshake": info.handshake,
    }


def socket_info_from_wire(wire: dict[str, Any]) -> SocketInfo:
    return SocketInfo(
        wire["sid"], wire["nsp"], frozenset(wire["rooms"]), wire["data"], wire["handshake"]
    )


# -- the messages --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message; ``kind`` names it on the wire."""

    kind: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Broadcast(Message):
    """An event for the sockets ``opts`` selects in ``nsp``.

    ``origin`` is set when the sending node already delivered it to its own
    sockets (events not kept for recovery), so that it skips its own copy.
    """

    kind: ClassVar[str] = "b"
    id: str
    nsp: str
    data: list[Any]
    opts: dict[str, Any]
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Request(Message):
    """Something every node holding selected sockets answers with :class:`Reply`."""

    id: str
    reply_to: str
    nsp: str
    opts: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AckRequest(Request):
    """A broadcast whose sockets are each expected to acknowledge."""

    kind: ClassVar[str] = "a"
    data: list[Any] = field(default_factory=list)
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class FetchRequest(Request):
    kind: ClassVar[str] = "f"


@dataclass(frozen=True, slots=True)
class RoomsRequest(Request):
    """Make the selected sockets join (or leave) ``rooms``."""

    kind: ClassVar[str] = "j"
    rooms: list[str] = field(default_factory=list)
    join: bool = True


@dataclass(frozen=True, slots=True)
class DisconnectRequest(Request):
    kind: ClassVar[str] = "d"
    close: bool = False


@dataclass(frozen=True, slots=True)
class DataRequest(Request):
    """Replace the ``data`` of the selected socket (``save_session``); the
    reply's ``items`` are the sids whose data was replaced."""

    kind: ClassVar[str] = "w"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """A node's answer to request ``id``.

    A *receipt* (``receipt=True``) is sent once per copy of the request a node
    got (the publisher knows how many copies Redis delivered), saying how many
    ``expect``-ed values will follow (acks) and carrying ``items`` (fetched
    sockets). Later replies carry one acknowledgement each in ``items``.
    """

    kind: ClassVar[str] = "r"
    id: str
    receipt: bool
    expect: int = 0
    items: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServerEvent(Message):
    """``server.server_side_emit(event, *args)``: for every other node."""

    kind: ClassVar[str] = "s"
    origin: str
    event: str
    args: list[Any]


_KINDS: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        Broadcast,
        AckRequest,
        FetchRequest,
        RoomsRequest,
        DisconnectRequest,
        DataRequest,
        Reply,
        ServerEvent,
    )
}


def encode(message: Message) -> bytes:
    """The payload body of ``message`` (without the offset line)."""
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    header, attachments = socketio.deconstruct([message.kind, fields])
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if not attachments:
        return text
    parts = [text, b"\0"]
    for attachment in attachments:
        parts += [_LENGTH.pack(len(attachment)), attachment]
    return b"".join(parts)


def decode(body: bytes) -> Message:
    """The message whose payload body is ``body``; :class:`PacketError` if malformed."""
    text, nul, rest = body.partition(b"\0")
    attachments: list[bytes] = []
    view = memoryview(rest)
    while nul and view:
        if len(view) < _LENGTH.size:
            raise PacketError("truncated attachment length")
        (size,) = _LENGTH.unpack(view[: _LENGTH.size])
        chunk = view[_LENGTH.size : _LENGTH.size + size]
        if len(chunk) != size:
            raise PacketError("truncated attachment")
        attachments.append(bytes(chunk))
        view = view[_LENGTH.size + size :]
    try:
        header = json.loads(text)
        kind, fields = header
        if attachments:
            fields = socketio.reconstruct(fields, attachments)
        return _KINDS[kind](**fields)
    except (ValueError, TypeError, KeyError) as exc:
        raise PacketError(f"bad adapter message: {exc}") from None


def split_payload(payload: bytes) -> tuple[str | None, bytes]:
    """``(offset or None, body)`` of a Pub/Sub payload or stream entry."""
    offset, _, body = payload.partition(b"\n")
    return (offset.decode() or None), body
