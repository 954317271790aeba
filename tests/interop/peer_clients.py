"""Other libraries' WebSocket clients, behind one interface, for the tests of
tether's server (``test_peer_clients.py``).

:class:`PeerClient` is what a scenario needs of a client: send a message, a
fragmented one or a ping, receive, close. ``websockets`` implements it in
this process; ``ws`` and WebSocket-Node (npm ``websocket``) run
``node/client.mjs``, which takes one command per line on stdin and reports
what it received on stdout. :data:`PEER_CLIENTS` lists them, so adding a
client library is adding one entry there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from interop.peers import WS_OPTIONS, NodePeer, Peer, node, within


class PeerClosed(Exception):
    """The connection closed; ``code`` and ``reason`` are those of the close
    frame the client received (``None`` when it received none)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class PeerClient(Protocol):
    """A connected client of another library, as the scenarios drive it."""

    subprotocol: str | None
    extensions: str | None
    """The Sec-WebSocket-Extensions header of the server's 101 response."""

    async def send(self, message: str | bytes) -> None: ...

    async def send_fragments(self, parts: Sequence[str] | Sequence[bytes]) -> None:
        """One message, one frame per part (§5.4)."""

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`PeerClosed` once the connection closed."""

    async def ping(self, payload: bytes) -> None:
        """Ping the server; return once its pong came back (§5.5.2, §5.5.3)."""

    async def close(self, code: int, reason: str) -> int | None:
        """Run the closing handshake (§7.1.2); return the code of the server's reply."""


PeerClientStarter = Callable[
    [str, str | None, list[str] | None], contextlib.AbstractAsyncContextManager[PeerClient]
]
"""Connect a peer's client: ``async with start(url, compression, subprotocols) as client``."""


# -- websockets (PyPI), in this process ----------------------------------------


class WebsocketsClient:
    """websockets' asyncio client as a :class:`PeerClient`."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.subprotocol: str | None = connection.subprotocol
        self.extensions: str | None = connection.response.headers.get("Sec-WebSocket-Extensions")

    async def send(self, message: str | bytes) -> None:
        await within(self.connection.send(message))

    async def send_fragments(self, parts: Sequence[str] | Sequence[bytes]) -> None:
        await within(self.connection.send(list(parts)))

    async def recv(self) -> str | bytes:
        try:
            return await within(self.connection.recv())
        except WsConnectionClosed as closed:
            rcvd = closed.rcvd
            raise PeerClosed(rcvd and rcvd.code, rcvd and rcvd.reason) from None

    async def ping(self, payload: bytes) -> None:
        await within(await self.connection.ping(payload))

    async def close(self, code: int, reason: str) -> int | None:
        await within(self.connection.close(code, reason))
        rcvd = self.connection.protocol.close_rcvd
        return rcvd and rcvd.code


@contextlib.asynccontextmanager
async def websockets_client(
    url: str, compression: str | None, subprotocols: list[str] | None, **options: Any
) -> AsyncIterator[WebsocketsClient]:
    """websockets' client with WS_OPTIONS (``options`` override them)."""
    # proxy=None: never route loopback tests through a proxy from the environment.
    connect = ws_connect(
        url,
        proxy=None,
        **{**WS_OPTIONS, "compression": compression, "subprotocols": subprotocols, **options},
    )
    async with connect as connection:
        yield WebsocketsClient(connection)


# -- ws and WebSocket-Node (npm), remote-controlled ------------------------------


