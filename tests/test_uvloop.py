"""The optional extra tether[uvloop]: the whole stack runs on uvloop too."""

from __future__ import annotations

import asyncio

import pytest

import tether
from helpers import echo_in_flight, send_past_a_1009, timeout

uvloop = pytest.importorskip("uvloop")


class Echo(tether.MessageHandler):
    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        connection.send_nowait(message)


async def echo(connection: tether.Connection) -> None:
    async for message in connection:
        await connection.send(message)


async def scenario() -> list[object]:
    assert "uvloop" in type(asyncio.get_running_loop()).__module__
    seen: list[object] = []
    for handler in (echo, Echo()):
        async with tether.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}"
            async with tether.connect(uri) as a, tether.connect(uri) as b:
                await a.send("text")
                await a.send(b"\x00" * 100_000)
                seen.append(await asyncio.wait_for(a.recv(), timeout()))
                seen.append(len(await asyncio.wait_for(a.recv(), timeout())))
                seen.append(await asyncio.wait_for(a.ping(), timeout()) > 0)
                assert tether.broadcast(server.connections, "all") == 2
                seen.append(await asyncio.wait_for(b.recv(), timeout()))
            seen.append(a.close_code)
    return seen


def test_server_client_broadcast_and_callbacks_on_uvloop() -> None:
    expected = ["text", 100_000, True, "all", 1000]
    assert uvloop.run(scenario()) == expected * 2


async def echo_in_flight_scenario(size: int, count: int) -> None:
    limits = {"max_message_size": size, "max_frame_size": size, "max_queue_bytes": 32 * size}
    async with tether.serve(echo, "127.0.0.1", 0, compression=None, **limits) as server:
        await echo_in_flight(f"ws://127.0.0.1:{server.port}", size, 32, count)


@pytest.mark.parametrize(("size", "count"), [(64 * 1024, 256), (1024 * 1024, 64)])
def test_echo_with_32_large_messages_in_flight_never_stalls_on_uvloop(
    size: int, count: int
) -> None:
    # uvloop's buffered reads, pause/resume and vectored writes differ from
    # asyncio's: the benchmark's echo workload on both (see test_connection.py).
    uvloop.run(echo_in_flight_scenario(size, count))


async def linger_scenario() -> bytes:
    async with tether.serve(echo, "127.0.0.1", 0, max_message_size=1000) as server:
        return await asyncio.to_thread(send_past_a_1009, server.port)


def test_a_failed_connection_lingers_on_uvloop() -> None:
    # Lingering swaps the transport's protocol (set_protocol), which uvloop
    # implements on its own; see test_server.py.
    received = uvloop.run(linger_scenario())
    assert (received[0], int.from_bytes(received[2:4], "big")) == (0x88, 1009)
