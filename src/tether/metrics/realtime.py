"""What a realtime (Socket.IO) server counts: :class:`RealtimeMetrics`.

An :class:`~tether.realtime.server.observe.Observer`: install it with
:meth:`RealtimeMetrics.install` (``realtime.serve(..., metrics=...)`` does
it for you). What the server holds anyway (open sessions by transport,
sockets by namespace, the Engine.IO endpoint's and the Redis adapter's
counters) is read at each scrape, not counted twice. Unlike the rest of
:mod:`tether.metrics`, this module belongs to the realtime layer.
"""

from __future__ import annotations

import sys
from collections import Counter as Tally
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..realtime.server.observe import Observer
from ..realtime.server.observe import Session as ObservedSession
from ..realtime.server.observe import Socket as ObservedSocket
from ..realtime.server.session import POLICY_VIOLATION, SLOW_CLIENT
from .core import Counter, Family, Gauge, Histogram, Metric, MetricSet, counters
from .lag import LoopLag

if TYPE_CHECKING:
    from ..realtime.adapters.base import Adapter, BroadcastOptions
    from ..realtime.server.engine import EngineServer

__all__ = ["Observed", "RealtimeMetrics"]

# Session close reasons that are a limit being hit.
_LIMITS = {SLOW_CLIENT: "max_outgoing_bytes", POLICY_VIOLATION: "max_events_per_second"}


@runtime_checkable
class Observed(Protocol):
    """What :class:`RealtimeMetrics` needs of a :class:`tether.realtime.Server`."""

    @property
    def engine(self) -> EngineServer: ...

    @property
    def namespaces(self) -> Mapping[str, Any]: ...

    @property
    def adapter(self) -> Adapter: ...

    @property
    def observers(self) -> tuple[Observer, ...]: ...

    def observe(self, observer: Observer) -> Observer: ...


