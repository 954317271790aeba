"""The index page's live panel: connections and messages per demo, from :mod:`tether.metrics`.

The chat's figures are its realtime server's :class:`~tether.metrics.realtime.RealtimeMetrics`
(Engine.IO messages in and out, sockets in the chat's namespace). The ticker and
the game are raw WebSocket endpoints of the one :class:`tether.Server`; each
has a :class:`~tether.metrics.WebSocketMetrics` of its own, which its
connections count into (``connection.metrics``) instead of the server's, with
``count_sends`` on: the panel wants messages out too, and two demos' worth of
counting costs nothing that matters.

``/stats.json`` gives counters, not rates: the page computes messages per
second from two readings, as Prometheus' ``rate()`` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..connection import Connection
from ..metrics import WebSocketMetrics
from ..metrics.realtime import RealtimeMetrics
from ..protocol.http import Headers, Response
from ..realtime import Server as RealtimeServer
from .chat import NAMESPACE

__all__ = ["PATH", "DemoStats"]

#: Where the index page reads the figures.
PATH = "/stats.json"


class DemoStats:
    """What the panel shows, per demo: open connections, messages received and sent."""

    def __init__(self, chat: RealtimeServer, raw: tuple[str, ...] = ("ticker", "game")) -> None:
        self.chat = RealtimeMetrics.install(chat, loop_lag=False)
        self.open: dict[str, int] = dict.fromkeys(raw, 0)
        self.raw = {name: WebSocketMetrics(self._reader(name), count_sends=True) for name in raw}

    def _reader(self, demo: str) -> Callable[[], float]:
        return lambda: self.open[demo]

    def adopt(self, demo: str, connection: Connection) -> None:
        """Count ``connection`` as one of ``demo``'s from now on (until :meth:`release`)."""
        connection.metrics = self.raw[demo]
        self.open[demo] += 1

    def release(self, demo: str) -> None:
        """One connection of ``demo`` has ended."""
        self.open[demo] -= 1

    def snapshot(self) -> dict[str, Any]:
        """The figures as ``/stats.json`` gives them."""
        chat = self.chat.snapshot()
        sockets: Any = chat["tether_realtime_sockets_open"]
        demos = {
            "chat": {
                "connections": int(sockets.get(NAMESPACE, 0)),
                "received": chat["tether_realtime_messages_received_total"],
                "sent": chat["tether_realtime_messages_sent_total"],
            }
        }
        for name, metrics in self.raw.items():
            figures = metrics.snapshot()
            demos[name] = {
                "connections": int(figures["tether_connections_open"]),  # type: ignore[call-overload]
                "received": figures["tether_messages_received_total"],
                "sent": figures["tether_messages_sent_total"],
            }
        return {"time": time.monotonic(), "demos": demos}

    def response(self) -> Response:
        body = json.dumps(self.snapshot(), separators=(",", ":")).encode()
        headers = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return Response(200, "OK", headers, body)
