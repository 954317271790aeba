"""Shared test helpers. Tests import them as ``from helpers import timeout``.

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml's pytest
configuration; it is deliberately not a package.
"""

from __future__ import annotations

import asyncio
import base64
import os
import select
import shutil
import socket
import struct
from pathlib import Path

import tether

__all__ = [
    "TIMEOUT_UNIT",
    "echo_in_flight",
    "node_bin",
    "repo_root",
    "skip_conformance",
    "timeout",
]

#: The one knob for every timeout in the suite: raise ``TETHER_TEST_TIMEOUT``
#: (e.g. to 5) on a slow or loaded machine instead of editing individual tests.
TIMEOUT_UNIT = float(os.environ.get("TETHER_TEST_TIMEOUT", "1.0"))


def timeout(n: float = 1.0) -> float:
    """Return ``n`` timeout units in seconds."""
    return n * TIMEOUT_UNIT


def repo_root() -> Path:
    """The repository root (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parent.parent


def node_bin() -> str | None:
    """Path to the ``node`` executable (``TETHER_NODE`` overrides), or None if absent."""
    return os.environ.get("TETHER_NODE") or shutil.which("node")


def skip_conformance() -> bool:
    """True when ``TETHER_SKIP_CONFORMANCE=1`` asks to skip the Autobahn suite."""
    return os.environ.get("TETHER_SKIP_CONFORMANCE") == "1"


async def echo_in_flight(uri: str, size: int, in_flight: int, count: int) -> None:
    """The benchmark's echo workload (bench/README.md): ``in_flight`` messages
    of ``size`` bytes outstanding on one connection, a new one sent for each
    one echoed, ``count`` in all; every reply must come within a timeout.
    The server must queue ``in_flight * size`` bytes (``max_queue_bytes``):
    the client sends them all before it reads."""
    payload = os.urandom(size)
    limits = {"max_message_size": size, "max_frame_size": size, "max_queue_bytes": in_flight * size}
    async with tether.connect(uri, compression=None, **limits) as client:
        for _ in range(in_flight):
            await client.send(payload)
        for sent in range(in_flight, count + in_flight):
            # A flow-control deadlock (both sides waiting) shows up here as a
            # timeout rather than as a hung test.
            assert await asyncio.wait_for(client.recv(), timeout(5)) == payload
            if sent < count:
                await client.send(payload)


def raw_upgrade(sock: socket.socket) -> None:
    """The client's opening handshake on a blocking socket, by hand (RFC 6455
    §4.1), read up to the end of the server's 101 and not a byte more."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head


def send_past_a_1009(port: int) -> bytes:
    """A blocking raw client against a server with ``max_message_size=1000``:
    it sends the header of a 100,000-byte text frame, waits until the
    server's close frame is there (without reading it), sends the payload
    and its FIN, then returns everything the server sent until its FIN (a
    reset raises). The server must linger for the close frame to survive."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout()) as sock:
        raw_upgrade(sock)
        # A masked text frame announcing 100,000 bytes (RFC 6455 §5.2), by hand.
        sock.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, 100_000) + os.urandom(4))
        assert select.select([sock], [], [], timeout())[0], "no close frame"
        sock.sendall(bytes(100_000))
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received
