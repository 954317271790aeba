"""Network faults injected by a TCP proxy (faultproxy.py) between tether's
clients and servers: reconnection with backoff, realtime state recovery with
no gap and no duplicate, and graceful shutdown under load with nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import tether
from conftest import StartServer
from faultproxy import FaultProxy
from helpers import timeout
from tether import realtime
from tether.realtime.client import Client


@pytest.fixture
async def proxy_to() -> AsyncIterator[Callable[[int], Any]]:
    proxies: list[FaultProxy] = []

    async def start(port: int) -> FaultProxy:
        proxy = await FaultProxy.start(port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.close()


async def serve_big(connection: tether.Connection) -> None:
    """Echo; "big" asks for a 1 MB message (to be cut mid-frame)."""
    async for message in connection:
        await connection.send(b"B" * 1_000_000 if message == "big" else message)


FAULTS: dict[str, Callable[[FaultProxy], None]] = {
    "drop": FaultProxy.drop,
    "reset": FaultProxy.reset,
    "half_close": FaultProxy.half_close,
    "reset_mid_frame": FaultProxy.reset_mid_frame,
    "stall": FaultProxy.stall,
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_client_reconnects_after_a_fault(
    start_server: StartServer, proxy_to: Callable[[int], Any], fault: str
) -> None:
    server = await start_server(serve_big)
    proxy: FaultProxy = await proxy_to(server.port)
    uri = f"ws://127.0.0.1:{proxy.port}/"
    # Keepalive finds the stalled connection; the others end on their own.
    options: dict[str, Any] = {"ping_interval": timeout(0.2), "ping_timeout": timeout(0.3)}
    sessions = 0
    async for connection in tether.connect(
        uri, backoff_min=0.01, backoff_max=0.05, max_attempts=20, open_timeout=timeout(2), **options
    ):
        sessions += 1
        await connection.send(f"hello {sessions}")
        assert await asyncio.wait_for(connection.recv(), timeout(2)) == f"hello {sessions}"
        if sessions == 2:
            await connection.close()
            break
        FAULTS[fault](proxy)
        if fault == "reset_mid_frame":
            await connection.send("big")  # its answer is cut in half, then reset
        with pytest.raises(tether.ConnectionClosedError):
            while True:
                await asyncio.wait_for(connection.recv(), timeout(3))
    assert sessions == 2
    assert proxy.accepted == 2


async def _refuse_then_accept(proxy: FaultProxy, attempts: int) -> None:
    while proxy.accepted < attempts:
        await asyncio.sleep(0.005)
    proxy.refusing = False


@pytest.fixture(autouse=True)
def _unseed() -> None:
    random.seed()


async def test_backoff_schedule_is_followed(
    start_server: StartServer, proxy_to: Callable[[int], Any]
) -> None:
    server = await start_server()
    proxy: FaultProxy = await proxy_to(server.port)
    uri = f"ws://127.0.0.1:{proxy.port}/"
    low, high, factor, failures = 0.02, 0.16, 2.0, 6
    random.seed(99)
    expected = random.Random(99)
    delays, delay = [], low
    for _ in range(failures):
        delays.append(expected.uniform(0, delay))
        delay = min(high, delay * factor)
    proxy.refusing = True
    opener = asyncio.create_task(_refuse_then_accept(proxy, failures))

    async def reconnect() -> None:
        async for connection in tether.connect(
            uri, backoff_min=low, backoff_max=high, backoff_factor=factor, open_timeout=timeout(2)
        ):
            await connection.close()
            break

    await asyncio.wait_for(reconnect(), timeout(5))
    await opener
    gaps = [b - a for a, b in zip(proxy.accept_times, proxy.accept_times[1:], strict=False)]
    assert len(gaps) >= failures
    for gap, wanted in zip(gaps, delays, strict=False):
        assert gap >= wanted * 0.9  # never sooner than the jittered delay
    # Exponential: the later delays' ceiling is the cap, not the first delay.
    assert sum(gaps[:failures]) >= sum(delays) * 0.9


# -- realtime: state recovery across faults ----------------------------------------------


@pytest.mark.parametrize("fault", ["reset", "reset_mid_frame", "drop"])
async def test_sequenced_events_arrive_without_gap_or_duplicate_across_faults(
    proxy_to: Callable[[int], Any], fault: str
) -> None:
    server = realtime.Server(connection_state_recovery={"max_disconnection_duration": 30})

    @server.on("join")
    async def join(socket: realtime.Socket, room: str) -> str:
        await socket.join(room)
        return room

    total = 600
    received: list[int] = []
    more = asyncio.Event()

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        proxy: FaultProxy = await proxy_to(http.port)
        client = Client(reconnection_delay=0.02, reconnection_delay_max=0.1)

        def on_seq(n: int) -> None:
            received.append(n)
            more.set()

        client.on("seq", on_seq)
        await asyncio.wait_for(client.connect(f"http://127.0.0.1:{proxy.port}"), timeout(3))
        try:
            await asyncio.wait_for(client.emit_with_ack("join", "stream"), timeout(2))
            sid = client.sid()
            faults_at = {150, 300, 450}
            for n in range(total):
                await server.to("stream").emit("seq", n)
                if n in faults_at:
                    FAULTS[fault](proxy)
                if n % 20 == 0:
                    await asyncio.sleep(0)  # let the stream interleave with the faults
            deadline = time.monotonic() + timeout(10)
            while len(received) < total and time.monotonic() < deadline:
                more.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(more.wait(), timeout(1))
            assert received == list(range(total)), _describe(received, total)
            assert client.sid() == sid and client.recovered()
            assert proxy.accepted >= 2  # it did reconnect
        finally:
            await client.disconnect()


def _describe(received: list[int], total: int) -> str:
    seen = set(received)
    missing = [n for n in range(total) if n not in seen][:20]
    dups = sorted({n for n in received if received.count(n) > 1})[:20]
    return f"got {len(received)}; missing {missing}; duplicated {dups}"


# -- graceful shutdown under load -------------------------------------------------------


async def test_graceful_shutdown_under_load_loses_nothing_in_flight(
    start_server: StartServer,
) -> None:
    """Two servers share a port (SO_REUSEPORT), as in a rolling restart.

    In flight: a message a client has sent and not yet had acknowledged.
    Clients keep up to 4 in flight, each numbered; a server acknowledges a
    message once it has recorded it in the shared store (a stand-in for a
    database, shared by both servers and idempotent on (client, number)).
    When server A shuts down, every client gets 1001, reconnects (to B) and
    resends what was in flight. Nothing in flight is lost: every number of
    every client is stored exactly once and acknowledged.
    """
    store: dict[int, list[int]] = {}
    stored_by: dict[str, int] = {"A": 0, "B": 0}

    def make_handler(name: str) -> Callable[[tether.Connection], Any]:
        async def handler(connection: tether.Connection) -> None:
            async for message in connection:
                assert isinstance(message, str)
                client, n = map(int, message.split(":"))
                log = store.setdefault(client, [])
                if n not in log:  # idempotent: a resend after a 1001 is stored once
                    log.append(n)
                    stored_by[name] += 1
                await connection.send(message)

        return handler

    a = await start_server(make_handler("A"), reuse_port=True)
    clients, per_client, window = 40, 150, 4
    codes: list[int] = []
    started = asyncio.Event()
    connected = 0

    async def run_client(cid: int) -> None:
        nonlocal connected
        unacked: dict[int, str] = {}
        next_n = 0
        first = True
        async for connection in tether.connect(
            f"ws://127.0.0.1:{a.port}/", backoff_min=0.01, backoff_max=0.05, max_attempts=50
        ):
            if first:
                connected += 1
                if connected == clients:
                    started.set()
                first = False
            try:
                for message in list(unacked.values()):  # resend what was in flight
                    await connection.send(message)
                while next_n < per_client or unacked:
                    while next_n < per_client and len(unacked) < window:
                        unacked[next_n] = f"{cid}:{next_n}"
                        await connection.send(unacked[next_n])
                        next_n += 1
                    ack = await asyncio.wait_for(connection.recv(), timeout(5))
                    assert isinstance(ack, str)
                    unacked.pop(int(ack.split(":")[1]), None)
                await connection.close()
                return
            except tether.ConnectionClosed as exc:
                codes.append(exc.code)

    tasks = [asyncio.create_task(run_client(cid)) for cid in range(clients)]
    await asyncio.wait_for(started.wait(), timeout(5))
    while stored_by["A"] < clients * per_client // 4:  # under load: a quarter done
        await asyncio.sleep(0.005)
    b = await start_server(make_handler("B"), reuse_port=True, port=a.port)
    a.close()
    await asyncio.wait_for(a.wait_closed(), timeout(5))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout(20))
    assert codes.count(1001) == clients and len(codes) == clients  # every client got 1001
    assert stored_by["B"] > 0  # the rest went to B
    for cid in range(clients):
        assert store[cid] == list(range(per_client))  # stored once each, in order
    assert b.connections == set() or all(c.open for c in b.connections)
