"""The Socket.IO server: Engine.IO sessions, namespaces, sockets, serving.

* :mod:`.engine`: the Engine.IO endpoint: request checks, the handshake,
  long-polling requests, WebSockets routed to their sessions;
* :mod:`.session`: one Engine.IO session (queue, heartbeat, upgrade);
* :mod:`.origins`: the origin checks and CORS headers;
* :mod:`.transport`: what a session needs of a WebSocket (a ``Protocol``
  that :class:`tether.Connection` and the ASGI websocket both satisfy);
* :mod:`.connection`: one client's Socket.IO state over its session: packets
  decoded and bounded, namespaces admitted (middleware, recovery), handlers
  run (:mod:`.runner`);
* :mod:`.namespace`: :class:`Namespace`, its handlers and middleware;
* :mod:`.server`: :class:`Server`, and the sockets it offers its adapter
  (:class:`~tether.realtime.adapters.interface.LocalSockets`);
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
