"""docs/migrating.md, "websockets → tether": each claim the page makes about
what websockets does and what tether does instead, run against both.

websockets is the version installed in the test environment (its asyncio
API, ``websockets.asyncio``, and ``websockets.sync.client``); everything runs
on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import inspect
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import websockets
import websockets.exceptions
import websockets.sync.client
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import broadcast as ws_broadcast
from websockets.asyncio.server import serve as ws_serve

import tether
import tether.sync
from helpers import timeout

pytestmark = pytest.mark.interop

LIBS = ("websockets", "tether")
Handler = Callable[[Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def served(lib: str, handler: Handler, **options: Any) -> AsyncIterator[str]:
    """Serve ``handler`` with ``lib``'s server; yield its ws:// URI."""
    serve: Any = ws_serve if lib == "websockets" else tether.serve
    async with serve(handler, "127.0.0.1", 0, **options) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def connect(lib: str, uri: str, **options: Any) -> Any:
    """``lib``'s client: websockets.asyncio.client.connect or tether.connect."""
    return ws_connect(uri, **options) if lib == "websockets" else tether.connect(uri, **options)


async def echo(connection: Any) -> None:
    async for message in connection:
        await connection.send(message)


def closing_with(code: int) -> Handler:
    async def handler(connection: Any) -> None:
        await connection.recv()
        await connection.close(code, "bye")

    return handler


# -- recv, send, iteration, close codes, exceptions ----------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("code", [1000, 1001, 1011, 4000])
async def test_close_codes_and_exceptions(lib: str, code: int) -> None:
    clean = code in (1000, 1001)
    async with served(lib, closing_with(code)) as uri, connect(lib, uri) as ws:
        await ws.send("x")
        if clean:
            assert [message async for message in ws] == []  # iteration just ends
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(ws.recv(), timeout(5))
        assert type(caught.value).__name__ == (
            "ConnectionClosedOK" if clean else "ConnectionClosedError"
        )
        assert caught.value.rcvd.code == ws.close_code == code
        assert caught.value.rcvd.reason == ws.close_reason == "bye"
    if not clean:
        async with served(lib, closing_with(code)) as uri, connect(lib, uri) as ws:
            await ws.send("x")
            with pytest.raises(Exception) as caught:
                async for _ in ws:
                    pass
            assert type(caught.value).__name__ == "ConnectionClosedError"


async def test_the_exception_classes_map_one_to_one() -> None:
    assert issubclass(tether.ConnectionClosedOK, tether.ConnectionClosed)
    assert issubclass(websockets.exceptions.ConnectionClosedOK, websockets.ConnectionClosed)
    # .code and .reason: deprecated in websockets, plain properties in tether.
    closed = tether.ConnectionClosedError(None, None)
    assert (closed.code, closed.reason) == (1006, "")
    with pytest.warns(DeprecationWarning):
        assert websockets.exceptions.ConnectionClosedError(None, None).code == 1006


@pytest.mark.parametrize("lib", LIBS)
async def test_a_failing_handler_closes_with_1011_and_one_that_returns_with_1000(
    lib: str,
) -> None:
    async def fails(connection: Any) -> None:
        await connection.recv()
        raise RuntimeError("boom")

    async def returns(connection: Any) -> None:
        pass

    async with served(lib, fails) as uri, ws_connect(uri) as ws:
        await ws.send("x")
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as failed:
            await asyncio.wait_for(ws.recv(), timeout(5))
    assert failed.value.rcvd is not None and failed.value.rcvd.code == 1011
    assert failed.value.rcvd.reason == ("" if lib == "websockets" else "internal error")
    async with served(lib, returns) as uri, ws_connect(uri) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosedOK) as returned:
            await asyncio.wait_for(ws.recv(), timeout(5))
    assert returned.value.rcvd is not None and returned.value.rcvd.code == 1000


async def test_a_second_concurrent_recv_raises() -> None:
    async with served("tether", echo) as uri:
        for lib, error in (
            ("websockets", websockets.exceptions.ConcurrencyError),
            ("tether", tether.InvalidState),
        ):
            async with connect(lib, uri) as ws:
                # Tasks start in the order they are made: the first is waiting
                # in recv() when the second calls it.
                first = asyncio.ensure_future(ws.recv())
                second = asyncio.ensure_future(ws.recv())
                with pytest.raises(error):
                    await asyncio.wait_for(second, timeout(5))
                await ws.send("one")
                assert await asyncio.wait_for(first, timeout(5)) == "one"


