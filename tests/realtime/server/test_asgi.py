"""tether.realtime.server.asgi: the realtime server as an ASGI app, under uvicorn.

uvicorn runs in the test's event loop on a socket bound to 127.0.0.1 port 0
(listening before uvicorn starts, so clients never race its startup), with
each of its WebSocket implementations. The clients are python-socketio's
``AsyncClient`` (both transports) and aiohttp or raw streams for HTTP details.
Mounted in FastAPI without lifespan wiring, the app starts the server on its
first request, once, with one warning; a start that fails answers 500 and is
logged once, even when no request waits for it any more; after a shutdown,
requests get 503 and nothing restarts the server but an explicit start(). A
WebSocket opened directly gets the sid cookie in the accept's headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from helpers import timeout
from realtime.redis_helpers import redis_server
from tether import realtime
from tether.realtime.adapters.redis import Emitter, RedisAdapter
from tether.realtime.server.asgi import ASGIApp

uvicorn = pytest.importorskip("uvicorn")
aiohttp = pytest.importorskip("aiohttp")
socketio = pytest.importorskip("socketio")

WS_IMPLEMENTATIONS = ["websockets-sansio", "wsproto"]


@contextlib.asynccontextmanager
async def under_uvicorn(app: Any, ws: str = "websockets-sansio") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws=ws, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout(5))
        sock.close()


def echo_server(**options: Any) -> tuple[realtime.Server, asyncio.Queue[tuple[str, str]]]:
    """A server with ``echo``, ``ask`` (its emit_with_ack) and ``binary`` events on
    ``/`` and ``/chat``; disconnect reasons go on the queue."""
    server = realtime.Server(**options)
    reasons: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for nsp in (server, server.of("/chat")):

        @nsp.on("echo")
        def echo(sock: realtime.Socket, *args: Any) -> tuple[Any, ...]:
            return args

        @nsp.on("ask")
        async def ask(sock: realtime.Socket, value: Any) -> Any:
            return await sock.emit_with_ack("question", value, timeout=timeout(3))

        @nsp.on("binary")
        def binary(sock: realtime.Socket, data: bytes) -> list[bytes]:
            return [data[::-1], data]

        @nsp.on("shout")
        async def shout(sock: realtime.Socket, text: str) -> None:
            await sock.namespace.emit("shouted", text)

        @nsp.on("disconnect")
        def disconnect(sock: realtime.Socket, reason: str) -> None:
            reasons.put_nowait((sock.nsp, reason))

    return server, reasons


class PlainApp:
    """A plain ASGI app: ``/hello`` answers ``hi``; records lifespan messages."""

    def __init__(self) -> None:
        self.lifespan: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": f"plain {scope['path']}"})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = f"hi from {scope['path']}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling"], None], ids=["ws", "polling", "upgrade"]
)
async def test_python_socketio_client(ws: str, transports: list[str] | None) -> None:
    server, reasons = echo_server()
    client = socketio.AsyncClient(reconnection=False)
    shouted: asyncio.Queue[Any] = asyncio.Queue()
    client.on("question", lambda value: {"answer": value}, namespace="/chat")
    client.on("shouted", shouted.put_nowait)
    options = {} if transports is None else {"transports": transports}
    async with under_uvicorn(server.asgi_app(), ws=ws) as url:
        await client.connect(url, namespaces=["/", "/chat"], wait_timeout=timeout(5), **options)
        try:
            assert await client.call("echo", (1, "two"), timeout=timeout(3)) == (1, "two")
            answer = await client.call("ask", "q", namespace="/chat", timeout=timeout(3))
            assert answer == {"answer": "q"}
            data = b"\x00\x01\xff"
            assert await client.call("binary", data, timeout=timeout(3)) == [data[::-1], data]
            await client.emit("shout", "hey")
            assert await asyncio.wait_for(shouted.get(), timeout(3)) == "hey"
            if transports is None:
                while client.transport() != "websocket":  # each call is a round trip
                    await client.call("echo", timeout=timeout(1))
            assert client.transport() == (transports or ["websocket"])[0]
        finally:
            await client.disconnect()
        reason = await asyncio.wait_for(reasons.get(), timeout(3))
        assert reason[1] in ("client namespace disconnect", "transport close", "forced close")


async def test_broadcast_to_several_asgi_websockets() -> None:
    """A broadcast (encoded once) reaches every session, none of them a tether
    Connection: the packets go through the ASGI adapter one by one."""
    server, _ = echo_server()
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(3)]
    received: asyncio.Queue[Any] = asyncio.Queue()
    for client in clients:
        client.on("shouted", received.put_nowait)
    async with under_uvicorn(server.asgi_app()) as url:
        for client in clients:
            await client.connect(url, transports=["websocket"], wait_timeout=timeout(5))
        try:
            await clients[0].emit("shout", b"\x01binary")
            for _ in clients:
                assert await asyncio.wait_for(received.get(), timeout(3)) == b"\x01binary"
        finally:
            for client in clients:
                await client.disconnect()


async def test_other_app_and_lifespan() -> None:
    server, _ = echo_server()
    plain = PlainApp()
    async with under_uvicorn(server.asgi_app(plain)) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/hello?x=1") as response:
            assert (response.status, await response.text()) == (200, "hi from /hello")
        # uvicorn answers requests once the startup is complete.
        assert plain.lifespan == ["lifespan.startup"]
        assert server.started  # the adapter was started
        async with http.ws_connect(url + "/plain") as ws:
            assert (await ws.receive(timeout=timeout(3))).data == "plain /plain"
        # The Engine.IO endpoint is still ours: a request without EIO is refused.
        async with http.get(url + "/socket.io/") as response:
            assert response.status == 400
            assert await response.json() == {"code": 5, "message": "Unsupported protocol version"}
    assert plain.lifespan == ["lifespan.startup", "lifespan.shutdown"]
    assert not server.started


async def test_no_other_app() -> None:
    server, _ = echo_server()
    app = ASGIApp(server)
    async with under_uvicorn(app) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/elsewhere") as response:
            assert response.status == 404
        assert server.started  # lifespan handled by the app itself
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/elsewhere")
        assert refused.value.status == 404
    assert not server.started


async def test_static_files(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hello</h1>")
    server, _ = echo_server(static_files={"/": str(tmp_path)})
    async with under_uvicorn(server.asgi_app(PlainApp())) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert await response.text() == "<h1>hello</h1>"
        async with http.get(url + "/missing.txt") as response:  # on to the other app
            assert await response.text() == "hi from /missing.txt"


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_websocket_refused_before_accept(ws: str) -> None:
    server, _ = echo_server(transports=["polling"])
    async with under_uvicorn(server.asgi_app(), ws=ws) as url, aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket")
        assert refused.value.status == 400  # the engine's answer, not a bare 403


# -- long-polling details, over raw HTTP ----------------------------------------------


async def open_polling(http: Any, url: str) -> str:
    """An Engine.IO session over polling, connected to "/"; its sid."""
    endpoint = url + "/socket.io/?EIO=4&transport=polling"
    async with http.get(endpoint) as response:
        sid: str = json.loads((await response.text())[1:])["sid"]
    async with http.post(f"{endpoint}&sid={sid}", data=b"40") as response:
        assert await response.text() == "ok"
    async with http.get(f"{endpoint}&sid={sid}") as response:
        assert (await response.text()).startswith("40{")
    return sid


async def test_body_over_max_payload() -> None:
    server, _ = echo_server(max_payload=1000)
    async with under_uvicorn(server.asgi_app()) as url, aiohttp.ClientSession() as http:
        sid = await open_polling(http, url)
        endpoint = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        # With a Content-Length: refused before reading the body.
        async with http.post(endpoint, data=b"4" + b"x" * 2000) as response:
            assert response.status == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"x" * 100

        # Chunked, no Content-Length: refused once past the limit.
        async with http.post(endpoint, data=chunks()) as response:
            assert response.status == 413
        async with http.post(endpoint, data=b'42["echo"]') as response:
            assert response.status == 200  # the session is fine


def noting_held_get(app: Any, held: asyncio.Event) -> Any:
    """Wrap ``app``: set ``held`` when a request marked ``held=1`` has its body
    read and the app listens for a disconnect (its second ``receive``); by then
    the Engine.IO handler it started first is waiting for packets."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or b"held=1" not in scope["query_string"]:
            await app(scope, receive, send)
            return
        calls = 0

        async def counting() -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                held.set()
            return await receive()

        await app(scope, counting, send)

    return wrapped


