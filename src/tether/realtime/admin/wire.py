"""What the Admin UI reads: sockets, server stats and aggregated events, in the
shapes the official ``@socket.io/admin-ui`` expects (its ``SerializedSocket``,
``ServerStats`` and ``NamespaceEvent`` types, in the package's
``dist/typed-events.d.ts``)."""

from __future__ import annotations

import datetime
import enum
import time
from typing import Any

from ..adapters.base import SocketInfo

__all__ = ["ADMIN_KEY", "EventBuffer", "Feature", "serialize", "timestamp"]

#: The key of ``socket.data`` where a socket's Engine.IO id and transport are
#: kept for the UI (as the Node server does), so that ``fetch_sockets`` brings
#: them from other nodes too; left out of the data the UI shows.
ADMIN_KEY = "_admin"


class Feature(str, enum.Enum):
    """What the UI may offer (the ``config`` event's ``supportedFeatures``)."""

    EMIT = "EMIT"
    JOIN = "JOIN"
    LEAVE = "LEAVE"
    DISCONNECT = "DISCONNECT"
    MJOIN = "MJOIN"
    MLEAVE = "MLEAVE"
    MDISCONNECT = "MDISCONNECT"
    AGGREGATED_EVENTS = "AGGREGATED_EVENTS"
    ALL_EVENTS = "ALL_EVENTS"


#: The actions (every one works across nodes, through the adapter).
ACTIONS = (
    Feature.EMIT,
    Feature.JOIN,
    Feature.LEAVE,
    Feature.DISCONNECT,
    Feature.MJOIN,
    Feature.MLEAVE,
    Feature.MDISCONNECT,
)


def timestamp(when: float | None = None) -> str:
    """A time as JavaScript's ``JSON.stringify(new Date())`` writes it."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if when is None else when, datetime.timezone.utc
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _address(handshake: dict[str, Any]) -> Any:
    headers = handshake.get("headers") or {}
    forwarded = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for")
    if forwarded:
        return forwarded
    address = handshake.get("address")
    if isinstance(address, (tuple, list)) and address:
        return address[0]  # (host, port): the host, as socket.io gives
    return address


def _handshake(handshake: dict[str, Any]) -> dict[str, Any]:
    # The auth is left out: the admin namespace's holds the password.
    issued = handshake.get("time")
    issued = issued if isinstance(issued, (int, float)) else time.time()
    return {
        "address": _address(handshake),
        "headers": handshake.get("headers", {}),
        "query": handshake.get("query", {}),
        "issued": round(issued * 1000),
        "secure": bool(handshake.get("secure", False)),
        "time": timestamp(issued),
        "url": handshake.get("url", ""),
        "xdomain": "origin" in (handshake.get("headers") or {}),
    }


def serialize(info: SocketInfo) -> dict[str, Any]:
    """A socket (of this node or another) as the UI's ``SerializedSocket``."""
    data = dict(info.data) if isinstance(info.data, dict) else {}
    admin = data.pop(ADMIN_KEY, None)
    admin = admin if isinstance(admin, dict) else {}
    return {
        "id": info.sid,
        "clientId": admin.get("clientId"),
        "transport": admin.get("transport"),
        "nsp": info.namespace,
        "data": data,
        "handshake": _handshake(info.handshake),
        "rooms": sorted(info.rooms),
    }


class EventBuffer:
    """Counts per second, per kind (``rawConnection``, ``packetsIn``,
    ``bytesOut``...) and sub-kind (a disconnection's reason), handed to the
    UI with each ``server_stats`` (its ``aggregatedEvents``) and then cleared.
    At most ``limit`` distinct entries are held between two reports."""

    def __init__(self, limit: int = 10_000) -> None:
        self._counts: dict[tuple[int, str, str | None], int] = {}
        self._limit = limit

    def push(self, kind: str, sub_kind: str | None = None, count: int = 1) -> None:
        key = (int(time.time()) * 1000, kind, sub_kind)
        counts = self._counts
        if key in counts:
            counts[key] += count
        elif len(counts) < self._limit:
            counts[key] = count

    def take(self) -> list[dict[str, Any]]:
        events = []
        for (ms, kind, sub_kind), count in self._counts.items():
            event: dict[str, Any] = {"timestamp": ms, "type": kind, "count": count}
            if sub_kind is not None:  # absent, not null, as the Node server sends it
                event["subType"] = sub_kind
            events.append(event)
        self._counts.clear()
        return events