class RealtimeMetrics(Observer, MetricSet):
    """The metrics of one :class:`tether.realtime.Server` (docs/metrics.md lists them).

    Made and installed by :meth:`install`; ``snapshot()`` reads them all.
    """

    def __init__(self, server: Observed, *, loop_lag: bool = True) -> None:
        self.server = server
        self.sessions_open = Gauge(
            "tether_realtime_sessions_open",
            "Engine.IO sessions open, by transport",
            "transport",
            read=self._sessions_by_transport,
        )
        self.sockets_open = Gauge(
            "tether_realtime_sockets_open",
            "Socket.IO sockets connected, by namespace",
            "namespace",
            read=self._sockets_by_namespace,
        )
        self.sessions_opened = Counter(
            "tether_realtime_sessions_opened_total",
            "Engine.IO sessions opened, by first transport",
            "transport",
        )
        self.sessions_closed = Counter(
            "tether_realtime_sessions_closed_total",
            "Engine.IO sessions closed, by reason",
            "reason",
        )
        self.sockets_connected = Counter(
            "tether_realtime_sockets_connected_total",
            "Sockets admitted to a namespace",
            "namespace",
        )
        self.recoveries = Counter(
            "tether_realtime_recoveries_total",
            "Connection-state recoveries asked for, by result",
            "result",
        )
        self.events_received = Counter(
            "tether_realtime_events_received_total", "EVENT packets from clients", "namespace"
        )
        self.events_sent = Counter(
            "tether_realtime_events_sent_total",
            "Events the application emitted (a broadcast counts once)",
            "namespace",
        )
        self.limit_hits = Counter(
            "tether_realtime_limit_hits_total", "Sessions closed by a limit", "limit"
        )
        self.ack_rtt = Histogram(
            "tether_realtime_ack_round_trip_seconds",
            "From an event sent with an ack id to the client's ack",
        )
        # The same metric as tether.Server's: under realtime.serve that one
        # samples the loop already (loop_lag=False here).
        self.loop_lag = Histogram(
            "tether_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 0.5 s)",
        )
        #: Engine.IO messages in (count, and characters/bytes), and out.
        self.in_messages = 0
        self.in_bytes = 0
        self.out_messages = 0
        self.out_bytes = 0
        self.lag = LoopLag(self.loop_lag) if loop_lag else None

    @classmethod
    def install(cls, server: Observed, *, loop_lag: bool = True) -> RealtimeMetrics:
        """The metrics of ``server``: made and installed as its observer the
        first time, the same object afterwards. ``loop_lag``: whether they
        sample the event loop's lag (not needed next to a tether.Server's)."""
        for observer in server.observers:
            if isinstance(observer, cls):
                return observer
        metrics = cls(server, loop_lag=loop_lag)
        server.observe(metrics)
        return metrics

    # -- what the server holds, read at each scrape -----------------------------------

    def _sessions_by_transport(self) -> dict[str, float]:
        counts = Tally(session.transport for session in self.server.engine.sessions.values())
        return {transport: counts.get(transport, 0) for transport in ("polling", "websocket")}

    def _sockets_by_namespace(self) -> dict[str, float]:
        return {name: len(nsp.sockets) for name, nsp in self.server.namespaces.items()}

    def metrics(self) -> Iterator[Metric]:
        engine = self.server.engine
        yield self.sessions_open
        yield self.sessions_opened
        yield self.sessions_closed
        yield engine.polling_requests
        yield engine.upgrades
        yield engine.refused
        yield self.sockets_open
        yield self.sockets_connected
        yield self.recoveries
        yield self.events_received
        yield self.events_sent
        yield self.limit_hits
        yield self.ack_rtt
        if self.lag is not None:
            yield self.loop_lag
        yield from self._redis()

    def _redis(self) -> Iterator[Metric]:
        """The Redis adapter's figures, when the server uses one."""
        adapter = self.server.adapter
        stats = getattr(adapter, "stats", None)
        module = sys.modules.get("tether.realtime.adapters.redis.requests")
        requests = module.requests_of(adapter) if module is not None else None
        if stats is None or requests is None:
            return
        for name, text, value in (
            ("published", "Messages published to Redis", stats.published),
            ("publish_failures", "Messages that could not be published", stats.publish_failures),
            ("received", "Messages received from Redis", stats.received),
            ("reconnects", "Pub/Sub connections re-established", stats.reconnects),
        ):
            counter = Counter(f"tether_redis_{name}_total", text)
            counter.value = value
            yield counter
        yield requests.round_trips
        yield requests.timeouts

    def families(self) -> list[Family]:
        plain = [
            ("messages_received", "Engine.IO messages received", self.in_messages),
            ("message_bytes_received", "Characters/bytes of the messages received", self.in_bytes),
            ("messages_sent", "Engine.IO messages queued for clients", self.out_messages),
            ("message_bytes_sent", "Characters/bytes of the messages sent", self.out_bytes),
        ]
        rows = [(f"tether_realtime_{name}_total", text, value) for name, text, value in plain]
        return counters(rows) + super().families()

    # -- the observer's hooks -------------------------------------------------------

    def server_started(self) -> None:
        if self.lag is not None:
            self.lag.start()

    def server_stopping(self) -> None:
        if self.lag is not None:
            self.lag.stop()

    def session_opened(self, session: ObservedSession) -> None:
        if self.lag is not None:
            self.lag.start()  # if installed after server_started (no effect when on)
        self.sessions_opened.inc(session.transport)

    def session_closed(self, session: ObservedSession, reason: str) -> None:
        self.sessions_closed.inc(reason)
        limit = _LIMITS.get(reason)
        if limit is not None:
            self.limit_hits.inc(limit)

    def message_received(self, session: ObservedSession, size: int) -> None:
        self.in_messages += 1
        self.in_bytes += size

    def messages_sent(self, count: int, size: int) -> None:
        self.out_messages += count
        self.out_bytes += count * size

    def socket_connected(self, socket: ObservedSocket, recovered: bool) -> None:
        self.sockets_connected.inc(socket.nsp)

    def recovery(self, nsp: str, succeeded: bool) -> None:
        self.recoveries.inc("succeeded" if succeeded else "failed")

    # The two hooks of every event: the dict updated here, not through inc(),
    # to save a call per event.

    def event_received(self, socket: ObservedSocket, event: str, args: Sequence[Any]) -> None:
        counts = self.events_received.values
        # The server's Socket holds its namespace: its name read there, not
        # through the nsp property (a function call per event on Python 3.11).
        nsp = socket.namespace.name  # type: ignore[attr-defined]
        counts[nsp] = counts.get(nsp, 0) + 1

    def event_sent(
        self,
        nsp: str,
        event: str,
        args: Sequence[Any],
        *,
        sid: str | None = None,
        opts: BroadcastOptions | None = None,
    ) -> None:
        # The hook's own signature: no tuple and dict built for *args, **kwargs.
        counts = self.events_sent.values
        counts[nsp] = counts.get(nsp, 0) + 1

    def ack_round_trip(self, socket: ObservedSocket, seconds: float) -> None:
        self.ack_rtt.observe(seconds)
