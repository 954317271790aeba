"""Fixtures for the blocking clients' tests (tests/sync/).

The tests are plain functions, as a script using :mod:`tether.sync` would be;
the servers run in threads of their own:

* ``server_loop``: an event loop in a thread (not the clients' shared one),
  where tether's servers run.
* ``peer``: a WebSocket server whose behaviour is chosen by the request path
  (see :data:`PATHS`), parametrized over tether's server and the
  ``websockets`` package's (its threaded server), with ``peer.closes`` the
  close codes the server received.
* ``certificate`` (from tests/conftest.py): a self-signed certificate for ``localhost``.

``run_script(source)`` runs a program in a new interpreter, as a user would.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as WebsocketsClosed
from websockets.sync.server import ServerConnection, serve

import tether
from helpers import timeout
from tether.sync.loop import EventLoopThread

# What the servers do, by request path:
#   /echo           echo every message
#   /fragments      send "abc" in three fragments, then "d", then close with 1000
#   /close/<code>   close at once with <code> and the reason "bye"
#   /big/<n>        send <n> bytes, then read until the client closes
# Every server puts the close code it received in ``closes`` when it is done.
PATHS = ("/echo", "/fragments", "/close/", "/big/")


@dataclass
class Peer:
    name: str
    port: int
    scheme: str = "ws"
    closes: queue.Queue[int | None] = field(default_factory=queue.Queue)

    def uri(self, path: str) -> str:
        host = "localhost" if self.scheme == "wss" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close_code(self) -> int | None:
        """The close code the server received from the last connection to end."""
        return self.closes.get(timeout=timeout(5))


@pytest.fixture
def server_loop() -> Iterator[EventLoopThread]:
    loop = EventLoopThread("server loop")
    try:
        yield loop
    finally:
        loop.stop(timeout(5))


async def _tether_behaviour(connection: tether.Connection, closes: queue.Queue[int | None]) -> None:
    path = connection.path
    try:
        if path == "/echo":
            async for message in connection:
                await connection.send(message)
        elif path == "/fragments":
            await connection.send(["a", "b", "c"])
            await connection.send("d")
            await connection.close(1000)
        elif path.startswith("/close/"):
            await connection.close(int(path.rsplit("/", 1)[1]), "bye")
        elif path.startswith("/big/"):
            await connection.send(b"x" * int(path.rsplit("/", 1)[1]))
            async for _ in connection:
                pass
    except tether.ConnectionClosed:
        pass
    finally:
        await connection.wait_closed(timeout(5))
        closes.put(connection.close_code)


def _websockets_behaviour(connection: ServerConnection, closes: queue.Queue[int | None]) -> None:
    assert connection.request is not None
    path = connection.request.path
    try:
        if path == "/echo":
            for message in connection:
                connection.send(message)
        elif path == "/fragments":
            connection.send(iter(["a", "b", "c"]))
            connection.send("d")
            connection.close(1000)
        elif path.startswith("/close/"):
            connection.close(int(path.rsplit("/", 1)[1]), "bye")
        elif path.startswith("/big/"):
            connection.send(b"x" * int(path.rsplit("/", 1)[1]))
            for _ in connection:
                pass
    except WebsocketsClosed:
        pass
    finally:
        closes.put(connection.close_code)


StartPeer = Callable[..., Peer]


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` (dedented) as a program in a new interpreter, bounded in time."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )


@pytest.fixture
def start_tether(server_loop: EventLoopThread) -> Iterator[StartPeer]:
    servers: list[tether.Server] = []

    def start(tls: ssl.SSLContext | None = None, max_size: int | None = None) -> Peer:
        closes: queue.Queue[int | None] = queue.Queue()
        options: dict[str, Any] = {"close_timeout": timeout(2)}
        if max_size is not None:
            options.update(max_message_size=max_size, max_frame_size=max_size)

        async def handler(connection: tether.Connection) -> None:
            await _tether_behaviour(connection, closes)

        async def open_server() -> tether.Server:
            return await tether.serve(handler, "127.0.0.1", 0, ssl=tls, **options)

        server = server_loop.run(open_server)
        servers.append(server)
        return Peer("tether", server.port, "wss" if tls else "ws", closes)

    yield start

    async def close_all() -> None:
        for server in servers:
            server.close()
            await asyncio.wait_for(server.wait_closed(timeout(1)), timeout(3))

    server_loop.run(close_all)


@pytest.fixture
def start_websockets() -> Iterator[StartPeer]:
    running: list[tuple[Any, threading.Thread]] = []

    def start(tls: ssl.SSLContext | None = None, max_size: int | None = None) -> Peer:
        closes: queue.Queue[int | None] = queue.Queue()
        server = serve(
            lambda connection: _websockets_behaviour(connection, closes),
            "127.0.0.1",
            0,
            ssl=tls,
            max_size=max_size or 2**20,
        )
        thread = threading.Thread(target=server.serve_forever, name="websockets server")
        thread.start()
        running.append((server, thread))
        return Peer("websockets", server.socket.getsockname()[1], "wss" if tls else "ws", closes)

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(timeout(5))
        assert not thread.is_alive()


@pytest.fixture(params=["tether", "websockets"])
def start_peer(request: pytest.FixtureRequest) -> StartPeer:
    """Start tether's server or the websockets package's: ``start(tls=, max_size=)``."""
    fixture: StartPeer = request.getfixturevalue(f"start_{request.param}")
    return fixture
