"""The scripted peers of the interop tests, and the data they exchange.

Imported by the tests as ``from interop.peers import ...`` (``tests/`` is on
``sys.path``, see ``helpers.py``); the fixtures live in ``conftest.py``.

Every server in these tests, whichever library it runs on (tether, websockets,
ws), follows the same script, so that a test reads the same in both
directions. Each message is echoed with its type (text stays text, binary
stays binary), except for these text commands:

``cmd:close <code> <reason>``
    close the connection with that code and reason;
``cmd:fragments``
    send ``"frag-ment-ed"`` as three text frames, then ``b"\\x00\\x01\\x02"``
    as two binary frames;
``cmd:ping``
    ping the client, wait for its pong, then send ``cmd:pong-received``.

When a connection ends, the server reports what it saw of it (a
:class:`PeerReport`) so that tests can check the other side too.

:data:`PEER_SERVERS` lists the peers that run the script as a server
(websockets on PyPI, ws on Node); ``test_tether_client.py`` runs every
scenario of tether's client against each of them, so adding a peer is adding
one entry there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

import tether
from helpers import node_bin, repo_root, timeout

MiB = 2**20
#: max message and frame size on every side: the large messages are ~1.5 MiB.
MAX_SIZE = 4 * MiB

#: Options for every tether server and client here: sizes for the large
#: messages, bounded handshakes, and no keepalive pings to interleave.
TETHER_OPTIONS: dict[str, Any] = {
    "max_message_size": MAX_SIZE,
    "max_frame_size": MAX_SIZE,
    "open_timeout": timeout(5),
    "close_timeout": timeout(3),
    "ping_interval": None,
}

#: Options for every websockets server and client here (see TETHER_OPTIONS).
WS_OPTIONS: dict[str, Any] = {
    "max_size": MAX_SIZE,
    "open_timeout": timeout(5),
    "close_timeout": timeout(3),
    "ping_interval": None,
}

NODE_DIR = repo_root() / "tests" / "interop" / "node"

T = TypeVar("T")


async def exchange_fragments(connection: tether.Connection) -> None:
    """A tether client against a scripted peer server: tether sends fragmented
    messages and the peer echoes them whole; then the peer sends fragmented
    messages (``cmd:fragments``) and tether reassembles them."""
    await within(connection.send(["ab", "cdé", "f"]))
    assert await within(connection.recv()) == "abcdéf"
    await within(connection.send([b"\x01", b"", b"\x02\x03"]))
    assert await within(connection.recv()) == b"\x01\x02\x03"
    await connection.send("cmd:fragments")
    assert await within(connection.recv()) == "".join(FRAGMENTS_TEXT)
    assert await within(connection.recv()) == b"".join(FRAGMENTS_BINARY)


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    """Await with a bound, so that a peer that never answers fails the test."""
    return await asyncio.wait_for(awaitable, timeout(units))


FRAGMENTS_TEXT = ["frag-", "ment", "ed"]
FRAGMENTS_BINARY = [b"\x00\x01", b"\x02"]


@dataclass
class PeerReport:
    """What a server saw of one connection, once it ended."""

    subprotocol: str | None
    offer: str | None
    """The client's Sec-WebSocket-Extensions request header."""
    extensions: str | None
    """The Sec-WebSocket-Extensions header of the server's 101 response."""
    close_code: int | None
    """The close code the server received from the client."""
    close_reason: str | None


@dataclass
class ScriptedServer:
    """A running scripted server: where to connect and what it reports."""

    url: str
    reports: asyncio.Queue[PeerReport]

    async def report(self) -> PeerReport:
        """The report of the next connection to end (bounded wait)."""
        return await asyncio.wait_for(self.reports.get(), timeout(5))


def tether_connect(url: str, **options: Any) -> tether.connect:
    """tether's client with TETHER_OPTIONS."""
    return tether.connect(url, **{**TETHER_OPTIONS, **options})


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[ScriptedServer]]
"""The ``tether_server`` fixture: ``async with tether_server(**options) as server``."""