async def test_held_get_ends_when_client_disconnects() -> None:
    server, reasons = echo_server()
    held = asyncio.Event()
    app = noting_held_get(server.asgi_app(), held)
    async with under_uvicorn(app) as url, aiohttp.ClientSession() as http:
        sid = await open_polling(http, url)
        port = int(url.rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /socket.io/?EIO=4&transport=polling&sid={sid}&held=1 HTTP/1.1\r\n"
            "Host: localhost\r\n\r\n".encode()
        )
        await asyncio.wait_for(held.wait(), timeout(3))
        assert reasons.empty()
        writer.close()  # the client goes away in the middle of a poll
        assert await asyncio.wait_for(reasons.get(), timeout(3)) == ("/", "transport close")
        assert sid not in server.engine.sessions


# -- hostile clients (issue 12; the tether-served counterparts are in test_hostile_engine.py) --


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_cross_origin_refused_by_default(ws: str) -> None:
    server, _ = echo_server()
    async with under_uvicorn(server.asgi_app(), ws=ws) as url, aiohttp.ClientSession() as http:
        endpoint = url + "/socket.io/?EIO=4&transport="
        evil = {"Origin": "https://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(endpoint + "websocket", headers=evil)
        assert refused.value.status == 403
        async with http.get(endpoint + "polling", headers=evil) as response:
            assert response.status == 403
        # The server's own origin gets in.
        async with http.ws_connect(endpoint + "websocket", headers={"Origin": url}) as socket:
            assert (await socket.receive_str()).startswith("0{")


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_websocket_client_that_never_reads_is_closed(ws: str) -> None:
    # Acks of 100 KB never read: once uvicorn's send waits for the client, they
    # queue in ASGIWebSocket, reading stops, and past max_outgoing_bytes the
    # session is closed with 1008.
    server, reasons = echo_server(max_outgoing_bytes=96 * 1024)
    async with under_uvicorn(server.asgi_app(), ws=ws) as url:
        uri = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        client = await tether.connect(uri, max_queue=1, compression=None)
        assert str(await client.recv()).startswith("0{")
        await client.send("40")
        assert str(await client.recv()).startswith("40")
        payload = "x" * 100_000

        async def flood() -> None:
            n = 0
            while True:
                n += 1
                await client.send(f'42{n}["echo","{payload}"]')
                await asyncio.sleep(0)  # the attacker's pace: let the server run

        attack = asyncio.ensure_future(flood())
        try:
            reason = await asyncio.wait_for(reasons.get(), timeout(5))
        finally:
            attack.cancel()
        assert reason == ("/", "slow client")
        with contextlib.suppress(tether.ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), timeout(5))
        assert client.close_code == 1008


