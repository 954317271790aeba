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
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tether
from helpers import timeout

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


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[ScriptedServer]]
"""The ``tether_server`` fixture: ``async with tether_server(**options) as server``."""


async def tether_script(connection: tether.Connection, reports: asyncio.Queue[PeerReport]) -> None:
    """The scripted server (see the module docstring) as a tether handler."""
    try:
        async for message in connection:
            if message == "cmd:fragments":
                await connection.send(FRAGMENTS_TEXT)
                await connection.send(FRAGMENTS_BINARY)
            elif message == "cmd:ping":
                await connection.ping(b"from-tether")
                await connection.send("cmd:pong-received")
            elif isinstance(message, str) and message.startswith("cmd:close "):
                _, code, reason = message.split(" ", 2)
                await connection.close(int(code), reason)
            else:
                await connection.send(message)
    except tether.ConnectionClosed:
        pass  # a close code other than 1000/1001 ends the loop this way
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
