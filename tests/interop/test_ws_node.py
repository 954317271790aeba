"""Interop with ``ws``, the Node.js library, in both directions.

tether's client against ``node/ws_echo_server.mjs`` with ws's own deflate
parameters (the scenarios shared with every peer server are in
``test_tether_client.py``), and ``node/ws_client.mjs`` against a tether
server, with and without permessage-deflate. Both Node scripts follow the
script described in ``peers.py`` and speak JSON lines on stdout. They run as
subprocesses (``peers.node``), killed by PID when the test ends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import tether
from interop.peers import ServerFactory, node, tether_connect, within, ws_server

pytestmark = pytest.mark.interop

def deflate_on(compression: str | None) -> bool:
    return compression is not None


# -- tether client -> ws server ----------------------------------------------
# The scenarios shared with every peer are in test_tether_client.py.


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
        ws_server(perMessageDeflate=params) as server,
        tether_connect(server.url, compression="deflate") as connection,
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
