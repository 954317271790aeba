"""tether.realtime.server.asgi: the realtime server as an ASGI app, under uvicorn.

uvicorn runs in the test's event loop on a socket bound to 127.0.0.1 port 0
(listening before uvicorn starts, so clients never race its startup), with
each of its WebSocket implementations. The clients are python-socketio's
``AsyncClient`` (both transports) and aiohttp or raw streams for HTTP details.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tether
from helpers import timeout
from tether import realtime
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
        assert server._started  # the adapter was started
        async with http.ws_connect(url + "/plain") as ws:
            assert (await ws.receive(timeout=timeout(3))).data == "plain /plain"
        # The Engine.IO endpoint is still ours: a request without EIO is refused.
        async with http.get(url + "/socket.io/") as response:
            assert response.status == 400
            assert await response.json() == {"code": 5, "message": "Unsupported protocol version"}
    assert plain.lifespan == ["lifespan.startup", "lifespan.shutdown"]
    assert not server._started


async def test_no_other_app() -> None:
    server, _ = echo_server()
    app = ASGIApp(server)
    async with under_uvicorn(app) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/elsewhere") as response:
            assert response.status == 404
        assert server._started  # lifespan handled by the app itself
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/elsewhere")
        assert refused.value.status == 404
    assert not server._started


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
