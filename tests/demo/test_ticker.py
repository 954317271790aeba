"""The ticker demo: the market, conflation, and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import tether
from conftest import OpenRaw, StartServer, ws_uri
from helpers import timeout
from realtime.sio_helpers import eventually
from tether.demo.ticker import HISTORY, SYMBOLS, Market, Ticker, _Subscriber


def test_market_moves_every_symbol_and_bounds_history() -> None:
    market = Market()
    assert len(market.quotes) == len(SYMBOLS) == 50
    for _ in range(HISTORY + 10):
        quotes = market.step()
    assert set(quotes) == set(market.names)
    for symbol, (price, high, low, volume) in quotes.items():
        assert low <= price <= high and price > 0 and volume > 0
        assert len(market.quotes[symbol].history) == HISTORY


async def test_conflation_keeps_the_latest_quote_per_symbol() -> None:
    subscriber = _Subscriber(None)  # type: ignore[arg-type]
    subscriber.symbols = {"ACME", "BOLT"}
    subscriber.offer({"ACME": [1.0, 1.0, 1.0, 1], "ZINC": [9.0, 9.0, 9.0, 9]})
    subscriber.offer({"ACME": [2.0, 2.0, 1.0, 2], "BOLT": [3.0, 3.0, 3.0, 3]})
    assert subscriber.pending == {"ACME": [2.0, 2.0, 1.0, 2], "BOLT": [3.0, 3.0, 3.0, 3]}
    assert subscriber.conflated == 1
    assert subscriber.wake.is_set()


async def recv_json(client: tether.Connection) -> Any:
    return json.loads(await asyncio.wait_for(client.recv(), timeout(2)))


async def test_subscribe_stream_and_unsubscribe(start_server: StartServer) -> None:
    ticker = Ticker(rate=100)
    ticker.start()
    try:
        server = await start_server(ticker.handle)
        async with tether.connect(ws_uri(server)) as client:
            assert client.response is not None
            assert "permessage-deflate" in (
                client.response.headers.get("Sec-WebSocket-Extensions") or ""
            )
            hello = await recv_json(client)
            assert hello["type"] == "hello" and len(hello["symbols"]) == 50
            await client.send(json.dumps({"type": "subscribe", "symbols": ["ACME", "NOPE"]}))
            snapshot = await recv_json(client)
            assert snapshot["symbols"] == ["ACME"] and snapshot["history"]["ACME"]
            quotes = await recv_json(client)
            assert quotes["type"] == "quotes" and set(quotes["q"]) == {"ACME"}
            await client.send(json.dumps({"type": "unsubscribe", "symbols": ["ACME"]}))
            while (message := await recv_json(client))["type"] == "quotes":
                pass
            assert message == {"type": "subscribed", "symbols": []}
            await client.send("not json")
            assert (await recv_json(client))["type"] == "error"
    finally:
        await ticker.stop()


async def test_a_client_that_stops_reading_costs_bounded_memory(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    ticker = Ticker(rate=200)
    ticker.start()
    try:
        server = await start_server(ticker.handle, compression=None, write_high_water=16384)
        client = await raw_client(server.port, rcvbuf=4096)
        subscribe = {"type": "subscribe", "symbols": [s for s, _ in SYMBOLS]}
        client.send_frame(0x1, json.dumps(subscribe).encode())
        await client.read_frame()  # hello
        client.stop_reading()
        (connection,) = server.connections
        assert connection.transport is not None
        sock = connection.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        (subscriber,) = ticker.subscribers
        # Seconds of quotes the client did not read: replaced, not queued.
        await eventually(lambda: subscriber.conflated > 10 * len(SYMBOLS), wait=10)
        assert len(subscriber.pending) <= len(SYMBOLS)
        # One batch of 50 quotes is about 2 kB: the buffer holds a few at most.
        assert connection.write_buffer_size() < 16384 + 4096
    finally:
        await ticker.stop()