# -- limits -------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
async def test_max_size_is_max_message_size(lib: str) -> None:
    limit = {"max_size": 1024} if lib == "websockets" else {"max_message_size": 1024}
    async with served(lib, echo) as uri, connect(lib, uri, **limit) as ws:
        await ws.send("x" * 1024)
        assert len(await asyncio.wait_for(ws.recv(), timeout(5))) == 1024
        await ws.send("x" * 1025)
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(ws.recv(), timeout(5))
    assert type(caught.value).__name__ == "ConnectionClosedError"
    assert caught.value.sent.code == 1009


@pytest.mark.parametrize("lib", LIBS)
async def test_a_frame_limit_below_the_message_limit(lib: str) -> None:
    # websockets: max_size=(message, frame); tether: two limits.
    limits = (
        {"max_size": (4096, 1024)}
        if lib == "websockets"
        else {"max_message_size": 4096, "max_frame_size": 1024}
    )

    async def fragments_then_one_frame(connection: Any) -> None:
        await connection.recv()
        await connection.send(["x" * 1000] * 4)  # one message in four frames, each under it
        await connection.send("x" * 2000)  # one frame over it
        await connection.wait_closed()

    async with (
        served(lib, fragments_then_one_frame) as uri,
        connect(lib, uri, compression=None, **limits) as ws,
    ):
        await ws.send("go")
        assert len(await asyncio.wait_for(ws.recv(), timeout(5))) == 4000
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(ws.recv(), timeout(5))
    assert caught.value.sent.code == 1009


def test_no_limit_is_a_websockets_option_only() -> None:
    ws_connect("ws://127.0.0.1:9", max_size=None)  # accepted (not connected: never awaited)
    with pytest.raises(ValueError, match="max_message_size"):
        tether.connect("ws://127.0.0.1:9", max_message_size=None)


def test_the_defaults() -> None:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(ws_serve).parameters.items()
    }
    assert defaults["max_size"] == tether.DEFAULT_LIMITS.max_message_size == 2**20
    assert tether.DEFAULT_LIMITS.max_frame_size == 2**20
    for name in ("open_timeout", "close_timeout", "ping_interval", "ping_timeout"):
        assert defaults[name] == getattr(tether.DEFAULT_LIMITS, name), name
    assert (defaults["open_timeout"], defaults["ping_interval"]) == (10, 20)
    assert defaults["max_queue"] == 16  # frames
    assert tether.DEFAULT_LIMITS.max_queue == 32  # messages
    assert tether.DEFAULT_LIMITS.max_queue_bytes == 2**20
    assert defaults["write_limit"] == 32 * 1024
    assert tether.DEFAULT_LIMITS.write_high_water == 64 * 1024
    assert tether.DEFAULT_LIMITS.write_low_water == 16 * 1024
    assert defaults["compression"] == "deflate"


@pytest.mark.parametrize("lib", LIBS)
async def test_a_peer_that_stops_answering_pings_is_closed_with_1011(lib: str) -> None:
    closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler(connection: Any) -> None:
        try:
            await connection.recv()
        except Exception as exc:  # ConnectionClosedError, either library's
            closed.set_result(exc.sent.code)

    keepalive = {
        "ping_interval": timeout(0.2),
        "ping_timeout": timeout(0.2),
        "close_timeout": timeout(1),
    }
    async with served(lib, handler, **keepalive) as uri, silent_client(uri):
        assert await asyncio.wait_for(closed, timeout(10)) == 1011


@contextlib.asynccontextmanager
async def silent_client(uri: str) -> AsyncIterator[None]:
    """A client that completes the opening handshake, then never reads again."""
    port = int(uri.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(5))
        assert head.startswith(b"HTTP/1.1 101")
        yield
    finally:
        writer.close()


@pytest.mark.parametrize("lib", LIBS)
async def test_ping(lib: str) -> None:
    async with served(lib, echo) as uri, connect(lib, uri) as ws:
        answer = await asyncio.wait_for(ws.ping(), timeout(5))
        if lib == "websockets":
            latency = await asyncio.wait_for(answer, timeout(5))  # a future: the pong
            assert latency == ws.latency
        else:
            latency = answer  # the round trip, once the pong came
            assert not hasattr(ws, "latency")
        assert 0 < latency < timeout(5)


# -- the opening handshake ----------------------------------------------------------


