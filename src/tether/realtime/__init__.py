"""Socket.IO v5 over Engine.IO v4, wire-compatible with the official clients and servers.

For now only the packet codecs, sans-I/O like :mod:`tether.protocol`:

* :mod:`tether.realtime.engineio`: Engine.IO packets, WebSocket frames and
  long-polling payloads, the open handshake and the upgrade probe;
* :mod:`tether.realtime.socketio`: Socket.IO packets, their text form and
  their binary attachments;
* :mod:`tether.realtime.rooms`: which sockets are in which rooms, and who a
  broadcast reaches.

Both modules define a ``Packet`` and a ``PacketType``; import the modules,
not the names, to keep them apart::

    from tether.realtime import engineio, socketio

    text, attachments = socketio.encode(socketio.Packet.event("hello", 1))
    frames = [engineio.encode_packet(engineio.Packet(engineio.PacketType.MESSAGE, text))]

Every decoder raises :class:`~tether.exceptions.PacketError` on bad input.
"""

from __future__ import annotations

from ..exceptions import PacketError
from . import engineio, socketio
from .engineio import Handshake, decode_packet, decode_payload, encode_packet, encode_payload
from .socketio import Decoder, decode, deconstruct, encode, has_binary, reconstruct

__all__ = [
    "Decoder",
    "Handshake",
    "PacketError",
    "decode",
    "decode_packet",
    "decode_payload",
    "deconstruct",
    "encode",
    "encode_packet",
    "encode_payload",
    "engineio",
    "has_binary",
    "reconstruct",
    "socketio",
]
