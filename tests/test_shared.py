"""What the connections of one event loop share (tether._shared): keepalive
buckets and the end-of-iteration flush."""

from __future__ import annotations

import asyncio
import gc
import struct

import tether
from conftest import OP_CLOSE, OP_PING, OpenRaw, StartServer, echo
from helpers import timeout
from tether import _shared


async def test_keepalive_timers_are_shared_and_let_go_of_closed_connections(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # One bucket of the loop's keepalive timers holds both connections; the
    # one that closes leaves it at once, the other is still pinged.
    server = await start_server(ping_interval=timeout(0.2), ping_timeout=timeout(1))
    first = await raw_client(server.port)
    second = await raw_client(server.port)
    await asyncio.sleep(0)
    buckets = _shared.for_loop(asyncio.get_running_loop())._buckets
    assert sum(len(bucket) for bucket in buckets.values()) >= 2
    served = list(server.connections)
    assert len(served) == 2
    first.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    await asyncio.wait_for(first.read_close(), timeout())
    assert await asyncio.wait_for(first.at_eof(), timeout())
    # The server side of `first` is closed once its connection_lost ran.
    waits = [asyncio.ensure_future(connection.wait_closed()) for connection in served]
    done, pending = await asyncio.wait(waits, timeout=timeout(), return_when="FIRST_COMPLETED")
    for waiting in pending:
        waiting.cancel()
    assert len(done) == 1
    assert sum(len(bucket) for bucket in buckets.values()) == 1
    opcode, _ = await asyncio.wait_for(second.read_frame(), timeout())
    assert opcode == OP_PING


async def test_queued_writes_are_flushed_together_and_one_failure_skips_none() -> None:
    loop = asyncio.get_running_loop()
    shared = _shared.LoopShared(loop)
    flushed: list[str] = []
    errors: list[dict[str, object]] = []

    class Queued:
        def __init__(self, name: str) -> None:
            self.name = name

        def flush(self) -> None:
            flushed.append(self.name)
            if self.name == "broken":
                raise RuntimeError("transport gone")

    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        for name in ("a", "broken", "c"):
            shared.flush_soon(Queued(name))
        assert flushed == []  # at the end of the loop iteration, not at once
        later = loop.create_future()
        loop.call_soon(later.set_result, None)
        await asyncio.wait_for(later, timeout())
        assert flushed == ["a", "broken", "c"]
        assert [context["message"] for context in errors] == ["flush failed"]
        shared.flush_soon(Queued("next"))  # the next iteration schedules anew
        later = loop.create_future()
        loop.call_soon(later.set_result, None)
        await asyncio.wait_for(later, timeout())
        assert flushed[-1] == "next"
    finally:
        loop.set_exception_handler(previous)


def test_a_loop_that_is_gone_takes_its_shared_buffer_with_it() -> None:
    """for_loop's entry (a 1 MiB read buffer) goes with its loop: the loops
    that asyncio.run makes one after the other do not pile up."""

    async def serve_one() -> None:
        server = await tether.serve(echo, "127.0.0.1", 0)
        async with server, tether.connect(f"ws://127.0.0.1:{server.port}") as client:
            await client.send("x")
            assert await asyncio.wait_for(client.recv(), timeout()) == "x"

    before = len(_shared._SHARED)
    for _ in range(3):
        asyncio.run(serve_one())
    other = asyncio.new_event_loop()
    _shared.for_loop(other)  # the last-asked cache moves on
    other.close()
    gc.collect()
    assert len(_shared._SHARED) <= before + 1
