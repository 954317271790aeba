"""How the server serves each connection (``_serving.py``): the handshake
answered in the first read's callback, a MessageHandler without a task, the
handshake deadline before any byte, and the handshake task for the rest."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import tether
from conftest import OP_CLOSE, OP_TEXT, OpenRaw, StartServer, echo, ws_uri
from helpers import timeout


class Recorder(tether.MessageHandler):
    """Records the callbacks; ``fail`` names one that raises."""

    def __init__(self, fail: str = "") -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail
        self.closed = asyncio.Event()

    def on_open(self, connection: tether.Connection) -> None:
        self.events.append(("open", connection.path))
        if self.fail == "on_open":
            raise RuntimeError("on_open bug")

    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        connection.send_nowait(message)

    def on_close(self, connection: tether.Connection) -> None:
        self.events.append(("close", connection.path))
        self.closed.set()
        if self.fail == "on_close":
            raise RuntimeError("on_close bug")


def server_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The tasks that exist now and did not before (not the test's own)."""
    return asyncio.all_tasks() - before - {asyncio.current_task()}  # type: ignore[operator]


async def test_a_message_handler_serves_whole_requests_without_a_task(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    handler = Recorder()
    server = await start_server(handler)
    before = asyncio.all_tasks()
    clients = [await raw_client(server.port) for _ in range(10)]  # the request in one write
    for i, client in enumerate(clients):
        client.send_frame(OP_TEXT, b"n%d" % i)
        assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"n%d" % i)
    assert len(server.connections) == 10
    assert server_tasks(before) == set()
    assert handler.events == [("open", "/")] * 10


async def test_a_handler_coroutine_gets_one_task_per_connection(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(echo)
    before = asyncio.all_tasks()
    clients = [await raw_client(server.port) for _ in range(10)]
    for client in clients:
        client.send_frame(OP_TEXT, b"x")
        assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"x")
    tasks = server_tasks(before)
    assert len(tasks) == 10  # the handlers', no handshake task left
    assert tasks <= server._serving.tasks
    for client in clients:
        client.send_frame(OP_CLOSE, b"\x03\xe8")
        assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_CLOSE, b"\x03\xe8")
    _, pending = await asyncio.wait(tasks, timeout=timeout())
    assert pending == set()
    # Each task took itself out (no done callback): nothing is kept.
    assert server._serving.tasks == set()


async def test_wait_closed_forgets_a_handler_task_cancelled_before_it_ran(
    start_server: StartServer,
) -> None:
    server = await start_server(echo)
    serving = server._serving
    loop = asyncio.get_running_loop()
    # As Serving.first_request makes it; cancelled before its first step, its
    # coroutine never runs the code that takes it out of tasks.
    task = loop.create_task(serving._run(object(), loop))  # type: ignore[arg-type]
    serving.tasks.add(task)
    task.cancel()
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(3))
    assert task.cancelled()
    assert serving.tasks == set()


async def test_a_request_split_across_reads_is_served(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(Recorder())
    client = await raw_client(server.port, handshake=False)
    request = client.request("/split")
    for part in (request[:7], request[7:40], request[40:]):
        client.writer.write(part)
        await client.writer.drain()
    head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), timeout(2))
    assert head.startswith(b"HTTP/1.1 101 ")
    client.send_frame(OP_TEXT, b"after")
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"after")


