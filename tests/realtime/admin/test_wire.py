"""tether.realtime.admin.wire: sockets, timestamps and aggregated events in
the shapes the official UI reads (its dist/typed-events.d.ts)."""

from __future__ import annotations

import re

from tether.realtime.adapters.base import SocketInfo
from tether.realtime.admin.wire import EventBuffer, serialize, timestamp


def test_timestamp_is_javascripts_json_date() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1764752461.8079) == "2025-12-03T09:01:01.807Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp())


def test_serialize_hides_auth_and_admin_data() -> None:
    info = SocketInfo(
        "sid1",
        "/chat",
        frozenset({"sid1", "red"}),
        {"nick": "ann", "_admin": {"clientId": "abc", "transport": "polling"}},
        {
            "headers": {"x-forwarded-for": "10.0.0.7", "origin": "http://x"},
            "query": {"EIO": "4"},
            "auth": {"password": "secret"},
            "address": ("127.0.0.1", 5555),
            "url": "/socket.io/?EIO=4",
            "time": 1.5,
            "secure": False,
        },
    )
    out = serialize(info)
    assert out == {
        "id": "sid1",
        "clientId": "abc",
        "transport": "polling",
        "nsp": "/chat",
        "data": {"nick": "ann"},
        "handshake": {
            "address": "10.0.0.7",  # as socket.io's: the proxy's header first
            "headers": {"x-forwarded-for": "10.0.0.7", "origin": "http://x"},
            "query": {"EIO": "4"},
            "issued": 1500,
            "secure": False,
            "time": "1970-01-01T00:00:01.500Z",
            "url": "/socket.io/?EIO=4",
            "xdomain": True,
        },
        "rooms": ["red", "sid1"],
    }
    assert "secret" not in str(out)
    bare = serialize(SocketInfo("s", "/", frozenset(), {}, {"address": ("::1", 1)}))
    assert bare["clientId"] is None and bare["handshake"]["address"] == "::1"


def test_event_buffer_counts_per_second_and_clears() -> None:
    events = EventBuffer(limit=3)
    events.push("packetsIn")
    events.push("packetsIn")
    events.push("bytesIn", count=10)
    events.push("rawDisconnection", "transport close")
    events.push("rawConnection")  # past the limit of 3 distinct entries: dropped
    taken = events.take()
    by_type = {e["type"]: e for e in taken}
    assert set(by_type) == {"packetsIn", "bytesIn", "rawDisconnection"}
    assert by_type["packetsIn"]["count"] == 2 and "subType" not in by_type["packetsIn"]
    assert by_type["rawDisconnection"]["subType"] == "transport close"
    assert all(e["timestamp"] % 1000 == 0 for e in taken)
    assert events.take() == []