async def run_script(
    connection: Any,
    reports: asyncio.Queue[PeerReport],
    ping: Callable[[], Awaitable[object]],
    closed: type[BaseException],
) -> None:
    """The scripted server (see the module docstring) over a tether or a
    websockets server connection: both have these ``send()``, ``close()``,
    ``request``, ``response`` and close attributes. ``ping()`` pings the client
    and returns once its pong came; ``closed`` is the library's
    ConnectionClosed, which ends the loop on a close code other than 1000/1001."""
    try:
        async for message in connection:
            if message == "cmd:fragments":
                await connection.send(FRAGMENTS_TEXT)
                await connection.send(FRAGMENTS_BINARY)
            elif message == "cmd:ping":
                await ping()
                await connection.send("cmd:pong-received")
            elif isinstance(message, str) and message.startswith("cmd:close "):
                _, code, reason = message.split(" ", 2)
                await connection.close(int(code), reason)
            else:
                await connection.send(message)
    except closed:
        pass
    finally:
        assert connection.request is not None and connection.response is not None
        reports.put_nowait(
            PeerReport(
                subprotocol=connection.subprotocol,
                offer=connection.request.headers.get("Sec-WebSocket-Extensions"),
                extensions=connection.response.headers.get("Sec-WebSocket-Extensions"),
                close_code=connection.close_code,
                close_reason=connection.close_reason,
            )
        )


async def tether_script(connection: tether.Connection, reports: asyncio.Queue[PeerReport]) -> None:
    """The scripted server as a tether handler (its ping() waits for the pong)."""
    await run_script(
        connection, reports, lambda: connection.ping(b"from-tether"), tether.ConnectionClosed
    )


#: Short messages of both types, empty ones included, non-ASCII text.
SHORT_MESSAGES: list[str | bytes] = ["héllo wörld ✓ 🚀", b"\x00\xffbinary\x80", "", b""]


async def echo_one_by_one(connection: Any, messages: list[str | bytes]) -> None:
    """Send each message and check its echo: the same type and content.

    ``connection`` is a tether or a websockets connection."""
    for message in messages:
        await within(connection.send(message))
        echoed = await within(connection.recv())
        assert type(echoed) is type(message)
        assert echoed == message


def pipelined_messages() -> list[str | bytes]:
    """~8 MiB that barely compresses: enough in flight to fill every buffer on
    the way, so that both sides' flow control (paused reading, drain) kicks in."""
    rng = random.Random(3)
    return [rng.randbytes(16384) if i % 2 else rng.randbytes(8192).hex() for i in range(500)]


async def echo_concurrently(connection: Any, messages: list[str | bytes]) -> list[str | bytes]:
    """Send every message while receiving the echoes; return what came back.

    ``connection`` is a tether or a websockets connection: both have these
    ``send()`` and ``recv()``.
    """

    async def send_all() -> None:
        for message in messages:
            await connection.send(message)

    sender = asyncio.create_task(send_all())
    try:
        received = [await within(connection.recv()) for _ in messages]
        await within(sender)
    finally:
        sender.cancel()
    return received


# -- websockets (PyPI) as the scripted server ---------------------------------


async def websockets_script(
    connection: ServerConnection, reports: asyncio.Queue[PeerReport]
) -> None:
    """The scripted server as a websockets handler (its ping() returns a
    future for the pong)."""

    async def ping() -> None:
        await within(await connection.ping(b"from-websockets"))

    await run_script(connection, reports, ping, WsConnectionClosed)


@contextlib.asynccontextmanager
async def websockets_server(**options: Any) -> AsyncIterator[ScriptedServer]:
    """Start the scripted websockets server with WS_OPTIONS and ``options``."""
    reports: asyncio.Queue[PeerReport] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        await websockets_script(connection, reports)

    async with ws_serve(handler, "127.0.0.1", 0, **{**WS_OPTIONS, **options}) as server:
        port = server.sockets[0].getsockname()[1]
        yield ScriptedServer(f"ws://127.0.0.1:{port}/", reports)


# -- ws (Node) as the scripted server -----------------------------------------


