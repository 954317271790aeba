"""A realtime server's metrics (tether.metrics.realtime), scraped from
realtime.serve's own port after a scripted scenario with the official
socket.io-client (long-polling upgraded to WebSocket, and WebSocket only),
and a long-polling session driven by hand, whose requests are counted exactly.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from metrics.scrape import scrape, subset
from realtime.redis_helpers import redis_server
from realtime.sio_helpers import (
    eio_url,
    eventually,
    http_request,
    open_polling,
    poll,
    post,
    running,
)
from tether import realtime
from tether.metrics import MetricsEndpoint
from tether.metrics.realtime import RealtimeMetrics

SCRIPT = repo_root() / "tests" / "metrics" / "sio_clients.mjs"
POLLING = 2  # clients that start on long-polling and upgrade
WEBSOCKET = 1  # clients on a WebSocket from the start
CLIENTS = POLLING + WEBSOCKET


async def read_lines(process: asyncio.subprocess.Process, count: int) -> list[dict[str, Any]]:
    assert process.stdout is not None
    lines = []
    for _ in range(count):
        raw = await asyncio.wait_for(process.stdout.readline(), timeout(10))
        assert raw, "the node clients exited"
        lines.append(json.loads(raw))
    return lines


async def test_a_scripted_scenario_scraped_exactly() -> None:
    executable = node_bin()
    if executable is None:
        pytest.skip("node is not installed")
    server = realtime.Server(ping_interval=60, ping_timeout=60)

    @server.on("hello")
    async def hello(socket: realtime.Socket, number: int) -> str:
        return f"hi {number}"

    async with running(server, metrics=MetricsEndpoint("/stats")) as running_server:
        port = running_server.port
        config = {"url": f"http://127.0.0.1:{port}", "polling": POLLING, "websocket": WEBSOCKET}
        process = await asyncio.create_subprocess_exec(
            executable,
            str(SCRIPT),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=repo_root(),
        )
        try:
            ready = await read_lines(process, CLIENTS)
            assert sorted(line["ready"] for line in ready) == list(range(CLIENTS))
            assert {line["transport"] for line in ready} == {"websocket"}
            await server.emit("news", 1)  # a broadcast to every client
            news = await read_lines(process, CLIENTS)
            assert {line["event"] for line in news} == {"news"}
            socket = next(iter(server.namespaces["/"].sockets.values()))
            assert await socket.emit_with_ack("question", timeout=timeout(5)) == "answer"

            messages_sent = CLIENTS * 3 + 1  # CONNECT replies, hello acks, news; question
            messages_received = CLIENTS * 2 + 1  # CONNECTs, hellos; the answer
            found = await scrape(port, "/stats")
            assert (
                subset(
                    found,
                    expected := {
                        'tether_realtime_sessions_opened_total{transport="polling"}': POLLING,
                        'tether_realtime_sessions_opened_total{transport="websocket"}': WEBSOCKET,
                        'tether_realtime_sessions_open{transport="websocket"}': CLIENTS,
                        'tether_realtime_sessions_open{transport="polling"}': 0,
                        "tether_realtime_upgrades_total": POLLING,
                        'tether_realtime_sockets_open{namespace="/"}': CLIENTS,
                        'tether_realtime_sockets_connected_total{namespace="/"}': CLIENTS,
                        'tether_realtime_events_received_total{namespace="/"}': CLIENTS,
                        'tether_realtime_events_sent_total{namespace="/"}': 2,
                        "tether_realtime_ack_round_trip_seconds_count": 1,
                        "tether_realtime_messages_sent_total": messages_sent,
                        "tether_realtime_messages_received_total": messages_received,
                        # The WebSocket layer under it: every client ends on a WebSocket.
                        "tether_connections_open": CLIENTS,
                        "tether_handshakes_accepted_total": CLIENTS,
                    },
                )
                == expected
            )
            # The loop's lag is sampled once, by the WebSocket server.
            assert "tether_event_loop_lag_seconds_count" in found

            # A long-polling session by hand: every request is known.
            before = server_counts(server)
            sid, _ = await open_polling(port)  # GET 1
            assert (await post(port, sid, "40")).status == 200  # POST 1: CONNECT to "/"
            assert (await poll(port, sid))[0].startswith("40")  # GET 2: its reply
            refused = await http_request(port, "GET", eio_url(eio="3"))
            assert refused.status == 400
            unknown = await http_request(port, "GET", eio_url("nope"))
            assert unknown.status == 400
            after = server_counts(server)
            assert after["polling"] == {
                "GET": before["polling"].get("GET", 0) + 2,
                "POST": before["polling"].get("POST", 0) + 1,
            }
            assert after["refused"] == {"unknown_sid": 1, "unsupported_protocol_version": 1}
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the clients exit
            try:
                await asyncio.wait_for(process.wait(), timeout(5))
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        await eventually(lambda: len(server.namespaces["/"].sockets) == 1)
        assert (
            subset(
                await scrape(port, "/stats"),
                expected := {
                    'tether_realtime_sessions_opened_total{transport="polling"}': POLLING + 1,
                    'tether_realtime_sessions_closed_total{reason="transport close"}': CLIENTS,
                    'tether_realtime_sessions_open{transport="polling"}': 1,
                    'tether_realtime_sessions_open{transport="websocket"}': 0,
                    'tether_realtime_sockets_open{namespace="/"}': 1,
                    'tether_realtime_sockets_connected_total{namespace="/"}': CLIENTS + 1,
                    "tether_connections_open": 0,
                },
            )
            == expected
        )


def server_counts(server: realtime.Server) -> dict[str, Any]:
    snapshot = RealtimeMetrics.install(server).snapshot()
    return {
        "polling": snapshot["tether_realtime_polling_requests_total"],
        "refused": snapshot["tether_realtime_requests_refused_total"],
    }


@pytest.mark.redis
async def test_the_redis_adapters_figures() -> None:
    from tether.realtime.adapters.redis import RedisAdapter

    with redis_server() as redis:
        nodes = [
            realtime.Server(
                adapter=RedisAdapter(redis.url, prefix="t-metrics", request_timeout=timeout(2))
            )
            for _ in range(2)
        ]
        for node in nodes:
            await node.start()
        try:
            metrics = RealtimeMetrics.install(nodes[0])
            assert metrics.snapshot()["tether_redis_request_round_trip_seconds"]["count"] == 0
            assert await nodes[0].fetch_sockets() == []  # a request answered by the other node
            published = metrics.snapshot()["tether_redis_published_total"]
            await nodes[0].emit("news", 1)
            snapshot = metrics.snapshot()
            assert snapshot["tether_redis_request_round_trip_seconds"]["count"] == 1
            assert snapshot["tether_redis_request_timeouts_total"] == 0
            assert snapshot["tether_redis_published_total"] == published + 1
            assert snapshot["tether_redis_publish_failures_total"] == 0
            redis.stop()
            await nodes[0].emit("news", 2)  # local sockets only: Redis is gone
            snapshot = metrics.snapshot()
            assert snapshot["tether_redis_publish_failures_total"] == 1
            assert snapshot["tether_redis_published_total"] == published + 1
        finally:
            for node in nodes:
                await asyncio.wait_for(node.shutdown(), timeout(10))
