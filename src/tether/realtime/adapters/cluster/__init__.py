"""The cluster adapter: the worker processes of one machine as one server,
without a broker.

A :class:`ClusterHub` runs in the supervisor's event loop and listens on a
Unix-domain socket; each worker's :class:`ClusterAdapter` connects to it::

    hub = ClusterHub(path)                                 # the supervisor
    await hub.start()
    server = realtime.Server(adapter=ClusterAdapter(path))  # each worker

Broadcasts, rooms, acks, ``fetch_sockets``, server-side events and
connection state recovery span the workers, as with
:class:`~tether.realtime.adapters.redis.RedisAdapter`; the hub keeps the
sessions and the events kept for recovery in memory (:mod:`.memory`), so
they outlive a worker, not the hub. Standard library only.
"""

from __future__ import annotations

from .adapter import ClusterAdapter
from .hub import ClusterHub
from .peer import MAX_QUEUED
from .wire import MAX_FRAME

__all__ = ["MAX_FRAME", "MAX_QUEUED", "ClusterAdapter", "ClusterHub"]