class NodePeer:
    """A Node.js script run as a subprocess, read as JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def line(self) -> dict[str, Any]:
        """The next JSON line on its stdout (bounded wait)."""
        assert self.process.stdout is not None
        raw = await within(self.process.stdout.readline(), 10)
        assert raw, f"node exited early (exit code {await self.exit_code()})"
        line: dict[str, Any] = json.loads(raw)
        self.lines.append(line)
        return line

    async def event(self, name: str) -> dict[str, Any]:
        """Skip lines up to the next one for event ``name``."""
        while (line := await self.line()).get("event") != name:
            pass
        return line

    async def exit_code(self) -> int:
        """Its exit code, once it exits (bounded wait)."""
        return await within(self.process.wait(), 10)


@contextlib.asynccontextmanager
async def node(script: str, *args: str) -> AsyncIterator[NodePeer]:
    """Run ``node/<script> args...``; kill it (by PID) when the block ends."""
    executable = node_bin()
    if executable is None:
        pytest.skip("node is not installed (scripts/test installs it)")
    process = await asyncio.create_subprocess_exec(
        executable,
        str(NODE_DIR / script),
        *args,
        cwd=repo_root(),  # where node_modules/ws is
        stdin=asyncio.subprocess.PIPE,  # the server exits when it closes
        stdout=asyncio.subprocess.PIPE,
        limit=4 * MAX_SIZE,  # a line may carry a large message, hex-encoded
    )
    try:
        yield NodePeer(process)
    finally:
        if process.returncode is None:
            process.kill()  # by PID: only the process this test started
        await within(process.wait(), 10)


@dataclass
class NodeScriptedServer(ScriptedServer):
    """A scripted Node server (ws_echo_server.mjs, websocket_node_server.mjs):
    its reports are built from its open and close lines."""

    peer: NodePeer

    async def report(self) -> PeerReport:
        """The report of the next connection to end, from its ``open`` and
        ``close`` lines."""
        opened = await self.peer.event("open")
        closed = await self.peer.event("close")
        return PeerReport(
            subprotocol=opened["protocol"] or None,
            offer=opened["offer"],
            extensions=opened["extensions"],
            close_code=closed["code"],
            close_reason=closed["reason"],
        )


@contextlib.asynccontextmanager
async def node_server(script: str, **options: Any) -> AsyncIterator[NodeScriptedServer]:
    """Start the scripted Node server ``node/<script>`` with its ``options``."""
    async with node(script, json.dumps(options)) as peer:
        listening = await peer.event("listening")
        url = f"ws://127.0.0.1:{listening['port']}/"
        yield NodeScriptedServer(url, asyncio.Queue(), peer)


def ws_server(**options: Any) -> contextlib.AbstractAsyncContextManager[NodeScriptedServer]:
    """ws_echo_server.mjs with ws's ``options`` (perMessageDeflate, protocols)."""
    return node_server("ws_echo_server.mjs", **options)


# -- every peer server, started the same way ----------------------------------


def start_websockets(
    compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[ScriptedServer]:
    """websockets spells the options as tether does."""
    return websockets_server(compression=compression, subprotocols=subprotocols)


def start_ws(
    compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[ScriptedServer]:
    """ws spells them perMessageDeflate and protocols."""
    return ws_server(perMessageDeflate=compression is not None, protocols=subprotocols or [])


def start_websocket_node(
    compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[ScriptedServer]:
    """WebSocket-Node has no permessage-deflate (PEER_SERVERS says so)."""
    assert compression is None, "WebSocket-Node has no permessage-deflate"
    return node_server("websocket_node_server.mjs", protocols=subprotocols or [])


PeerServerStarter = Callable[
    [str | None, list[str] | None], contextlib.AbstractAsyncContextManager[ScriptedServer]
]
"""Start a peer's scripted server: ``async with start(compression, subprotocols)``."""


@dataclass(frozen=True)
class Peer(Generic[T]):
    """One peer library in one role: how to start it, and what it can do."""

    start: T
    deflate: bool
    """Whether it implements permessage-deflate (RFC 7692): the tests run
    with compression on only for the peers that do."""
    echoes_close_code: bool = True
    """Whether its reply to a close frame carries the code it received. RFC
    6455 §5.5.1 says an endpoint *typically* echoes it; WebSocket-Node always
    replies 1000."""


#: The scripted peer servers tether's client is tested against, by name.
PEER_SERVERS: dict[str, Peer[PeerServerStarter]] = {
    "websockets": Peer(start_websockets, deflate=True),
    "ws": Peer(start_ws, deflate=True),
    "websocket-node": Peer(start_websocket_node, deflate=False, echoes_close_code=False),
}
