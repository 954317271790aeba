"""tether.Server's metrics, scraped from its own port after a scripted scenario.

Every figure is checked exactly: frame sizes are known with compression and
keepalive off (a client frame of 10 bytes is 16 on the wire: 2 of header, 4
of mask; the server's is 12).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import tether
from helpers import timeout
from metrics.scrape import http_get, scrape, subset
from realtime.sio_helpers import eventually
from tether.exceptions import ConnectionClosed, InvalidStatus
from tether.metrics import MetricsEndpoint

TOKEN = "s3cret"
CLIENTS = 3
MESSAGES = 4
PAYLOAD = b"0123456789"


async def echo(connection: tether.Connection) -> None:
    async for message in connection:
        await connection.send(message)


async def connect(port: int) -> tether.Connection:
    uri = f"ws://127.0.0.1:{port}/"
    return await asyncio.wait_for(
        tether.connect(uri, compression=None, ping_interval=None), timeout(2)
    )


async def test_a_scripted_scenario_scraped_exactly() -> None:
    server = await tether.serve(
        echo,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_message_size=1024,
        max_connections_per_ip=CLIENTS + 1,  # the scrape's own connection fits
        close_timeout=timeout(1),
        metrics=MetricsEndpoint(token=TOKEN),
    )
    server.metrics.count_sends = True  # off by default (its cost: docs/metrics.md)
    clients: list[tether.Connection] = []
    try:
        clients = [await connect(server.port) for _ in range(CLIENTS)]
        for client in clients:
            for _ in range(MESSAGES):
                await client.send(PAYLOAD)
                assert await asyncio.wait_for(client.recv(), timeout(2)) == PAYLOAD
        assert tether.broadcast(server.connections, PAYLOAD) == CLIENTS
        for client in clients:
            assert await asyncio.wait_for(client.recv(), timeout(2)) == PAYLOAD

        echoed = CLIENTS * MESSAGES
        assert (
            subset(
                await scrape(server.port, token=TOKEN),
                expected := {
                    "tether_connections_open": CLIENTS,
                    "tether_handshakes_accepted_total": CLIENTS,
                    "tether_messages_received_total": echoed,
                    "tether_bytes_received_total": echoed * 16,
                    "tether_messages_sent_total": echoed + CLIENTS,
                    "tether_bytes_sent_total": (echoed + CLIENTS) * 12,
                    "tether_broadcast_deliveries_total": CLIENTS,
                },
            )
            == expected
        )

        # Refused: over the per-address cap, then a request that is no handshake.
        def settled(count: int = CLIENTS) -> Callable[[], bool]:
            """Whether the server let go of every connection but ``count`` (the cap
            counts each until it is gone: the next request must fit under it)."""
            return lambda: server.addresses.count("127.0.0.1") == count

        extra = await connect(server.port)
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.port)
        assert refused.value.response.status == 503
        await eventually(settled(CLIENTS + 1))
        # A message over max_message_size: 1009.
        await extra.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(extra.recv(), timeout(2))
        assert extra.close_code == 1009
        await eventually(settled())
        status, _ = await http_get(server.port, "/")
        assert status == 426  # Upgrade Required
        await eventually(settled())
        # The endpoint wants its token, and answers only GET requests for its path.
        assert (await http_get(server.port, "/metrics"))[0] == 401
        await eventually(settled())
        bad = {"Authorization": "Bearer nope"}
        assert (await http_get(server.port, "/metrics", bad))[0] == 401
        for client in clients:
            await client.close()
        await eventually(lambda: not server.connections)

        assert (
            subset(
                await scrape(server.port, token=TOKEN),
                expected := {
                    "tether_connections_open": 0,
                    "tether_handshakes_accepted_total": CLIENTS + 1,
                    'tether_handshakes_refused_total{reason="max_connections_per_ip"}': 1,
                    'tether_handshakes_refused_total{reason="handshake"}': 1,
                    'tether_limit_hits_total{limit="max_connections_per_ip"}': 1,
                    'tether_limit_hits_total{limit="max_message_size"}': 1,
                    'tether_closes_total{code="1000"}': CLIENTS,
                    'tether_closes_total{code="1009"}': 1,
                    "tether_messages_received_total": echoed,
                },
            )
            == expected
        )
        snapshot = server.metrics.snapshot()
        assert snapshot["tether_handshakes_refused_total"] == {
            "handshake": 1,
            "max_connections_per_ip": 1,
        }
        assert snapshot["tether_closes_total"] == {"1000": CLIENTS, "1009": 1}
    finally:
        for client in clients:
            await client.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(timeout(1)), timeout(3))


async def test_slow_clients_and_the_rate_limit_in_the_snapshot() -> None:
    sent: list[int] = []
    full = asyncio.Event()

    async def filler(connection: tether.Connection) -> None:
        """On "fill", send until the write buffer is above write_high_water."""
        async for message in connection:
            if message == "fill":
                count = 0
                while connection.write_buffer_size() <= connection.limits.write_high_water:
                    connection.send_nowait(b"x" * 65536)
                    count += 1
                    await asyncio.sleep(0)  # let the transport try to write
                sent.append(count)
                full.set()

    server = await tether.serve(
        filler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_messages_per_second=2,
        close_timeout=timeout(1),
    )
    try:
        slow = await connect(server.port)
        assert slow.transport is not None
        slow.transport.pause_reading()  # a client that stops reading
        await slow.send("fill")
        await asyncio.wait_for(full.wait(), timeout(10))
        assert tether.broadcast(server.connections, b"x", slow="skip") == 0
        assert tether.broadcast(server.connections, b"x", slow="close") == 0
        slow.transport.abort()

        flooder = await connect(server.port)
        for _ in range(3):  # one more than the bucket holds
            await flooder.send(b"m")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(flooder.recv(), timeout(2))
        assert flooder.close_code == 1008
        await eventually(lambda: not server.connections)

        snapshot = server.metrics.snapshot()
        assert snapshot["tether_slow_clients_total"] == {"close": 1, "skip": 1}
        assert snapshot["tether_broadcast_deliveries_total"] == 0
        assert sent[0] > 0
        # Not counted: count_sends is off by default.
        assert snapshot["tether_messages_sent_total"] == 0
        assert snapshot["tether_bytes_sent_total"] == 0
        assert snapshot["tether_limit_hits_total"] == {"max_messages_per_second": 1}
        assert snapshot["tether_closes_total"] == {"1008": 2}
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(timeout(1)), timeout(3))