async def test_messages_read_ahead_are_bounded_in_bytes() -> None:
    # The ASGI server's own message limit (uvicorn: 16 MiB) may be far above
    # max_payload: what ASGIWebSocket reads ahead of the engine is bounded by
    # max_queue_bytes as well as max_queue, like tether's own connections.
    from tether.protocol.http import Request
    from tether.realtime.server.asgi import ASGIWebSocket

    offered = 0
    big = "x" * 400_000

    async def receive() -> dict[str, Any]:
        nonlocal offered
        offered += 1
        return {"type": "websocket.receive", "text": big}

    async def send(message: dict[str, Any]) -> None:
        pass

    limits = tether.Limits(max_queue=32, max_queue_bytes=1_000_000)
    socket = ASGIWebSocket(receive, send, Request("/"), limits=limits)
    try:
        for _ in range(20):  # the reader runs as far as it may
            await asyncio.sleep(0)
        assert offered == 3  # 3 x 400 KB: the one that crossed 1 MB is kept
        assert await socket.recv() == big
        for _ in range(20):
            await asyncio.sleep(0)
        assert offered == 4  # one taken, one more read
    finally:
        await socket.close()


# -- mounted in another app: no lifespan reaches it (issue 15, docs/deployment.md) -----


class GatedAdapter(realtime.Adapter):
    """The in-memory adapter, counting its starts and closes; a start waits
    for ``gate`` and raises ``error`` when one is set (then clears it)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0
        self.closes = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def start(self) -> None:
        self.starts += 1
        self.entered.set()
        await self.gate.wait()
        error, self.error = self.error, None
        if error is not None:
            raise error

    async def close(self) -> None:
        self.closes += 1


def mounted(server: realtime.Server, **options: Any) -> Any:
    """A FastAPI app with ``server`` mounted at /rt, as docs/deployment.md
    shows (``options`` go to FastAPI: ``lifespan=``)."""
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI(**options)
    app.mount("/rt", server.asgi_app())
    return app


def unwired_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "tether.realtime" and "lifespan=server.lifespan" in record.message
    ]


def held_start(error: Exception | None = None) -> tuple[GatedAdapter, realtime.Server]:
    """A server whose adapter's start waits for its gate (closed), then
    raises ``error`` if given."""
    adapter = GatedAdapter()
    adapter.gate.clear()
    adapter.error = error
    return adapter, joining_server(adapter)


def joining_server(adapter: realtime.Adapter) -> realtime.Server:
    server = realtime.Server(adapter=adapter)

    @server.on("join")
    async def join(sock: realtime.Socket, room: str) -> str:
        await sock.join(room)
        return room

    return server


async def sio_clients(url: str, count: int) -> list[Any]:
    """``count`` python-socketio clients (default transports: polling first)
    connecting at once, on the sub-path."""
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(count)]
    await asyncio.gather(
        *(
            client.connect(url, socketio_path="/rt/socket.io", wait_timeout=timeout(5))
            for client in clients
        )
    )
    return clients


@pytest.mark.parametrize("adapter", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_mounted_without_lifespan_starts_on_first_use(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tether.realtime")
    with contextlib.ExitStack() as stack:
        if adapter == "redis":
            redis = stack.enter_context(redis_server())
            server = joining_server(RedisAdapter(redis.url))
        else:
            server = joining_server(realtime.Adapter())
        news: asyncio.Queue[Any] = asyncio.Queue()
        async with under_uvicorn(mounted(server)) as url:
            assert not server.started  # no lifespan reached it
            clients = await sio_clients(url, 3)
            try:
                assert server.started
                for client in clients:
                    client.on("news", news.put_nowait)
                    assert await client.call("join", "lobby", timeout=timeout(3)) == "lobby"
                if adapter == "redis":
                    async with Emitter(redis.url) as emitter:
                        assert await emitter.to("lobby").emit("news", 1) == 1  # the node
                else:
                    await server.to("lobby").emit("news", 1)
                for _ in clients:
                    assert await asyncio.wait_for(news.get(), timeout(3)) == 1
            finally:
                for client in clients:
                    await client.disconnect()
        # One warning naming the fix, however many requests came.
        assert len(unwired_warnings(caplog)) == 1
        assert server.started  # nothing stopped it: the warning says so
        await server.shutdown()


async def test_concurrent_first_requests_wait_for_one_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "tether.realtime")
    adapter, server = held_start()
    arrived = 0
    all_in = asyncio.Event()
    app = mounted(server)

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        nonlocal arrived
        if scope["type"] == "http":
            arrived += 1
            if arrived == 3:
                all_in.set()
        # Up to its wait for the start, the mounted app runs without yielding.
        await app(scope, receive, send)

    async with under_uvicorn(counting) as url, aiohttp.ClientSession() as http:
        endpoint = url + "/rt/socket.io/?EIO=4&transport=polling"

        async def handshake() -> str:
            async with http.get(endpoint) as response:
                assert response.status == 200
                return await response.text()

        requests = [asyncio.ensure_future(handshake()) for _ in range(3)]
        await asyncio.wait_for(all_in.wait(), timeout(5))
        assert adapter.starts == 1 and not any(request.done() for request in requests)
        adapter.gate.set()
        for body in await asyncio.wait_for(asyncio.gather(*requests), timeout(5)):
            assert body.startswith("0{")
    assert adapter.starts == 1
    assert len(unwired_warnings(caplog)) == 1
    await server.shutdown()
    assert adapter.closes == 1


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_failed_start_answers_500_logs_and_retries(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = GatedAdapter()
    server = joining_server(adapter)
    async with under_uvicorn(mounted(server), ws=ws) as url, aiohttp.ClientSession() as http:
        endpoint = url + "/rt/socket.io/?EIO=4&transport="
        adapter.error = RuntimeError("broker unreachable")
        async with http.get(endpoint + "polling") as response:
            assert response.status == 500
            assert "could not start" in await response.text()
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].name == "tether.realtime"
        assert errors[0].exc_info is not None
        assert str(errors[0].exc_info[1]) == "broker unreachable"  # the cause, with its traceback
        adapter.error = RuntimeError("still unreachable")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(endpoint + "websocket")
        assert refused.value.status == 500  # refused before the accept
        assert not server.started
        # The next request tries again, and this start succeeds.
        async with http.ws_connect(endpoint + "websocket") as socket:
            assert (await socket.receive_str(timeout=timeout(3))).startswith("0{")
        assert server.started and adapter.starts == 3
    assert len(unwired_warnings(caplog)) == 1
    await server.shutdown()


async def test_lifespan_helper_starts_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tether.realtime")
    adapter = GatedAdapter()
    server = joining_server(adapter)
    async with under_uvicorn(mounted(server, lifespan=server.lifespan)) as url:
        # uvicorn answers once the startup is complete: started by then.
        (client,) = await sio_clients(url, 1)
        assert server.started and adapter.starts == 1
        try:
            assert await client.call("join", "lobby", timeout=timeout(3)) == "lobby"
        finally:
            await client.disconnect()
    assert not server.started and adapter.closes == 1
    assert not unwired_warnings(caplog)
    # Entered by hand, as in a lifespan of one's own.
    async with server.lifespan():
        assert server.started
    assert not server.started and (adapter.starts, adapter.closes) == (2, 2)


async def test_lifespan_startup_failure_is_reported() -> None:
    # As the top-level app, a start that fails is the ASGI server's to report
    # (lifespan.startup.failed: uvicorn logs it and does not serve).
    adapter = GatedAdapter()
    adapter.error = RuntimeError("broker unreachable")
    app = ASGIApp(joining_server(adapter))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, receive, send), timeout(3))
    failed = {"type": "lifespan.startup.failed", "message": "RuntimeError('broker unreachable')"}
    assert sent == [failed]


async def no_cookie_on_direct_websocket(url: str) -> None:
    endpoint = url + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(endpoint) as socket:
        assert socket._response is not None
        assert "Set-Cookie" not in socket._response.headers


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_direct_websocket_gets_the_sid_cookie(ws: str) -> None:
    # As tether's own server does on its 101 (test_engine_cookie.py): a session
    # opened over WebSocket without polling first gets its sid in Set-Cookie,
    # given in the headers of websocket.accept.
    server = realtime.Server(cookie=True)
    async with under_uvicorn(server.asgi_app(), ws=ws) as url, aiohttp.ClientSession() as http:
        endpoint = url + "/socket.io/?EIO=4&transport="
        async with http.ws_connect(endpoint + "websocket") as socket:
            assert socket._response is not None
            (cookie,) = socket._response.headers.getall("Set-Cookie")
            opened = json.loads((await socket.receive_str(timeout=timeout(3)))[1:])
            assert cookie == f"io={opened['sid']}; Path=/; HttpOnly; SameSite=Lax"
        # The upgrade of a polling session carries no cookie: the handshake had it.
        async with http.get(endpoint + "polling") as response:
            assert response.cookies["io"].value == json.loads((await response.text())[1:])["sid"]
            sid = response.cookies["io"].value
        async with http.ws_connect(f"{endpoint}websocket&sid={sid}") as socket:
            assert socket._response is not None
            assert "Set-Cookie" not in socket._response.headers
    # Without the option, no cookie at all.
    async with under_uvicorn(realtime.Server().asgi_app(), ws=ws) as url:
        await no_cookie_on_direct_websocket(url)


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
async def test_no_restart_after_shutdown(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    # A mounted app starts the server on its first request; once the server is
    # shut down, a late request gets a 503 (a WebSocket is refused) instead of
    # starting the adapter again. Only an explicit start() opens it again.
    caplog.set_level(logging.WARNING, "tether.realtime")
    adapter = GatedAdapter()
    server = joining_server(adapter)
    async with under_uvicorn(mounted(server), ws=ws) as url, aiohttp.ClientSession() as http:
        endpoint = url + "/rt/socket.io/?EIO=4&transport="
        async with http.get(endpoint + "polling") as response:
            assert response.status == 200
        assert server.started and not server.closed
        await server.shutdown()
        assert server.closed and not server.started and adapter.closes == 1
        async with http.get(endpoint + "polling") as response:
            assert response.status == 503
            assert "shut down" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(endpoint + "websocket")
        assert refused.value.status == 503
        assert adapter.starts == 1 and not server.started
        await server.start()  # explicit: open again
        assert not server.closed
        async with http.get(endpoint + "polling") as response:
            assert response.status == 200
        assert adapter.starts == 2
    assert len(unwired_warnings(caplog)) == 1
    await server.shutdown()


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, letting other tasks run (bounded)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout(3))


async def test_start_during_shutdown_is_refused() -> None:
    adapter, server = held_start()
    pending = asyncio.ensure_future(server.start())
    await asyncio.wait_for(adapter.entered.wait(), timeout(3))
    # shutdown() waits for the start under way, then stops the adapter.
    stopping = asyncio.ensure_future(server.shutdown())
    await until(lambda: server.closed)
    with pytest.raises(tether.InvalidState, match="shutdown"):
        await server.start()
    adapter.gate.set()
    await asyncio.wait_for(asyncio.gather(pending, stopping), timeout(3))
    assert server.closed and not server.started and adapter.closes == 1


async def test_failed_start_nobody_waits_for_is_retrieved_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The requests waiting for the start go away (an ASGI server may cancel
    # the app's task when its client disconnects) before the adapter fails:
    # the error is still retrieved (no "Task exception was never retrieved"
    # from asyncio) and logged once, with its cause.
    caplog.set_level(logging.DEBUG, "asyncio")
    adapter, server = held_start(RuntimeError("broker unreachable"))
    app = server.asgi_app()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=polling",
        "headers": [],
    }
    never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        raise AssertionError(f"nothing is sent to a client that left: {message}")

    requests = [asyncio.ensure_future(app(scope, lambda: never, send)) for _ in range(2)]
    await asyncio.wait_for(adapter.entered.wait(), timeout(3))
    for request in requests:
        request.cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    adapter.gate.set()
    await until(lambda: adapter.error is None)  # the adapter raised it
    await until(lambda: server._starting is None)  # the start task ended
    del requests
    gc.collect()
    await asyncio.sleep(0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].name == "tether.realtime" and errors[0].exc_info is not None
    assert str(errors[0].exc_info[1]) == "broker unreachable"
    assert not server.started
