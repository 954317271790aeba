"""Shared test helpers. Tests import them as ``from helpers import timeout``.

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml's pytest
configuration; it is deliberately not a package.
"""

from __future__ import annotations

import asyncio
import os
import shutil
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
