"""tether's realtime client with ``parser="msgpack"`` against the official
socket.io 4.8 server with ``socket.io-msgpack-parser``
(``tests/interop/node/socketio_server.mjs msgpack``), over WebSocket and polling."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from realtime.client.test_client_node import (
    Events,
    MakeClient,
    NodeServer,
    make_client,
    node_server_process,
    within,
)
from tether.exceptions import ConnectionRefused

pytestmark = pytest.mark.interop

pytest.importorskip("msgpack")

__all__ = ["make_client"]  # the fixture, imported to be found here


@pytest.fixture(scope="module")
def msgpack_server() -> Iterator[NodeServer]:
    yield from node_server_process("msgpack")


@pytest.fixture(params=["websocket", "polling"])
def transports(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return (request.param,)


async def test_events_acks_and_binary(
    msgpack_server: NodeServer, make_client: MakeClient, transports: tuple[str, ...]
) -> None:
    client = make_client(parser="msgpack", transports=transports, default=str)
    events = Events(client, "echo", "answer")
    client.on("question", lambda blob: (blob[::-1], {"copy": blob}))
    await within(client.connect(msgpack_server.url))
    info = await within(client.emit_with_ack("whoami"))
    assert (info["sid"], info["transport"]) == (client.sid(), transports[0])

    at = datetime.datetime(2026, 12, 3, 7, 0, tzinfo=datetime.UTC)
    args = [b"\x00\x01\xff", {"deep": [b"", bytearray(b"ba")]}, "tëxt", 2**40, 1.5, None, at]
    await client.emit("echo", *args)
    assert await events.get("echo") == (
        b"\x00\x01\xff",
        {"deep": [b"", b"ba"]},
        "tëxt",
        2**40,
        1.5,
        None,
        str(at),  # through default=
    )
    assert await within(client.emit_with_ack("echo_ack", b"\x01", [b"\x02"])) == (
        b"\x01",
        [b"\x02"],
    )
    await client.emit("ask", b"abc")
    assert await events.get("answer") == (b"cba", {"copy": b"abc"})


async def test_namespaces_and_connect_error(
    msgpack_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client(parser="msgpack")
    with pytest.raises(ConnectionRefused) as caught:
        await within(client.connect(msgpack_server.url, namespaces=["/", "/private"]))
    assert (caught.value.message, caught.value.data) == ("not authorized", {"reason": "bad token"})

    other = make_client(parser="msgpack")
    await within(other.connect(msgpack_server.url, namespaces=["/", "/chat"]))
    info = await within(other.emit_with_ack("whoami", namespace="/chat"))
    assert info["nsp"] == "/chat"