async def test_a_silent_connection_is_dropped_at_open_timeout(
    start_server: StartServer, raw_client: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    open_timeout = timeout(0.4)
    server = await start_server(open_timeout=open_timeout)
    caplog.set_level(logging.INFO, logger="tether.server")
    started = time.monotonic()
    silent = await raw_client(server.port, handshake=False)  # sends nothing at all
    async with tether.connect(ws_uri(server)) as other:  # others are served meanwhile
        await other.send("ping")
        assert await asyncio.wait_for(other.recv(), timeout()) == "ping"
    assert await asyncio.wait_for(silent.at_eof(), timeout(3))
    elapsed = time.monotonic() - started
    # The deadline waits in the shared buckets: at most 1/16 late.
    assert open_timeout * 0.9 < elapsed < open_timeout * 1.5 + timeout(0.5)
    timed_out = [r for r in caplog.records if r.getMessage() == "opening handshake timed out"]
    assert len(timed_out) == 1


async def test_a_whole_request_meets_the_deadline(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    open_timeout = timeout(0.3)
    server = await start_server(Recorder(), open_timeout=open_timeout)
    client = await raw_client(server.port)
    # Well past open_timeout, the open connection is still served.
    waited = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(open_timeout * 2, waited.set_result, None)
    await waited
    client.send_frame(OP_TEXT, b"late")
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"late")


async def test_on_close_runs_once_when_the_peer_closes(start_server: StartServer) -> None:
    handler = Recorder()
    server = await start_server(handler)
    async with tether.connect(ws_uri(server, "/a")) as client:
        await client.send("hi")
        assert await asyncio.wait_for(client.recv(), timeout()) == "hi"
    await asyncio.wait_for(handler.closed.wait(), timeout())
    assert handler.events == [("open", "/a"), ("close", "/a")]
    assert server.connections == set()


async def test_wait_closed_returns_after_every_on_close(start_server: StartServer) -> None:
    handler = Recorder()
    server = await start_server(handler)
    clients = [await tether.connect(ws_uri(server, f"/{i}")) for i in range(5)]
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(3))
    assert sorted(e for e in handler.events if e[0] == "close") == [
        ("close", f"/{i}") for i in range(5)
    ]
    for client in clients:
        with pytest.raises(tether.ConnectionClosed):
            await asyncio.wait_for(client.recv(), timeout())
        assert client.close_code == 1001


async def test_on_open_failing_closes_with_1011_and_skips_on_close(
    start_server: StartServer, raw_client: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(fail="on_open")
    server = await start_server(handler)
    client = await raw_client(server.port)
    closing = (OP_CLOSE, b"\x03\xf3internal error")  # 1011
    assert await asyncio.wait_for(client.read_frame(), timeout()) == closing
    client.send_frame(OP_CLOSE, b"\x03\xf3")
    assert await asyncio.wait_for(client.at_eof(), timeout())
    assert any(r.getMessage() == "connection handler failed" for r in caplog.records)
    assert handler.events == [("open", "/")]
    async with tether.connect(ws_uri(server)) as other:  # and the server carries on
        assert len(server.connections) == 1
        assert handler.events == [("open", "/")] * 2
        await other.close()


async def test_on_close_failing_is_logged_and_the_server_carries_on(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder(fail="on_close")
    server = await start_server(handler)
    async with tether.connect(ws_uri(server)):
        pass
    await asyncio.wait_for(handler.closed.wait(), timeout())
    assert any(r.getMessage() == "connection handler failed" for r in caplog.records)
    async with tether.connect(ws_uri(server)) as client:
        await client.send("still")
        assert await asyncio.wait_for(client.recv(), timeout()) == "still"


async def test_a_message_handler_with_its_own_call_runs_as_a_coroutine(
    start_server: StartServer,
) -> None:
    called = asyncio.Event()

    class Wrapped(Recorder):
        async def __call__(self, connection: tether.Connection) -> None:
            called.set()
            await super().__call__(connection)

    handler = Wrapped()
    server = await start_server(handler)
    async with tether.connect(ws_uri(server)) as client:
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), timeout()) == "x"
    assert called.is_set()
    await asyncio.wait_for(handler.closed.wait(), timeout())


async def test_a_route_set_after_the_server_started_sees_every_request(
    start_server: StartServer,
) -> None:
    server = await start_server(Recorder())
    seen: list[str] = []

    def route(connection: tether.Connection, request: tether.protocol.Request) -> bool:
        seen.append(request.path)
        return False

    server.route = route
    async with tether.connect(ws_uri(server, "/routed")) as client:
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), timeout()) == "x"
    assert seen == ["/routed"]


async def test_an_async_process_request_answers_from_the_first_read(
    start_server: StartServer,
) -> None:
    async def process_request(
        connection: tether.Connection, request: tether.protocol.Request
    ) -> tether.protocol.Response | None:
        await asyncio.sleep(0)  # a real await: the rest of the handshake runs in a task
        if request.path == "/no":
            return tether.protocol.Response(403, "Forbidden", body=b"no\n")
        return None

    server = await start_server(Recorder(), process_request=process_request)
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server, "/no"), open_timeout=timeout(2))
    assert info.value.response.status == 403
    async with tether.connect(ws_uri(server, "/yes")) as client:
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), timeout()) == "x"
