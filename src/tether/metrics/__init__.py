"""Metrics: what tether's servers count, read as plain Python or served to Prometheus.

Every :class:`tether.Server` counts into its :class:`WebSocketMetrics`
(``server.metrics``); a realtime server's Socket.IO and Engine.IO figures
are a :class:`~tether.metrics.realtime.RealtimeMetrics`, installed as an
observer. ``snapshot()`` gives any of them as a dict; :class:`MetricsEndpoint`
serves them in the Prometheus text format on the server's own port
(``prometheus_client``, the ``tether[metrics]`` extra), and :func:`asgi_app`
under an ASGI server. Each metric is described in docs/metrics.md.

The counting needs only the standard library and no locks: it happens on
the event loop, where it is read too.
"""

from __future__ import annotations

from .core import Counter, Gauge, Histogram, MetricSet
from .endpoint import MetricsEndpoint, asgi_app
from .lag import LoopLag
from .websocket import WebSocketMetrics

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "LoopLag",
    "MetricSet",
    "MetricsEndpoint",
    "WebSocketMetrics",
    "asgi_app",
]
