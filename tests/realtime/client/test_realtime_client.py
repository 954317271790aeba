"""tether's Socket.IO client against scripted servers, and its pieces.

The scripted servers are real tether WebSocket servers on port 0 that speak
just enough Engine.IO / Socket.IO to put the client where a test wants it:
silent after the handshake (ping timeout), sending garbage (parse error),
going away for good (reconnection gives up). The HTTP client of the polling
transport is tested against raw asyncio servers. The official Node server is
in ``test_client_node.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

import tether
from helpers import timeout
from tether.exceptions import AckTimeout, Disconnected, PacketError
from tether.realtime.client.client import Client, backoff_delay

T = TypeVar("T")
Script = Callable[[tether.Connection], Awaitable[None]]


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


def open_packet(ping_interval: int = 10_000, ping_timeout: int = 10_000) -> str:
    handshake = {
        "sid": "eio-sid",
        "upgrades": [],
        "pingInterval": ping_interval,
        "pingTimeout": ping_timeout,
        "maxPayload": 1_000_000,
    }
    return "0" + json.dumps(handshake)


async def accept(connection: tether.Connection, **handshake: int) -> None:
    """The Engine.IO handshake, then accept the client's CONNECT to "/"."""
    await connection.send(open_packet(**handshake))
    assert await connection.recv() == "40"
    await connection.send('40{"sid":"sio-sid"}')


async def drain(connection: tether.Connection) -> None:
    """Read until the client goes away."""
    with contextlib.suppress(tether.ConnectionClosed):
        async for _ in connection:
            pass


@contextlib.asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[str]:
    """A tether WebSocket server running ``script`` for each connection; yields its URL."""
    async with tether.serve(script, "127.0.0.1", 0, close_timeout=timeout(1)) as server:
        yield f"http://127.0.0.1:{server.port}"


def make_client(**options: Any) -> Client:
    return Client(**{"reconnection": False, "connect_timeout": timeout(3), **options})


# -- backoff ---------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum() -> None:
    delays = [backoff_delay(n, 0.5, 5.0, 0.0, 0.3) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert backoff_delay(10_000, 0.5, 5.0, 0.0, 0.3) == 5.0  # no overflow


def test_backoff_jitter_stays_within_the_factor() -> None:
    for n in range(6):
        base = min(1.0 * 2**n, 8.0)
        low = backoff_delay(n, 1.0, 8.0, 0.5, 0.0)
        high = backoff_delay(n, 1.0, 8.0, 0.5, 0.999999)
        assert low == pytest.approx(base * 0.5)
        assert high == pytest.approx(min(base * 1.5, 8.0), rel=1e-5)
        assert low <= backoff_delay(n, 1.0, 8.0, 0.5, 0.5) <= high


# -- arguments -------------------------------------------------------------------


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="transports"):
        Client(transports=("webtransport",))
    with pytest.raises(ValueError, match="transports"):
        Client(transports=())
    with pytest.raises(ValueError, match="randomization_factor"):
        Client(randomization_factor=2)


async def test_emit_before_connecting() -> None:
    client = make_client()
    with pytest.raises(Disconnected):
        await client.emit("event")
    with pytest.raises(ValueError, match="reserved"):
        await client.emit("connect")
    assert not client.connected
    assert client.sid() is None
    assert client.transport is None
    await within(client.wait())  # nothing to wait for


# -- the Engine.IO session ----------------------------------------------------------


async def test_pings_are_answered() -> None:
    pongs: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def script(connection: tether.Connection) -> None:
        await accept(connection)
        for _ in range(3):
            await connection.send("2")
            await pongs.put(await connection.recv())
        await drain(connection)

    async with scripted_server(script) as url:
        client = make_client()
        await within(client.connect(url))
        assert [await within(pongs.get()) for _ in range(3)] == ["3", "3", "3"]
        assert client.connected
        await within(client.disconnect())