async def test_additional_headers_is_extra_headers_of_pairs() -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def hello(connection: Any) -> None:
        headers = connection.request.headers
        seen.append((headers.get("X-Token"), headers.get("User-Agent")))
        await connection.send("hi")

    async with served("tether", hello) as uri:
        for headers in ({"X-Token": "abc"}, [("X-Token", "abc")]):
            async with ws_connect(uri, additional_headers=headers, user_agent_header="me/1") as ws:
                await asyncio.wait_for(ws.recv(), timeout(5))
        for headers in ({"X-Token": "abc"}, [("X-Token", "abc")]):
            async with tether.connect(uri, extra_headers=headers, user_agent="me/1") as t:
                await asyncio.wait_for(t.recv(), timeout(5))
    assert seen == [("abc", "me/1")] * 4


async def test_process_request_answers_plain_http() -> None:
    def ws_hook(connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if request.headers.get("Authorization") != "Bearer s3cret":
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "log in first\n")
        return None

    async def tether_hook(connection: Any, request: Any) -> Any:  # may be async, or not
        if request.path == "/healthz":
            return tether.Response(200, "OK", body=b"ok\n")
        if request.headers.get("Authorization") != "Bearer s3cret":
            return tether.Response(401, "Unauthorized", body=b"log in first\n")
        return None

    for lib, hook in (("websockets", ws_hook), ("tether", tether_hook)):
        async with served(lib, echo, process_request=hook) as uri:
            port = int(uri.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), timeout(5))  # then it closes
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), lib
            assert b"\r\nContent-Length: 3\r\n" in answer and answer.endswith(b"\r\n\r\nok\n")
            # Only websockets adds a Content-Type for its text.
            assert (b"Content-Type" in answer) == (lib == "websockets")
            assert (b"\r\nConnection: close\r\n" in answer) == (lib == "websockets")
            # A refused handshake: InvalidStatus in both clients, with the body.
            with pytest.raises(websockets.exceptions.InvalidStatus) as ws_refused:
                await ws_connect(uri)
            assert ws_refused.value.response.status_code == 401
            assert ws_refused.value.response.body == b"log in first\n"
            with pytest.raises(tether.InvalidStatus) as refused:
                await tether.connect(uri)
            assert refused.value.response.status == 401
            assert refused.value.response.body == b"log in first\n"
            headers = [("Authorization", "Bearer s3cret")]
            async with tether.connect(uri, extra_headers=headers) as t:
                await t.send("in")
                assert await asyncio.wait_for(t.recv(), timeout(5)) == "in"


def test_the_same_option_names() -> None:
    serve_options = inspect.signature(tether.serve).parameters
    for name in ("origins", "subprotocols", "select_subprotocol", "compression"):
        assert name in serve_options and name in inspect.signature(ws_serve).parameters
    for name in ("process_request", "process_response", "server_header"):
        assert name in serve_options
    for name in ("ssl", "sock", "reuse_port"):  # websockets passes these to create_server
        assert name in serve_options
    connect_options = inspect.signature(tether.connect).parameters
    for name in ("origin", "subprotocols", "compression", "proxy"):
        assert name in connect_options and name in inspect.signature(ws_connect).parameters
    for name in ("extra_headers", "user_agent", "backoff_min", "backoff_max", "max_attempts"):
        assert name in connect_options


@pytest.mark.parametrize("lib", LIBS)
async def test_origins_and_process_response(lib: str) -> None:
    def stamp(connection: Any, request: Any, response: Any) -> Any:
        response.headers["X-Served-By"] = lib  # the same in both
        return None

    # websockets also takes regular expressions; tether, exact strings.
    good = re.compile(r"http://good\.example") if lib == "websockets" else "http://good.example"
    options = {"origins": [good], "process_response": stamp}
    async with served(lib, echo, **options) as uri:
        async with tether.connect(uri, origin="http://good.example") as t:
            assert t.response.headers.get("X-Served-By") == lib
        with pytest.raises(tether.InvalidStatus) as refused:
            await tether.connect(uri, origin="http://evil.example")
        assert refused.value.response.status == 403


async def test_select_subprotocol_gets_the_request_in_tether() -> None:
    got: list[str] = []

    def ws_select(connection: Any, offered: Any) -> Any:
        got.append(type(connection).__name__)
        return offered[-1]

    def tether_select(request: Any, offered: Any) -> Any:
        got.append(type(request).__name__)
        return offered[-1]

    for lib, select in (("websockets", ws_select), ("tether", tether_select)):
        options = {"subprotocols": ["a", "b"], "select_subprotocol": select}
        async with (
            served(lib, echo, **options) as uri,
            tether.connect(uri, subprotocols=["a", "b"]) as t,
        ):
            assert t.subprotocol == "b"
    assert got == ["ServerConnection", "Request"]


