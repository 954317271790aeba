"""Interop with ``ws``, the Node.js library, in both directions.

tether's client against ``node/ws_echo_server.mjs``, and ``node/ws_client.mjs``
against a tether server, each with and without permessage-deflate. Both Node
scripts follow the script described in ``peers.py`` and speak JSON lines on
stdout. They run as subprocesses, killed by PID when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from helpers import node_bin, repo_root, timeout
from interop.peers import (
    TETHER_OPTIONS,
    ServerFactory,
    echo_concurrently,
    exchange_fragments,
    pipelined_messages,
    within,
)

pytestmark = pytest.mark.interop

NODE_DIR = repo_root() / "tests" / "interop" / "node"


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
        return await within(self.process.wait(), 10)


@contextlib.asynccontextmanager
async def node(script: str, *args: str) -> AsyncIterator[NodePeer]:
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
    )
    try:
        yield NodePeer(process)
    finally:
        if process.returncode is None:
            process.kill()  # by PID: only the process this test started
        await within(process.wait(), 10)


@contextlib.asynccontextmanager
async def ws_server(**options: Any) -> AsyncIterator[tuple[NodePeer, str]]:
    """Start ws_echo_server.mjs; yield it and its URL."""
    async with node("ws_echo_server.mjs", json.dumps(options)) as peer:
        listening = await peer.event("listening")
        yield peer, f"ws://127.0.0.1:{listening['port']}/"


def tether_connect(url: str, **options: Any) -> tether.connect:
    return tether.connect(url, **{**TETHER_OPTIONS, **options})


def deflate_on(compression: str | None) -> bool:
    return compression is not None


# -- tether client -> ws server ----------------------------------------------


async def test_tether_client_echo_text_and_binary(compression: str | None) -> None:
    messages: list[str | bytes] = ["héllo wörld ✓ 🚀", b"\x00\xffbinary\x80", "", b""]
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (_, url),
        tether_connect(url, compression=compression) as connection,
    ):
        for message in messages:
            await connection.send(message)
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_tether_client_large_messages(
    compression: str | None, large_messages: list[str | bytes]
) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (_, url),
        tether_connect(url, compression=compression) as connection,
    ):
        for message in large_messages:
            await within(connection.send(message))
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_tether_client_pipelined_messages(compression: str | None) -> None:
    messages = pipelined_messages()
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (_, url),
        tether_connect(url, compression=compression) as connection,
    ):
        received = await echo_concurrently(connection, messages)
    assert received == messages


async def test_tether_client_fragmented_messages(compression: str | None) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (_, url),
        tether_connect(url, compression=compression) as connection,
    ):
        await exchange_fragments(connection)


async def test_tether_client_ping_pong(compression: str | None) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (_, url),
        tether_connect(url, compression=compression) as connection,
    ):
        rtt = await within(connection.ping(b"from-tether"))
        assert 0 <= rtt < timeout(3)
        await connection.send("cmd:ping")  # ws pings tether, waits for the pong
        assert await within(connection.recv()) == "cmd:pong-received"
        await connection.send("after")
        assert await within(connection.recv()) == "after"


async def test_tether_client_sees_ws_close_code(compression: str | None) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (peer, url),
        tether_connect(url, compression=compression) as connection,
    ):
        await connection.send("cmd:close 4001 bye")
        with pytest.raises(tether.ConnectionClosedError):
            await within(connection.recv())
        await within(connection.wait_closed())
        assert (connection.close_code, connection.close_reason) == (4001, "bye")
        closed = await peer.event("close")
        assert closed["code"] == 4001  # tether echoed the code


async def test_ws_server_sees_tether_close_code(compression: str | None) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (peer, url),
        tether_connect(url, compression=compression) as connection,
    ):
        await within(connection.close(4002, "ciao ✓"))
        assert connection.closed
        assert (connection.close_code, connection.close_reason) == (4002, "ciao ✓")  # ws echoes
        closed = await peer.event("close")
        assert (closed["code"], closed["reason"]) == (4002, "ciao ✓")


async def test_tether_client_subprotocol_with_ws() -> None:
    async with (
        ws_server(protocols=["chat.v1"]) as (peer, url),
        tether_connect(url, subprotocols=["chat.v2", "chat.v1"]) as connection,
    ):
        assert connection.subprotocol == "chat.v1"
        opened = await peer.event("open")
        assert opened["protocol"] == "chat.v1"


async def test_tether_client_deflate_negotiation_with_ws(compression: str | None) -> None:
    async with (
        ws_server(perMessageDeflate=deflate_on(compression)) as (peer, url),
        tether_connect(url, compression=compression) as connection,
    ):
        await connection.send("x" * 10_000)
        assert await within(connection.recv()) == "x" * 10_000
        opened = await peer.event("open")
    assert connection.response is not None
    header = connection.response.headers.get("Sec-WebSocket-Extensions")
    if compression:
        assert header is not None and header.startswith("permessage-deflate")
    else:
        assert header is None
    assert opened["extensions"] == header


@pytest.mark.parametrize(
    "params",
    [
        {"serverMaxWindowBits": 10, "clientNoContextTakeover": True},
        {"serverNoContextTakeover": True, "clientMaxWindowBits": 9},
        {"serverMaxWindowBits": 12, "clientMaxWindowBits": 11},
    ],
    ids=["server-bits-10-client-nct", "server-nct-client-bits-9", "server-12-client-11"],
)
async def test_tether_client_deflate_params_with_ws(
    params: dict[str, Any], varied_messages: list[str | bytes]
) -> None:
    async with (
        ws_server(perMessageDeflate=params) as (_, url),
        tether_connect(url, compression="deflate") as connection,
    ):
        assert connection.response is not None
        header = connection.response.headers.get("Sec-WebSocket-Extensions")
        assert header is not None
        for name, value in params.items():
            # serverMaxWindowBits -> server_max_window_bits
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
            assert (snake if value is True else f"{snake}={value}") in header
        for message in varied_messages:
            await connection.send(message)
            assert await within(connection.recv()) == message


# -- ws client -> tether server ----------------------------------------------


async def run_ws_client(url: str, **options: Any) -> dict[str, dict[str, Any]]:
    """Run ws_client.mjs to the end; return its steps by name, checking they all passed."""
    async with node("ws_client.mjs", url, json.dumps(options)) as peer:
        assert peer.process.stdout is not None
        output = await within(peer.process.stdout.read(), 10)
        code = await peer.exit_code()
    steps = [json.loads(line) for line in output.splitlines()]
    failed = [step for step in steps if not step["ok"]]
    assert code == 0 and not failed, f"ws client exited with {code}; failed steps: {failed}"
    return {step["step"]: step for step in steps}


EXPECTED_STEPS = {"open", "text", "binary", "large", "fragmented", "ping", "close"}


@pytest.mark.parametrize("closer", ["server", "client"])
async def test_ws_client_exchange(
    tether_server: ServerFactory, compression: str | None, closer: str
) -> None:
    async with tether_server(compression=compression) as server:
        steps = await run_ws_client(
            server.url, perMessageDeflate=deflate_on(compression), close=closer
        )
        report = await server.report()
    assert set(steps) == EXPECTED_STEPS
    if closer == "server":
        # ws received tether's 4001 "bye"; tether received ws' echo.
        assert (steps["close"]["code"], steps["close"]["reason"]) == (4001, "bye")
        assert report.close_code == 4001
    else:
        assert (report.close_code, report.close_reason) == (4002, "ciao ✓")
        assert steps["close"]["code"] == 4002  # tether echoed the code
    # Both sides agree on whether permessage-deflate is on.
    assert steps["open"]["extensions"] == report.extensions
    if compression:
        assert report.offer is not None and "permessage-deflate" in report.offer
        assert report.extensions is not None
        assert report.extensions.startswith("permessage-deflate")
    else:
        assert report.offer is None
        assert report.extensions is None


async def test_ws_client_subprotocol(tether_server: ServerFactory) -> None:
    async with tether_server(subprotocols=["chat.v1"]) as server:
        steps = await run_ws_client(server.url, protocols=["chat.v2", "chat.v1"])
        report = await server.report()
    assert steps["open"]["protocol"] == "chat.v1"
    assert report.subprotocol == "chat.v1"


@pytest.mark.parametrize(
    "options",
    [
        tether.DeflateOptions(server_max_window_bits=10, client_no_context_takeover=True),
        tether.DeflateOptions(server_no_context_takeover=True, client_max_window_bits=9),
        tether.DeflateOptions(server_max_window_bits=8),
    ],
    ids=["server-bits-10-client-nct", "server-nct-client-bits-9", "server-bits-8"],
)
async def test_tether_server_deflate_params_with_ws(
    tether_server: ServerFactory, options: tether.DeflateOptions
) -> None:
    async with tether_server(compression=options) as server:
        steps = await run_ws_client(server.url, perMessageDeflate=True, varied=True)
        report = await server.report()
    assert set(steps) == {*EXPECTED_STEPS, "varied"}
    header = steps["open"]["extensions"]
    assert header == report.extensions
    assert header is not None and header.startswith("permessage-deflate")
    if options.server_max_window_bits < 15:
        assert f"server_max_window_bits={options.server_max_window_bits}" in header
    if options.client_max_window_bits < 15:
        assert f"client_max_window_bits={options.client_max_window_bits}" in header
    assert ("client_no_context_takeover" in header) == options.client_no_context_takeover
    assert ("server_no_context_takeover" in header) == options.server_no_context_takeover


@pytest.mark.parametrize(
    "offer",
    [
        {"serverMaxWindowBits": 10, "clientMaxWindowBits": 11},
        {"serverNoContextTakeover": True, "clientNoContextTakeover": True},
    ],
    ids=["bits-10-11", "no-context-takeover"],
)
async def test_ws_client_deflate_offer(tether_server: ServerFactory, offer: dict[str, Any]) -> None:
    """ws' client asks for non-default parameters; tether's server obliges."""
    async with tether_server(compression="deflate") as server:
        steps = await run_ws_client(server.url, perMessageDeflate=offer, varied=True)
        report = await server.report()
    assert "varied" in steps
    assert report.extensions is not None
    if "serverMaxWindowBits" in offer:
        assert f"server_max_window_bits={offer['serverMaxWindowBits']}" in report.extensions
    if offer.get("serverNoContextTakeover"):
        assert "server_no_context_takeover" in report.extensions
