"""The realtime client behind an HTTP proxy, and its cookie jar.

Through tinyproxy (tests/tinyproxy.py): long-polling over plain http:// goes
to the proxy in absolute-form (``GET http://host:port/socket.io/...``), over
https:// through a CONNECT tunnel; the WebSocket upgrade through a CONNECT
tunnel. Against tether's realtime server and the official Node socket.io
server (tests/interop/node/socketio_server.mjs).

The cookie jar: a relay written below records what the client sends to a
``realtime.Server(cookie=True)``, to check that the sid cookie it set comes
back on every later request and on the upgrade.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helpers import timeout
from realtime.client.test_client_node import NodeServer, node_server
from tether import realtime
from tether.exceptions import ProxyError
from tether.realtime.client import Client
from tinyproxy import Tinyproxy

__all__ = ["node_server"]  # the fixture, imported to be used here

T = TypeVar("T")

PROXY_VARIABLES = [
    name
    for base in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
]
BOTH = ("polling", "websocket")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(transports=BOTH, reconnection=False, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await within(client.disconnect())


def echo_server(**options: Any) -> realtime.Server:
    server = realtime.Server(**options)

    @server.on("echo")
    async def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return server


async def upgraded(client: Client) -> None:
    """Emit until the background upgrade is done (each echo a round trip)."""
    for _ in range(100):
        if client.transport == "websocket":
            return
        assert await within(client.emit_with_ack("echo", "ping")) == "ping"
    assert client.transport == "websocket"


async def test_tether_server_polling_then_upgrade_through_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: Callable[..., Client]
) -> None:
    async with realtime.serve(echo_server(), "127.0.0.1", 0) as http:
        with Tinyproxy.start(tmp_path, connect_ports=[http.port]) as proxy:
            monkeypatch.setenv("http_proxy", proxy.url)
            client = clients()
            await within(client.connect(f"http://127.0.0.1:{http.port}"))
            assert await within(client.emit_with_ack("echo", "hi")) == "hi"
            await upgraded(client)
            assert await within(client.emit_with_ack("echo", "after")) == "after"
            origin = rf"127\.0\.0\.1:{http.port}"
            assert proxy.logged(rf"GET http://{origin}/socket\.io/\?EIO=4&transport=polling")
            assert proxy.logged(rf"CONNECT {origin} ")


async def test_websocket_only_through_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with realtime.serve(echo_server(), "127.0.0.1", 0) as http:
        with Tinyproxy.start(tmp_path, connect_ports=[http.port]) as proxy:
            monkeypatch.setenv("ALL_PROXY", proxy.url)
            client = Client(transports=("websocket",), reconnection=False)
            await within(client.connect(f"ws://127.0.0.1:{http.port}"))
            try:
                assert await within(client.emit_with_ack("echo", "ws")) == "ws"
            finally:
                await within(client.disconnect())
            assert len(proxy.logged(rf"CONNECT 127\.0\.0\.1:{http.port} ")) == 1
            assert not proxy.logged("GET http://")


async def test_explicit_proxy_over_the_environment_and_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: Callable[..., Client]
) -> None:
    # connect(proxy=URL) wins over the environment's (a dead port here), and
    # connect(proxy=None) ignores the environment: as tether.connect's.
    async with realtime.serve(echo_server(), "127.0.0.1", 0) as http:
        with Tinyproxy.start(tmp_path, connect_ports=[http.port]) as proxy:
            with socket.socket() as unused:  # bound, never listening: a dead proxy
                unused.bind(("127.0.0.1", 0))
                monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{unused.getsockname()[1]}")
            client = clients()
            await within(client.connect(f"http://127.0.0.1:{http.port}", proxy=proxy.url))
            assert await within(client.emit_with_ack("echo", "via")) == "via"
            assert proxy.logged(r"GET http://127\.0\.0\.1")
            await within(client.disconnect())
            seen = len(proxy.logged(r"GET http://|CONNECT "))
            direct = clients()
            await within(direct.connect(f"http://127.0.0.1:{http.port}", proxy=None))
            assert await within(direct.emit_with_ack("echo", "direct")) == "direct"
            assert len(proxy.logged(r"GET http://|CONNECT ")) == seen


async def test_polling_works_where_the_proxy_refuses_tunnels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: Callable[..., Client]
) -> None:
    # A proxy that allows CONNECT to port 443 only, as many do: polling in
    # absolute-form still works, the upgrade's tunnel is refused (403) and the
    # session stays on polling.
    async with realtime.serve(echo_server(), "127.0.0.1", 0) as http:
        with Tinyproxy.start(tmp_path, connect_ports=[443]) as proxy:
            monkeypatch.setenv("http_proxy", proxy.url)
            client = clients()
            await within(client.connect(f"http://127.0.0.1:{http.port}"))
            # Waited for on a thread: the client's upgrade, which this loop
            # runs, may not have written its CONNECT yet (blocking here froze
            # it, and the wait timed out now and then).
            await asyncio.to_thread(proxy.wait_for, rf"CONNECT 127\.0\.0\.1:{http.port} ")
            await asyncio.to_thread(proxy.wait_for, rf"Refused CONNECT method on port {http.port}")
            for n in range(5):
                assert await within(client.emit_with_ack("echo", n)) == n
            assert client.transport == "polling"
            assert client.connected


async def test_node_server_polling_then_upgrade_through_proxy(
    tmp_path: Path,
    node_server: NodeServer,
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[..., Client],
) -> None:
    port = int(node_server.url.rsplit(":", 1)[1].strip("/"))
    with Tinyproxy.start(tmp_path, connect_ports=[port]) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = clients()
        got_upgraded = asyncio.get_running_loop().create_future()

        @client.on("upgraded")
        def on_upgraded(name: str) -> None:
            if not got_upgraded.done():
                got_upgraded.set_result(name)

        await within(client.connect(node_server.url))
        assert await within(got_upgraded) == "websocket"
        info = await within(client.emit_with_ack("whoami"))
        assert info["transport"] == "websocket"
        assert proxy.logged(rf"GET http://127\.0\.0\.1:{port}/socket\.io/")
        assert proxy.logged(rf"CONNECT 127\.0\.0\.1:{port} ")


async def test_https_polling_through_a_tunnel(
    tmp_path: Path,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[..., Client],
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    client_context.check_hostname = False  # the certificate names localhost, we dial 127.0.0.1
    async with realtime.serve(echo_server(), "127.0.0.1", 0, ssl=server_context) as http:
        with Tinyproxy.start(tmp_path, connect_ports=[http.port]) as proxy:
            monkeypatch.setenv("https_proxy", proxy.url)
            monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")  # not for https
            client = clients()
            await within(client.connect(f"https://127.0.0.1:{http.port}", ssl=client_context))
            assert await within(client.emit_with_ack("echo", "tls")) == "tls"
            await upgraded(client)
            # One tunnel per polling connection, one for the upgrade; no
            # request in the clear.
            assert len(proxy.logged(rf"CONNECT 127\.0\.0\.1:{http.port} ")) >= 2
            assert not proxy.logged(r"GET http://")


async def test_polling_proxy_authentication_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: Callable[..., Client]
) -> None:
    async with realtime.serve(echo_server(), "127.0.0.1", 0) as http:
        auth = ("ann", "s3cret")
        with Tinyproxy.start(tmp_path, connect_ports=[http.port], auth=auth) as proxy:
            url = f"http://127.0.0.1:{http.port}"
            monkeypatch.setenv("http_proxy", f"http://ann:s3cret@127.0.0.1:{proxy.port}")
            client = clients()
            await within(client.connect(url))
            await upgraded(client)
            monkeypatch.setenv("http_proxy", proxy.url)
            with pytest.raises(ProxyError, match=rf"proxy {proxy.url} refused .*HTTP 407"):
                await within(clients().connect(url))


class Recorder:
    """A TCP relay to ``port`` that keeps what each client connection sent."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sent: list[bytearray] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.listener: asyncio.Server | None = None

    async def start(self) -> int:
        self.listener = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self.listener.sockets[0].getsockname()[1]
        return port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, upstream_writer]
        record = bytearray()
        self.sent.append(record)

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, keep: bytearray | None
        ) -> None:
            while data := await source.read(65536):
                if keep is not None:
                    keep += data
                sink.write(data)
                await sink.drain()
            sink.close()

        for task in (
            asyncio.create_task(pump(reader, upstream_writer, record)),
            asyncio.create_task(pump(upstream_reader, writer, None)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def request_heads(self) -> list[str]:
        heads = []
        for record in self.sent:
            text = record.decode("latin-1")
            heads += re.findall(r"(?:GET|POST) /socket\.io/[^\r]*\r\n(?:[^\r]+\r\n)*", text)
        return heads

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()


@pytest.fixture
async def recorder_for() -> AsyncIterator[Callable[[int], Awaitable[tuple[Recorder, int]]]]:
    made: list[Recorder] = []

    async def make(port: int) -> tuple[Recorder, int]:
        recorder = Recorder(port)
        made.append(recorder)
        return recorder, await recorder.start()

    yield make
    for recorder in made:
        await recorder.close()


async def test_cookie_sent_back_on_every_request_and_the_upgrade(
    recorder_for: Callable[[int], Awaitable[tuple[Recorder, int]]],
    clients: Callable[..., Client],
) -> None:
    async with realtime.serve(echo_server(cookie=True), "127.0.0.1", 0) as http:
        recorder, port = await recorder_for(http.port)
        client = clients()
        # The caller's own Cookie header: the jar's cookies join it.
        await within(client.connect(f"http://127.0.0.1:{port}", headers={"Cookie": "mine=1"}))
        for n in range(3):
            assert await within(client.emit_with_ack("echo", n)) == n
        await upgraded(client)
        assert await within(client.emit_with_ack("echo", "ws")) == "ws"
        sid = client.sid()
        heads = recorder.request_heads()
    first, *later = heads
    assert "\r\nCookie: mine=1\r\n" in first  # the handshake: none of the server's yet
    assert len(later) >= 4
    # The server's sid cookie is the Engine.IO sid, named "io".
    assert all(head.count("\r\nCookie: ") == 1 for head in heads)
    found = [re.search(r"\r\nCookie: mine=1; ([^\r]*)", head) for head in later]
    assert all(found), [head for head, match in zip(later, found, strict=True) if not match]
    cookies = {match[1] for match in found if match}
    assert len(cookies) == 1
    (cookie,) = cookies
    assert re.fullmatch(r"io=[\w-]+", cookie), cookie
    assert sid is not None and cookie != f"io={sid}"  # the Socket.IO sid differs
    upgrades = [head for head in later if "Upgrade: websocket" in head]
    assert len(upgrades) == 1
    assert re.search(r"&sid=([\w-]+)", upgrades[0])[1] == cookie[3:]  # type: ignore[index]
