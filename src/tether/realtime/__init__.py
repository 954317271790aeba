"""Socket.IO v5 over Engine.IO v4, wire-compatible with the official clients and servers.

The server::

    from tether import realtime

    server = realtime.Server()

    @server.on("chat")
    async def chat(socket, room, text):
        await socket.to(room).emit("chat", text)

    asyncio.run(realtime.serve(server, "127.0.0.1", 8000))

Laid out by layer and side:

* :mod:`tether.realtime.protocol`: sans-I/O like :mod:`tether.protocol`: the
  Engine.IO and Socket.IO codecs (:mod:`~tether.realtime.protocol.engineio`,
  :mod:`~tether.realtime.protocol.socketio`) and the room registry
  (:mod:`~tether.realtime.protocol.rooms`);
* :mod:`tether.realtime.server`: Engine.IO sessions over polling and
  WebSocket, namespaces, middleware, dispatch, ``Socket`` and
  ``BroadcastOperator``, served standalone or under an ASGI server;
* :mod:`tether.realtime.client`: the :class:`Client`;
* :mod:`tether.realtime.adapters`: rooms, broadcast and recovery across
  processes: the :class:`Adapter` interface, in memory by default, and Redis.

Every bound one client can make the server hold is a :class:`RealtimeLimits`
field, given to ``Server(limits=...)`` or as a keyword option
(``Server(max_payload=...)``).

The codecs both define a ``Packet`` and a ``PacketType``; import the modules,
not the names, to keep them apart::

    from tether.realtime.protocol import engineio, socketio

    text, attachments = socketio.encode(socketio.Packet.event("hello", 1))
    frames = [engineio.encode_packet(engineio.Packet(engineio.PacketType.MESSAGE, text))]

Every decoder raises :class:`~tether.exceptions.PacketError` on bad input.
"""

from __future__ import annotations

from ..exceptions import AckTimeout, ConnectionRefused, Disconnected, PacketError
from ..limits import RealtimeLimits
from .adapters.base import Adapter, BroadcastOptions, RecoveryOptions, SocketInfo
from .client import Client
from .server import BroadcastOperator, Namespace, Server, Socket, serve
from .server.by_sid import ClassNamespace
from .server.observe import Observer

# The public API. The codecs stay in their modules (engineio.encode_packet,
# socketio.decode...): both define a Packet and a PacketType, so their names
# would collide here, and only the layers above use them.

__all__ = [
    "AckTimeout",
    "Adapter",
    "BroadcastOperator",
    "BroadcastOptions",
    "ClassNamespace",
    "Client",
    "ConnectionRefused",
    "Disconnected",
    "Namespace",
    "Observer",
    "PacketError",
    "RealtimeLimits",
    "RecoveryOptions",
    "Server",
    "Socket",
    "SocketInfo",
    "serve",
]
