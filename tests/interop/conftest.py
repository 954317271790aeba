"""Fixtures for the interop tests: tether's scripted server and the test data.

The scripted peers themselves are described in ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from interop.peer_clients import PEER_CLIENTS
from interop.peers import (
    PEER_SERVERS,
    TETHER_OPTIONS,
    MiB,
    Peer,
    PeerReport,
    ScriptedServer,
    ServerFactory,
    tether_script,
)


@pytest.fixture
def tether_server() -> ServerFactory:
    """Start a scripted tether server on a free loopback port: ``async with
    tether_server(compression=None) as server: ... server.url ...``."""

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[ScriptedServer]:
        reports: asyncio.Queue[PeerReport] = asyncio.Queue()
        handler = functools.partial(tether_script, reports=reports)
        async with tether.serve(handler, "127.0.0.1", 0, **{**TETHER_OPTIONS, **options}) as server:
            yield ScriptedServer(f"ws://127.0.0.1:{server.port}/", reports)

    return start


COMPRESSIONS = {"deflate": "deflate", "no-compression": None}
"""The ``compression`` option, by test id: tether and websockets spell it
``compression="deflate"`` or ``None``."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``compression`` is "deflate" and None (ids: deflate, no-compression).
    ``peer_server`` is each peers.Peer of peers.PEER_SERVERS, ``peer_client``
    each of peer_clients.PEER_CLIENTS (ids: their names), ``deflate_client``
    each of those that implement permessage-deflate. With ``compression`` too,
    a peer runs with deflate only if it implements it."""
    deflate_clients = {name: peer for name, peer in PEER_CLIENTS.items() if peer.deflate}
    parametrized = False
    peers: dict[str, Peer[Any]]
    for argument, peers in (
        ("peer_server", PEER_SERVERS),
        ("peer_client", PEER_CLIENTS),
        ("deflate_client", deflate_clients),
    ):
        if argument not in metafunc.fixturenames:
            continue
        parametrized = True
        if "compression" not in metafunc.fixturenames:
            cases = [pytest.param(peer, id=name) for name, peer in peers.items()]
            metafunc.parametrize(argument, cases)
            continue
        cases = [
            pytest.param(peer, compression, id=f"{name}-{label}")
            for name, peer in peers.items()
            for label, compression in COMPRESSIONS.items()
            if compression is None or peer.deflate
        ]
        metafunc.parametrize((argument, "compression"), cases)
    if "compression" in metafunc.fixturenames and not parametrized:
        metafunc.parametrize("compression", list(COMPRESSIONS.values()), ids=list(COMPRESSIONS))


def _text(rng: random.Random, words: int) -> str:
    vocabulary = ["tether", "socket", "frame", "deflate", "héllo", "wörld", "日本語", "🚀", "ok"]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


@pytest.fixture
def large_messages() -> list[str | bytes]:
    """A ~1.5 MiB compressible text and a 1 MiB incompressible binary message."""
    rng = random.Random(1)
    text = (_text(rng, 2000) + "\n") * 120
    assert 1 * MiB < len(text.encode()) < 3 * MiB
    return [text, rng.randbytes(MiB)]


@pytest.fixture
def varied_messages() -> list[str | bytes]:
    """Many messages of both types where compression contexts matter.

    Later messages repeat earlier ones (so a compressor that keeps its context
    refers back to them: context takeover), and some hold the same random
    block twice 2 KiB apart (further back than a 1 KiB window reaches, so a
    compressor using a larger window than negotiated breaks the inflater).
    """
    rng = random.Random(2)
    messages: list[str | bytes] = []
    for i in range(160):
        kind = i % 5
        if kind == 0:
            messages.append(_text(rng, rng.randrange(1, 400)))
        elif kind == 1:
            messages.append(rng.randbytes(rng.randrange(0, 3000)))
        elif kind == 2 and messages:
            earlier = rng.choice(messages)
            messages.append(earlier + (" again" if isinstance(earlier, str) else b"again"))
        elif kind == 3:
            block = rng.randbytes(2048)
            messages.append(block + b"-" + block)
        else:
            block_text = _text(rng, 300)
            messages.append(f"{block_text} | {i} | {block_text}")
    return messages
