"""What travels between a :class:`~.adapter.ClusterAdapter` and its
:class:`~.hub.ClusterHub`: length-prefixed frames, each one message. No I/O.

A frame is::

    <u32 body length> <u32 header length> <header: JSON object> (<u32 length> <attachment>)*

The header is a JSON object whose ``"t"`` names the message (the kinds
are in :mod:`.messages`); ``bytes`` anywhere in it (binary Socket.IO
attachments) are replaced by Socket.IO placeholders
(:func:`tether.realtime.protocol.socketio.deconstruct`) and follow the header,
each with its length. Lengths are big-endian. A frame longer than the bound
both ends were given (:data:`MAX_FRAME` by default) is refused before it is
buffered: the sender drops the message, the receiver drops the link.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, TypeVar

from ....exceptions import PacketError
from ....limits import MiB
from ...protocol import socketio

__all__ = [
    "HEAD",
    "MAX_FRAME",
    "FrameTooLarge",
    "decode",
    "encode",
    "frame_length",
    "from_wire",
    "to_wire",
]

#: The largest frame (its body, in bytes) an adapter sends or a hub accepts
#: by default. An event is at most ``max_payload`` (1 MB) when a client sent
#: it, but a server may emit more, and a ``fetch_sockets`` reply carries every
#: selected socket's handshake: 16 MiB leaves room for ~10,000 sockets of a
#: kilobyte each, while a worker that goes wrong cannot make the hub buffer
#: more than this for one message.
MAX_FRAME = 16 * MiB

_U32 = struct.Struct(">I")
#: Bytes of the length prefix that precedes every frame body.
HEAD = _U32.size


class FrameTooLarge(PacketError):
    """A frame is longer than the bound."""


def encode(message: dict[str, Any], max_frame: int = MAX_FRAME) -> bytes:
    """The whole frame (length prefix included) carrying ``message``;
    :class:`FrameTooLarge` past ``max_frame``, :class:`TypeError` or
    :class:`ValueError` if it is not JSON-able."""
    attachments: list[bytes] = []
    try:
        # Most messages carry no bytes: JSON refuses bytes, and only then is
        # the message walked for attachments.
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    except TypeError:
        header, attachments = socketio.deconstruct(message)
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    parts = [b"", _U32.pack(len(text)), text]
    for attachment in attachments:
        parts += [_U32.pack(len(attachment)), attachment]
    size = sum(map(len, parts))
    if size > max_frame:
        raise FrameTooLarge(f"a {size}-byte frame is over the {max_frame}-byte bound")
    parts[0] = _U32.pack(size)
    return b"".join(parts)


def frame_length(head: bytes, max_frame: int = MAX_FRAME) -> int:
    """The body length a frame's 4-byte prefix announces; :class:`FrameTooLarge`
    past ``max_frame`` (checked before the body is read)."""
    size: int = _U32.unpack(head)[0]
    if size > max_frame:
        raise FrameTooLarge(f"a {size}-byte frame is over the {max_frame}-byte bound")
    return size


def decode(body: bytes) -> dict[str, Any]:
    """The message a frame body carries; :class:`PacketError` if malformed."""
    view = memoryview(body)
    chunks: list[bytes] = []
    while view:
        if len(view) < HEAD:
            raise PacketError("truncated length in a cluster frame")
        (size,) = _U32.unpack(view[:HEAD])
        chunk = view[HEAD : HEAD + size]
        if len(chunk) != size:
            raise PacketError("truncated cluster frame")
        chunks.append(bytes(chunk))
        view = view[HEAD + size :]
    if not chunks:
        raise PacketError("empty cluster frame")
    try:
        message = json.loads(chunks[0])
        if chunks[1:]:
            message = socketio.reconstruct(message, chunks[1:])
    except ValueError as exc:
        raise PacketError(f"bad cluster frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise PacketError("a cluster frame must carry an object with a kind")
    return message


_T = TypeVar("_T")


def to_wire(value: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass of the adapter interface (:class:`BroadcastOptions`,
    :class:`SocketInfo`, :class:`SavedSession`) as JSON: its fields by name,
    sets as sorted lists, fields at their default left out.

    >>> from tether.realtime.adapters.interface import BroadcastOptions
    >>> to_wire(BroadcastOptions(rooms=frozenset({"b", "a"})))
    {'rooms': ['a', 'b']}
    """
    wire: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name in skip or item == _default(f):
            continue
        wire[f.name] = sorted(item) if isinstance(item, frozenset) else item
    return wire


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def from_wire(cls: type[_T], wire: dict[str, Any]) -> _T:
    """The dataclass :func:`to_wire` made ``wire`` from (unknown keys are
    ignored; :class:`TypeError` if a field without a default is missing)."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in wire:
            item = wire[f.name]
            fields[f.name] = frozenset(item) if str(f.type).startswith("frozenset") else item
    return cls(**fields)
