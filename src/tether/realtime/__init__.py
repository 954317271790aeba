"""Socket.IO v5 over Engine.IO v4, wire-compatible with the official clients and servers.

The server::

    from tether import realtime

    server = realtime.Server()

    @server.on("chat")
    async def chat(socket, room, text):
        await socket.to(room).emit("chat", text)

    asyncio.run(realtime.serve(server, "127.0.0.1", 8000))

Its parts: :mod:`~tether.realtime.server` (namespaces, middleware, dispatch),
:mod:`~tether.realtime.sockets` (``Socket`` and ``BroadcastOperator``),
:mod:`~tether.realtime.adapter` (rooms, broadcast, recovery; in memory by
default), :mod:`~tether.realtime.engine` (Engine.IO sessions over polling
and WebSocket), :mod:`~tether.realtime.serving` and
:mod:`~tether.realtime.asgi` (standalone or under an ASGI server). Every bound
one client can make the server hold is a :class:`RealtimeLimits` field, given
to ``Server(limits=...)`` or as a keyword option (``Server(max_payload=...)``).

Underneath, the packet codecs, sans-I/O like :mod:`tether.protocol`:

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

from ..exceptions import AckTimeout, ConnectionRefused, Disconnected, PacketError
from ..limits import RealtimeLimits
from .adapter import Adapter, BroadcastOptions, RecoveryOptions, SocketInfo
from .client import Client
from .server import Namespace, Server
from .serving import serve
from .sockets import BroadcastOperator, Socket

# The public API. The codecs stay in their modules (engineio.encode_packet,
# socketio.decode...): both define a Packet and a PacketType, so their names
# would collide here, and only the layers above use them.

__all__ = [
    "AckTimeout",
    "Adapter",
    "BroadcastOperator",
    "BroadcastOptions",
    "Client",
    "ConnectionRefused",
    "Disconnected",
    "Namespace",
    "PacketError",
    "RealtimeLimits",
    "RecoveryOptions",
    "Server",
    "Socket",
    "SocketInfo",
    "serve",
]
