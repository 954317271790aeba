"""tether.metrics.endpoint: who gets the metrics (token, allow=, GET only), on
tether.serve's port and under uvicorn (asgi_app around a realtime app)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from helpers import timeout
from metrics.scrape import http_get, samples, scrape, subset
from realtime.sio_helpers import http_request, open_polling
from tether import realtime
from tether.metrics import MetricsEndpoint, asgi_app
from tether.metrics.realtime import RealtimeMetrics

uvicorn = pytest.importorskip("uvicorn")


async def silent(connection: tether.Connection) -> None:
    await connection.wait_closed()


@contextlib.asynccontextmanager
async def serving(endpoint: MetricsEndpoint) -> AsyncIterator[tether.Server]:
    server = await tether.serve(silent, "127.0.0.1", 0, metrics=endpoint)
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(timeout(1)), timeout(3))


async def test_allow_refuses_other_addresses_and_only_get_is_answered() -> None:
    refuse = MetricsEndpoint("/m", allow=lambda address: address == "10.0.0.1")
    async with serving(refuse) as server:
        assert (await http_get(server.port, "/m"))[0] == 403
        answer = await http_request(server.port, "POST", "/m", b"")
        assert answer.status == 405
        assert answer.headers["allow"] == "GET"
        # Another path is not the endpoint's: a WebSocket server wants an upgrade.
        assert (await http_get(server.port, "/metrics"))[0] == 426

    seen: list[str | None] = []

    def allow(address: str | None) -> bool:
        seen.append(address)
        return True

    async with serving(MetricsEndpoint("/m", allow=allow)) as server:
        status, body = await http_get(server.port, "/m?x=1")  # the query is ignored
        assert status == 200
        assert samples(body)["tether_connections_open"] == 0
        assert seen == ["127.0.0.1"]
        assert server.metrics.snapshot()["tether_handshakes_refused_total"] == {}


def test_a_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must start with"):
        MetricsEndpoint("metrics")


@contextlib.asynccontextmanager
async def uvicorn_on_loopback(app: Any) -> AsyncIterator[int]:
    """uvicorn serving ``app`` in this loop, on a socket already listening."""
    listening = socket.create_server(("127.0.0.1", 0))
    runner = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    served = asyncio.ensure_future(runner.serve(sockets=[listening]))
    try:
        yield listening.getsockname()[1]
    finally:
        runner.should_exit = True
        await asyncio.wait_for(served, timeout(5))
        listening.close()


async def test_asgi_app_serves_a_realtime_servers_metrics_under_uvicorn() -> None:
    server = realtime.Server()
    metrics = RealtimeMetrics.install(server)
    app = asgi_app(MetricsEndpoint(token="t"), [metrics], server.asgi_app())
    async with uvicorn_on_loopback(app) as port:
        await open_polling(port)  # handed to the realtime app
        assert (await http_get(port, "/metrics"))[0] == 401
        found = await scrape(port, token="t")
        assert (
            subset(
                found,
                expected := {
                    'tether_realtime_sessions_opened_total{transport="polling"}': 1,
                    'tether_realtime_sessions_open{transport="polling"}': 1,
                    'tether_realtime_polling_requests_total{method="GET"}': 1,
                },
            )
            == expected
        )
        # No tether.Server here: the realtime metrics sample the loop's lag.
        assert "tether_event_loop_lag_seconds_count" in found
        assert "tether_connections_open" not in found
    not_found = asgi_app(MetricsEndpoint(), [metrics])
    async with uvicorn_on_loopback(not_found) as port:
        assert (await http_get(port, "/elsewhere"))[0] == 404