class NodeClient:
    """``node/client.mjs`` as a :class:`PeerClient`: commands go to its stdin;
    a reader task sorts the events on its stdout into messages and pongs."""

    def __init__(self, peer: NodePeer) -> None:
        self.peer = peer
        self.subprotocol: str | None = None
        self.extensions: str | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Messages in order, then the PeerClosed that ends them.
        self.inbox: asyncio.Queue[str | bytes | PeerClosed] = asyncio.Queue()
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        stdout = self.peer.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            event: dict[str, Any] = json.loads(line)
            kind = event["event"]
            if kind == "open":
                self.subprotocol = event["protocol"]
                self.extensions = event["extensions"]
                self.opened.set_result(None)
            elif kind == "message":
                self.inbox.put_nowait(
                    bytes.fromhex(event["hex"]) if "hex" in event else event["text"]
                )
            elif kind == "pong":
                self.pongs.put_nowait(bytes.fromhex(event["hex"]))
            elif kind == "close":
                self.inbox.put_nowait(PeerClosed(event["code"], event["reason"]))
            elif not self.opened.done():
                self.opened.set_exception(AssertionError(f"the client failed: {event}"))
            else:
                # A socket error after opening (ECONNRESET, say) is followed by
                # the close event, which the test then sees; raising here would
                # end this reader and leave recv() waiting for its timeout.
                self.errors.append(event["message"])
        if not self.opened.done():
            self.opened.set_exception(AssertionError("the client exited before opening"))
        self.inbox.put_nowait(PeerClosed(None, None))

    async def command(self, op: str, **arguments: Any) -> None:
        stdin = self.peer.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await within(stdin.drain())

    async def send(self, message: str | bytes) -> None:
        await self.command("send", **as_json(message))

    async def send_fragments(self, parts: Sequence[str] | Sequence[bytes]) -> None:
        binary = bool(parts) and isinstance(parts[0], bytes)
        data = [part if isinstance(part, bytes) else part.encode() for part in parts]
        await self.send_frames(data, binary=binary)

    async def send_frames(self, parts: Sequence[bytes | tuple[str, bytes]], binary: bool) -> None:
        """One message as one frame per part, split anywhere (even inside a
        UTF-8 sequence); a ``("ping", payload)`` part is a ping sent there."""
        wire = [{"ping": p[1].hex()} if isinstance(p, tuple) else {"hex": p.hex()} for p in parts]
        await self.command("fragments", parts=wire, binary=binary)

    async def recv(self) -> str | bytes:
        item = await within(self.inbox.get())
        if isinstance(item, PeerClosed):
            self.inbox.put_nowait(item)  # every later recv() raises it too
            raise item
        return item

    async def ping(self, payload: bytes) -> None:
        await self.command("ping", hex=payload.hex())
        assert await within(self.pongs.get()) == payload

    async def close(self, code: int, reason: str) -> int | None:
        await self.command("close", code=code, reason=reason)
        while True:
            try:
                await self.recv()
            except PeerClosed as closed:
                return closed.code


def as_json(message: str | bytes) -> dict[str, str]:
    """A message as client.mjs reads and writes it: text as is, binary as hex."""
    return {"hex": message.hex()} if isinstance(message, bytes) else {"text": message}


@contextlib.asynccontextmanager
async def node_client(
    library: str, url: str, deflate: bool | dict[str, Any], subprotocols: list[str] | None
) -> AsyncIterator[NodeClient]:
    """Run client.mjs with ``library``; yield it once the connection is open."""
    options = {"deflate": deflate, "protocols": subprotocols or []}
    async with node("client.mjs", library, url, json.dumps(options)) as peer:
        client = NodeClient(peer)
        try:
            await within(client.opened, 10)
            yield client
        finally:
            client.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await client.reader


def start_websockets(
    url: str, compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[PeerClient]:
    return websockets_client(url, compression, subprotocols)


def start_ws(
    url: str, compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[PeerClient]:
    return node_client("ws", url, compression is not None, subprotocols)


def start_websocket_node(
    url: str, compression: str | None, subprotocols: list[str] | None
) -> contextlib.AbstractAsyncContextManager[PeerClient]:
    assert compression is None, "WebSocket-Node has no permessage-deflate"
    return node_client("websocket-node", url, False, subprotocols)


#: The clients tether's server is tested against, by name.
PEER_CLIENTS: dict[str, Peer[PeerClientStarter]] = {
    "websockets": Peer(start_websockets, deflate=True),
    "ws": Peer(start_ws, deflate=True),
    "websocket-node": Peer(start_websocket_node, deflate=False, echoes_close_code=False),
}
