"""What a :class:`tether.Server` counts: :class:`WebSocketMetrics`.

Every server has one, as ``server.metrics``, always counting; reading it
costs nothing until it is read. The counters of the message path are plain
ints added to once per socket read and once per broadcast (not per
recipient), which keeps them under 3 % of a small-message echo
(docs/metrics.md, "What it costs"); those of each message sent would not,
and are off unless :attr:`WebSocketMetrics.count_sends` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .core import Counter, Family, Gauge, Histogram, Metric, MetricSet, counters
from .lag import LoopLag

__all__ = ["LIMIT_REASONS", "UNCOUNTED", "WebSocketMetrics"]

#: Refusal reasons that are a limit being hit (they also count in
#: ``tether_limit_hits_total``).
LIMIT_REASONS = frozenset({"max_connections_per_ip"})


class WebSocketMetrics(MetricSet):
    """The metrics of one :class:`tether.Server` (see docs/metrics.md for each).

    ``connections``: how to read the number of open WebSocket connections.
    """

    __slots__ = (
        "broadcast_deliveries",
        "bytes_received",
        "bytes_sent",
        "closes",
        "connections",
        "count_sends",
        "handshakes_accepted",
        "handshakes_refused",
        "lag",
        "limit_hits",
        "loop_lag",
        "messages_received",
        "messages_sent",
        "slow_clients",
    )

    def __init__(
        self, connections: Callable[[], float] = lambda: 0, *, count_sends: bool = False
    ) -> None:
        #: Whether messages_sent and bytes_sent are counted: off by default, as
        #: two counters per message sent cost ~3 % of a small-message echo.
        self.count_sends = count_sends
        #: Messages (text or binary, after reassembly) received on open connections.
        self.messages_received = 0
        #: With count_sends: messages sent by send()/send_nowait() and broadcast().
        self.messages_sent = 0
        #: Bytes read from the socket after the opening handshake (frames, on the wire).
        self.bytes_received = 0
        #: Frame bytes written for the messages counted in messages_sent.
        self.bytes_sent = 0
        #: Connections a tether.broadcast() wrote to.
        self.broadcast_deliveries = 0
        self.connections = Gauge(
            "tether_connections_open", "WebSocket connections open", read=connections
        )
        self.handshakes_accepted = Counter(
            "tether_handshakes_accepted_total", "Opening handshakes answered 101"
        )
        self.handshakes_refused = Counter(
            "tether_handshakes_refused_total",
            "Requests answered with an HTTP error instead of an upgrade",
            "reason",
        )
        self.slow_clients = Counter(
            "tether_slow_clients_total",
            "Broadcast recipients above write_high_water: skipped, or closed with 1008",
            "action",
        )
        self.closes = Counter(
            "tether_closes_total",
            "Closed WebSocket connections by close code (1006: no close frame)",
            "code",
        )
        self.limit_hits = Counter(
            "tether_limit_hits_total", "Connections refused or closed by a limit", "limit"
        )
        self.loop_lag = Histogram(
            "tether_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 0.5 s)",
        )
        #: Samples loop_lag while the server runs (started and stopped by it).
        self.lag = LoopLag(self.loop_lag)

    def sent(self, size: int) -> None:
        """Count one message of ``size`` frame bytes sent (with :attr:`count_sends`)."""
        self.messages_sent += 1
        self.bytes_sent += size

    def refused(self, reason: str) -> None:
        """Count a handshake refused for ``reason`` (and a limit hit, for a limit);
        nothing for ""."""
        if not reason:
            return
        self.handshakes_refused.inc(reason)
        if reason in LIMIT_REASONS:
            self.limit_hits.inc(reason)

    def closed(self, code: int, limit: str | None = None) -> None:
        """Count a connection closed with ``code``; ``limit``: the limit that closed it."""
        self.closes.inc(str(code))
        if limit is not None:
            self.limit_hits.inc(limit)

    def metrics(self) -> Iterator[Metric]:
        yield self.connections
        yield self.handshakes_accepted
        yield self.handshakes_refused
        yield self.slow_clients
        yield self.closes
        yield self.limit_hits
        yield self.loop_lag

    def families(self) -> list[Family]:
        plain = [
            ("tether_messages_received_total", "Messages received", self.messages_received),
            ("tether_messages_sent_total", "Messages sent", self.messages_sent),
            (
                "tether_bytes_received_total",
                "Bytes received after the handshake",
                self.bytes_received,
            ),
            ("tether_bytes_sent_total", "Frame bytes sent for the messages sent", self.bytes_sent),
            (
                "tether_broadcast_deliveries_total",
                "Connections written to by tether.broadcast()",
                self.broadcast_deliveries,
            ),
        ]
        return counters(plain) + super().families()


#: What client connections, and server connections not yet handed their
#: server's, count into: never read.
UNCOUNTED = WebSocketMetrics()