async def test_no_ping_means_the_connection_is_gone() -> None:
    async def script(connection: tether.Connection) -> None:
        await accept(connection, ping_interval=50, ping_timeout=50)
        await drain(connection)  # and never ping

    async with scripted_server(script) as url:
        client = make_client()
        reasons: list[str] = []
        client.on("disconnect", reasons.append)
        await within(client.connect(url))
        await within(client.wait())  # after 50 + 50 ms, not reconnecting
        assert reasons == ["ping timeout"]


async def test_malformed_packet_closes_the_session(caplog: pytest.LogCaptureFixture) -> None:
    closed = asyncio.Event()

    async def script(connection: tether.Connection) -> None:
        await accept(connection)
        await connection.send('42["ok"]')
        await connection.send("4Z not a socket.io packet")
        await drain(connection)
        closed.set()

    async with scripted_server(script) as url:
        client = make_client()
        received: list[Any] = []
        reasons: list[str] = []
        client.on("ok", lambda: received.append("ok"))
        client.on("disconnect", reasons.append)
        with caplog.at_level(logging.ERROR, "tether.realtime.client"):
            await within(client.connect(url))
            await within(client.wait())
        await within(closed.wait())  # the connection was closed, not just forgotten
    assert received == ["ok"]
    assert reasons == ["parse error"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "malformed packet" in record.getMessage()
    assert "unknown packet type 'Z'" in record.getMessage()


async def test_bad_handshake_fails_connect() -> None:
    async def script(connection: tether.Connection) -> None:
        await connection.send('4{"sid":"x"}')  # a message, not the open packet
        await drain(connection)

    async with scripted_server(script) as url:
        client = make_client()
        with pytest.raises(PacketError, match="expected an open packet"):
            await within(client.connect(url))
        assert not client.connected
        await within(client.wait())


# -- Socket.IO -----------------------------------------------------------------------


async def test_connect_times_out_without_a_reply() -> None:
    async def script(connection: tether.Connection) -> None:
        await connection.send(open_packet())
        await drain(connection)  # never answers CONNECT

    async with scripted_server(script) as url:
        client = make_client(connect_timeout=0.1)
        with pytest.raises(asyncio.TimeoutError):
            await within(client.connect(url))
        await within(client.wait())


async def test_ack_timeout() -> None:
    events: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def script(connection: tether.Connection) -> None:
        await accept(connection)
        async for message in connection:
            await events.put(message)  # and never acknowledge

    async with scripted_server(script) as url:
        client = make_client()
        await within(client.connect(url))
        with pytest.raises(AckTimeout):
            await within(client.emit_with_ack("question", 1, timeout=0.05))
        assert await within(events.get()) == '420["question",1]'
        await within(client.disconnect())


async def test_reconnection_gives_up_and_the_buffer_is_bounded() -> None:
    accepted = asyncio.Event()

    async def script(connection: tether.Connection) -> None:
        await accept(connection)
        accepted.set()
        await drain(connection)

    client = Client(reconnection_attempts=3, reconnection_delay=0.01, max_buffered=2)
    errors: list[BaseException] = []
    reasons: list[str] = []
    client.on("connect_error", errors.append)
    client.on("disconnect", reasons.append)
    async with scripted_server(script) as url:
        await within(client.connect(url))
        await within(accepted.wait())
    # The server is gone (it closed the connection, then stopped listening).
    assert not client.connected
    await client.emit("kept", 1)

    async def one_too_many() -> None:
        with pytest.raises(Disconnected, match="buffer of 2 packets is full"):
            await client.emit("one too many")

    # Tasks start in order: the emit_with_ack fills the buffer, then the next
    # emit finds it full. The buffered emit_with_ack fails once the client gives up.
    acked, _ = await within(
        asyncio.gather(
            client.emit_with_ack("kept", 2, timeout=None), one_too_many(), return_exceptions=True
        )
    )
    assert isinstance(acked, Disconnected)
    await within(client.wait())
    assert len(reasons) == 1
    assert len(errors) == 3
    assert all(isinstance(error, OSError) for error in errors)