async def test_both_clients_offer_the_same_compression() -> None:
    offers: list[str | None] = []

    async def record(connection: Any) -> None:
        offers.append(connection.request.headers.get("Sec-WebSocket-Extensions"))

    async with served("tether", record) as uri:
        for lib in LIBS:
            async with connect(lib, uri) as ws:
                await asyncio.wait_for(ws.wait_closed(), timeout(5))
    assert offers == ["permessage-deflate; client_max_window_bits"] * 2


@pytest.mark.parametrize("lib", LIBS)
async def test_compression(lib: str) -> None:
    async with served(lib, echo) as uri:
        async with tether.connect(uri) as t:
            offered = t.response.headers.get("Sec-WebSocket-Extensions")
        async with tether.connect(uri, compression=None) as t:
            assert t.response.headers.get("Sec-WebSocket-Extensions") is None
    if lib == "websockets":  # a 4 KiB window each way, unless told otherwise
        assert offered == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
    else:  # zlib's default 32 KiB window, unless told otherwise (tether.DeflateOptions)
        assert offered == "permessage-deflate"


# -- broadcast, the blocking client --------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
async def test_broadcast(lib: str) -> None:
    async def welcome(connection: Any) -> None:
        await connection.send("welcome")
        await connection.wait_closed()

    serve: Any = ws_serve if lib == "websockets" else tether.serve
    async with serve(welcome, "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with connect(lib, uri) as a, connect(lib, uri) as b:
            assert [await a.recv(), await b.recv()] == ["welcome", "welcome"]
            if lib == "websockets":
                assert ws_broadcast(server.connections, "news") is None
            else:
                assert tether.broadcast(server.connections, "news") == 2
            received = [await asyncio.wait_for(ws.recv(), timeout(5)) for ws in (a, b)]
            assert received == ["news", "news"]


@pytest.mark.parametrize("lib", LIBS)
async def test_broadcast_to_a_peer_that_does_not_read(lib: str) -> None:
    # websockets writes every message into the write buffer ("no
    # backpressure"); tether skips the connection above write_high_water.
    opened = asyncio.Event()

    async def hold(connection: Any) -> None:
        opened.set()
        await connection.wait_closed()

    serve: Any = ws_serve if lib == "websockets" else tether.serve
    message, count = "x" * 65536, 256  # 16 MiB in all: more than loopback's buffers take
    async with serve(hold, "127.0.0.1", 0, ping_interval=None) as server:
        uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with silent_client(uri):
            await asyncio.wait_for(opened.wait(), timeout(5))
            (connection,) = server.connections
            if lib == "websockets":
                for _ in range(count):
                    ws_broadcast(server.connections, message)
                assert connection.transport.get_write_buffer_size() > count // 2 * len(message)
            else:
                sent = sum(tether.broadcast(server.connections, message) for _ in range(count))
                assert 0 < sent < count // 2
                limit = connection.limits.write_high_water + len(message) + 64
                assert connection.write_buffer_size() <= limit


@pytest.mark.parametrize("lib", LIBS)
async def test_the_blocking_clients(lib: str) -> None:
    def talk(uri: str) -> list[Any]:
        client: Any = websockets.sync.client.connect if lib == "websockets" else tether.sync.connect
        with client(uri) as ws:
            ws.send("hello")
            said = [ws.recv(timeout=timeout(5))]
            try:
                ws.recv(timeout=timeout(0.1))
            except TimeoutError as exc:
                said.append(type(exc).__name__)
            ws.close(4000, "done")
        said.append(ws.close_code)
        return said

    async with served("tether", echo) as uri:
        said = await asyncio.to_thread(talk, uri)
    assert said == ["hello", "TimeoutError", 4000]  # close_code: the code echoed back


def test_the_blocking_client_iterates_until_a_clean_close() -> None:
    # No event loop in this test: the server is websockets' threaded one.
    from websockets.sync.server import serve as sync_serve

    def two_then_close(connection: Any) -> None:
        connection.send("one")
        connection.send("two")

    with sync_serve(two_then_close, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.socket.getsockname()[1]
            for client in (websockets.sync.client.connect, tether.sync.connect):
                with client(f"ws://127.0.0.1:{port}") as ws:
                    assert list(ws) == ["one", "two"]
        finally:
            server.shutdown()
            thread.join(timeout(5))
