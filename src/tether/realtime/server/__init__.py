"""The Socket.IO server: Engine.IO sessions, namespaces, sockets, serving.

* :mod:`.engine`: Engine.IO sessions over long-polling and WebSocket;
* :mod:`.server`: :class:`Server` and :class:`Namespace`, dispatch of packets
  to handlers;
* :mod:`.sockets`: :class:`Socket` and :class:`BroadcastOperator`, what
  handlers hold;
* :mod:`.serving`, :mod:`.asgi`, :mod:`.static`: the ways to serve it, on
  tether's own server or under an ASGI server.
"""

from __future__ import annotations

from .server import Namespace, Server
from .serving import serve
from .sockets import BroadcastOperator, Socket

__all__ = ["BroadcastOperator", "Namespace", "Server", "Socket", "serve"]
