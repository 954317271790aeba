"""The Redis adapter while Redis is down, and after it comes back.

Two nodes in this process (each its own :class:`RedisAdapter`, so its own
node id and connections), one client on each, and a private redis-server
stopped and restarted on the same port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from realtime.redis_helpers import Peer, RedisServer
from realtime.sio_helpers import eventually
from tether import realtime
from tether.realtime.adapters.redis import Failure, RedisAdapter

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def node(
    url: str, failures: list[Failure]
) -> AsyncIterator[tuple[RedisAdapter, realtime.Server, int]]:
    adapter = RedisAdapter(
        url,
        prefix="t-outage",
        heartbeat=0.2,
        backoff_base=0.02,
        backoff_cap=0.1,
        on_failure=failures.append,
    )
    server = realtime.Server(adapter=adapter)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield adapter, server, http.port


async def test_local_delivery_goes_on_failures_are_reported_and_it_reconnects() -> None:
    redis = RedisServer()
    redis.start()
    failures: list[Failure] = []
    try:
        async with (
            node(redis.url, failures) as (one, server1, port1),
            node(redis.url, []) as (two, _, port2),
        ):
            p1 = await Peer.connect(f"http://127.0.0.1:{port1}", "p1")
            p2 = await Peer.connect(f"http://127.0.0.1:{port2}", "p2")
            await server1.emit("news", 1)
            await p1.wait_for("news")
            await p2.wait_for("news")

            redis.stop()
            await eventually(lambda: not one.connected and not two.connected, 5)
            await server1.emit("news", 2)  # local sockets still get it
            await p1.wait_for("news", 2)
            assert p1.events["news"] == [(1,), (2,)]
            assert one.stats.publish_failures >= 1
            assert failures and failures[-1].what == "broadcast" and failures[-1].local
            assert p2.events["news"] == [(1,)]  # the other node could not hear of it

            redis.start()  # same port
            await eventually(lambda: one.connected and two.connected, 10)
            assert one.stats.reconnects >= 1 and two.stats.reconnects >= 1
            await one.flush()
            await two.flush()
            await server1.emit("news", 3)
            await p2.wait_for("news", 2)
            assert p2.events["news"] == [(1,), (3,)]
            await p1.close()
            await p2.close()
    finally:
        redis.stop()
