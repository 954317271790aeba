"""The index page's live panel: /stats.json, fed by tether.metrics, counts exactly
what each demo's clients did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import socketio  # python-socketio, a client nobody here wrote

import tether
from helpers import timeout
from realtime.sio_helpers import http_request
from tether.demo import app
from tether.demo.chat import NAMESPACE


async def stats(port: int) -> dict[str, Any]:
    response = await http_request(port, "GET", "/stats.json")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    figures: dict[str, Any] = json.loads(response.body)
    return figures


async def until(port: int, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first reading of /stats.json that satisfies ``predicate`` (counters
    change on the server with no event a client could await)."""
    deadline = asyncio.get_running_loop().time() + timeout(5)
    while not predicate(figures := await stats(port)):
        assert asyncio.get_running_loop().time() < deadline, figures
        await asyncio.sleep(0.01)
    return figures


async def test_stats_count_each_demos_connections_and_messages() -> None:
    async with app.running("127.0.0.1", 0) as server:
        port = server.port
        before = await stats(port)
        assert {name: demo["connections"] for name, demo in before["demos"].items()} == {
            "chat": 0,
            "ticker": 0,
            "game": 0,
        }
        ticker = await tether.connect(f"ws://127.0.0.1:{port}/ticker/ws")
        game = await tether.connect(f"ws://127.0.0.1:{port}/game/ws")
        chat = socketio.AsyncClient(reconnection=False)
        try:
            assert json.loads(await asyncio.wait_for(ticker.recv(), timeout(2)))["type"] == "hello"
            await ticker.send(json.dumps({"type": "subscribe", "symbols": ["ACME"]}))
            await ticker.send(json.dumps({"type": "unsubscribe", "symbols": ["ACME"]}))
            assert json.loads(await asyncio.wait_for(game.recv(), timeout(2)))["type"] == "welcome"
            await game.send(json.dumps({"type": "join", "name": "ada"}))
            await chat.connect(
                f"http://127.0.0.1:{port}",
                namespaces=[NAMESPACE],
                auth={"nick": "ada", "room": "general"},
                transports=["websocket"],
                wait_timeout=timeout(5),
            )

            now = await until(
                port,
                lambda f: (
                    f["demos"]["ticker"]["received"] == 2
                    and f["demos"]["game"]["received"] == 1
                    and f["demos"]["chat"]["connections"] == 1
                ),
            )
            demos = now["demos"]
            assert demos["ticker"]["connections"] == 1 and demos["game"]["connections"] == 1
            # Out: at least the hello and the two replies; the welcome (and state).
            assert demos["ticker"]["sent"] >= 3 and demos["game"]["sent"] >= 1
            # The chat's Engine.IO messages: the namespace CONNECT in, at least
            # its answer and the welcome out.
            assert demos["chat"]["received"] >= 1 and demos["chat"]["sent"] >= 2
            assert now["time"] > before["time"]
        finally:
            await ticker.close()
            await game.close()
            await chat.disconnect()
        await until(port, lambda f: not any(d["connections"] for d in f["demos"].values()))
