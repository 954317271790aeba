"""The official ``socket.io-client`` 4.8 (Node) with ``socket.io-msgpack-parser``
against a tether server with ``parser="msgpack"``, over WebSocket and polling.

The scenarios are those of ``test_socketio_node.py`` (``node/sio_client.mjs``
against ``realtime_app.py``), run with the parser on both sides: the same
observations must come out, binary data included.
"""

from __future__ import annotations

import pytest

from interop.realtime_app import running
from interop.test_socketio_node import assert_binary, assert_emitted, run

pytestmark = pytest.mark.interop

pytest.importorskip("msgpack")


@pytest.fixture(params=["websocket", "polling"])
def transports(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def test_connect_and_emit(transports: str) -> None:
    async with running(parser="msgpack") as (url, _, recorder):
        seen = await run(url, "connect", transports, parser="msgpack")
        _, _, sid, _ = await recorder.next("connect")
        told = await run(url, "emit", transports, parser="msgpack")
    assert seen["whoami"]["data"] == {"sid": sid, "nsp": "/", "user": "ada", "recovered": False}
    assert_emitted(told)


async def test_acks(transports: str) -> None:
    async with running(parser="msgpack") as (url, _, _recorder):
        seen = await run(url, "acks", transports, parser="msgpack")
    assert seen["emitWithAck"]["value"] == {"a": [1, 2]}
    assert seen["callback"]["args"] == [1, "two", {"three": 3}]
    assert seen["empty"]["args"] == []
    assert seen["server-ack"]["value"] == "ada:life"
    assert seen["server-ack-several"]["value"] == ["y", "x", "third"]


async def test_binary_in_place(transports: str) -> None:
    async with running(parser="msgpack") as (url, _, _recorder):
        seen = await run(url, "binary", transports, parser="msgpack")
    assert_binary(seen)


async def test_rooms_and_broadcasts(transports: str) -> None:
    async with running(parser="msgpack") as (url, _, _recorder):
        seen = await run(url, "rooms", transports, parser="msgpack")
    assert seen["joined"] == {"event": "joined", "a": ["r1"], "b": ["r1"], "c": ["r2"]}
