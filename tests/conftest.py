"""pytest configuration for tether's suite.

Shared helpers (timeouts, paths, Node.js lookup) live in ``helpers.py``; import
them with ``from helpers import timeout``.

Fixtures for the asyncio layer:

* ``start_server(handler=echo, **options)`` starts a server on 127.0.0.1 port 0
  (or on ``path=``) and closes it at teardown.
* ``echo_server``: a running echo server with default options.
* ``raw_client(port, ...)`` opens a :class:`RawClient`: a WebSocket client
  written by hand on plain asyncio streams, to misbehave on purpose.

Every test has a time limit (pytest-timeout, SIGALRM): ``TEST_LIMIT`` timeout
units unless it carries its own ``@pytest.mark.timeout``. A hung test then fails
alone, with the traceback of where it hung, instead of running CI out of time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import tether
from helpers import timeout

#: The limit of a test without its own ``timeout`` mark, in timeout units: the
#: slowest such test (a browser demo, a packaging build) takes about a minute.
TEST_LIMIT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test without a ``timeout`` mark the default limit, scaled by
    TETHER_TEST_TIMEOUT like every other timeout of the suite (an ini setting
    could not scale)."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout(TEST_LIMIT)))


OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

# Every test talks to loopback. The clients honour the proxy variables (as curl
# does, loopback included), so a machine that sets them for its package
# registries would send the tests' connections to its proxy: they are dropped
# for this run and its subprocesses. The proxy tests set their own.
for _name in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)


async def echo(connection: tether.Connection) -> None:
    async for message in connection:
        await connection.send(message)


def ws_uri(server: tether.Server, resource: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{resource}"


StartServer = Callable[..., Awaitable[tether.Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[tether.Server] = []

    async def start(
        handler: Callable[[tether.Connection], Awaitable[None]] = echo, **options: Any
    ) -> tether.Server:
        options.setdefault("close_timeout", timeout(1))
        if "path" in options or "sock" in options:
            server = await tether.serve(handler, **options)
        else:
            host = options.pop("host", "127.0.0.1")
            port = options.pop("port", 0)
            server = await tether.serve(handler, host, port, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        await asyncio.wait_for(server.wait_closed(timeout(1)), timeout(3))


@pytest.fixture
async def echo_server(start_server: StartServer) -> tether.Server:
    return await start_server()


def frame_header(opcode: int, length: int, *, fin: bool = True, key: bytes = b"") -> bytes:
    """A frame header written by hand (RFC 6455 §5.2), not by the code under
    test: ``key`` is the masking key, empty for an unmasked frame."""
    first = opcode | (0x80 if fin else 0)
    bit = 0x80 if key else 0
    if length < 126:
        head = struct.pack("!BB", first, bit | length)
    elif length < 0x10000:
        head = struct.pack("!BBH", first, bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, bit | 127, length)
    return head + key


class RawClient:
    """A hand-written WebSocket client on asyncio streams: frames are built and
    parsed here, independently of tether's core, so tests can send anything."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, *, rcvbuf: int | None = None, sndbuf: int | None = None
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connecting so the advertised TCP window stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            # A fixed size also turns off the kernel's autotuning (up to
            # tcp_wmem's maximum), so a backlog shows in the transport quickly.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        return cls(reader, writer)

    def request(self, resource: str = "/", extra: str = "") -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {resource} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()

    async def handshake(self, resource: str = "/") -> bytes:
        """Send the opening handshake; return the response head (a 101)."""
        self.writer.write(self.request(resource))
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout(2))
        assert head.startswith(b"HTTP/1.1 101 "), head
        return head

    def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True
    ) -> None:
        key = os.urandom(4) if mask else b""
        head = frame_header(opcode, len(payload), fin=fin, key=key)
        if mask:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + payload)

    async def read_frame(self) -> tuple[int, bytes]:
        """Read one frame from the server (unmasked); return (opcode, payload)."""
        b0, b1 = await self.reader.readexactly(2)
        assert not b1 & 0x80, "the server masked a frame"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def read_close(self) -> tuple[int, str]:
        """Skip frames up to the server's close frame; return its code and reason."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == OP_CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode()

    async def at_eof(self) -> bool:
        """Read to the end of the stream: True once the server closed TCP."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def stop_reading(self) -> None:
        """Stop reading from the socket: the server's data piles up in the kernel."""
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def abort(self) -> None:
        self.writer.transport.abort()


OpenRaw = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def raw_client() -> AsyncIterator[OpenRaw]:
    clients: list[RawClient] = []

    async def open_raw(port: int, *, handshake: bool = True, **options: Any) -> RawClient:
        client = await asyncio.wait_for(RawClient.open(port, **options), timeout(2))
        clients.append(client)
        if handshake:
            await client.handshake()
        return client

    yield open_raw
    for client in clients:
        client.abort()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key, made with the openssl
    command (skipped without it): one for the whole run."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not available")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-days", "1", "-subj", "/CN=localhost"),
        *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=timeout(20))
    return cert, key
