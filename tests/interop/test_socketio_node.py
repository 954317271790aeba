"""The official ``socket.io-client`` 4.8 (Node) against tether's realtime server.

``node/sio_client.mjs`` runs one scenario per test against the scripted server
of ``realtime_app.py`` (served in-process on a free port), and reports what it
saw as JSON lines. Every scenario runs over WebSocket only, over the default
configuration (polling, then the upgrade to WebSocket) and over polling only.
The Node process is killed by PID when the test ends.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import timeout
from interop.peers import NodePeer, node
from interop.realtime_app import running, running_asgi

pytestmark = pytest.mark.interop

CONFIGURATIONS: dict[str, list[str] | None] = {
    "websocket": ["websocket"],
    "default": None,  # polling, then the upgrade
    "polling": ["polling"],
}


@pytest.fixture(params=list(CONFIGURATIONS))
def transports(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def hexed(data: bytes) -> dict[str, str]:
    """How the Node script prints binary values."""
    return {"hex": data.hex()}


class Client(NodePeer):
    """One run of sio_client.mjs: its JSON lines, and its stdin for commands."""

    async def line(self) -> dict[str, Any]:
        line = await super().line()
        assert line["event"] not in ("error", "timeout"), (line, self.lines)
        return line

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self) -> dict[str, list[dict[str, Any]]]:
        """Read up to ``done``; every line so far, grouped by event name."""
        await self.event("done")
        assert await self.exit_code() == 0
        grouped: dict[str, list[dict[str, Any]]] = {}
        for line in self.lines:
            grouped.setdefault(line["event"], []).append(line)
        return grouped


@contextlib.asynccontextmanager
async def node_client(
    url: str, scenario: str, transports: str, **options: Any
) -> AsyncIterator[Client]:
    chosen = CONFIGURATIONS[transports]
    if chosen is not None:
        options["transports"] = chosen
    options.setdefault("timeoutMs", int(timeout(10) * 1000))
    async with node("sio_client.mjs", url, scenario, json.dumps(options)) as peer:
        yield Client(peer.process)


async def run(url: str, scenario: str, transports: str, **options: Any) -> dict[str, Any]:
    """Run a scenario to its end; its lines by event name (the last of each)."""
    async with node_client(url, scenario, transports, **options) as client:
        grouped = await client.finish()
    return {name: lines[-1] for name, lines in grouped.items()}


# -- connecting ------------------------------------------------------------------------


async def test_connect_with_auth(transports: str) -> None:
    async with running() as (url, _, recorder):
        seen = await run(url, "connect", transports)
        _, nsp, sid, recovered = await recorder.next("connect")
        disconnected = await recorder.next("disconnect")
    assert (nsp, recovered) == ("/", False)
    assert seen["connect"]["id"] == sid
    assert seen["welcome"]["data"] == {"sid": sid, "nsp": "/", "user": "ada"}
    assert seen["whoami"]["data"] == {"sid": sid, "nsp": "/", "user": "ada", "recovered": False}
    initial = "websocket" if transports == "websocket" else "polling"
    final = "polling" if transports == "polling" else "websocket"
    assert (seen["connect"]["initial"], seen["transport"]["name"]) == (initial, final)
    assert seen["after-upgrade"]["data"] == "still here"
    assert disconnected == ("disconnect", "/", sid, "client namespace disconnect")


async def test_middleware_refuses_with_data(transports: str) -> None:
    async with running() as (url, _, _recorder):
        seen = await run(url, "middleware", transports)
    assert seen["refused"]["error"] == {"message": "access denied", "data": {"reason": "bad token"}}
    assert seen["refused-no-auth"]["error"]["message"] == "access denied"
    assert seen["accepted"]["value"]["user"] == "ada"


async def test_namespaces_on_one_connection(transports: str) -> None:
    async with (
        running() as (url, _, _recorder),
        node_client(url, "namespaces", transports) as client,
    ):
        grouped = await client.finish()
    whoami = {line["nsp"]: line["data"] for line in grouped["whoami"]}
    assert {nsp: data["nsp"] for nsp, data in whoami.items()} == {
        "/": "/",
        "/chat": "/chat",
        "/dyn-42": "/dyn-42",
    }
    assert [whoami[nsp]["user"] for nsp in ("/", "/chat", "/dyn-42")] == ["ada", "bob", "cy"]
    assert len({data["sid"] for data in whoami.values()}) == 3  # a sid per namespace
    refused = {line["nsp"]: line["error"] for line in grouped["refused"]}
    assert refused == {
        "/nope": {"message": "Invalid namespace", "data": None},
        "/private": {"message": "private", "data": {"code": 42}},
    }
    assert grouped["chat-event"][0]["args"] == ["on chat"]
    engine = grouped["engine"][0]
    assert engine["same"] and len(set(engine["ids"])) == 1  # multiplexed
    assert grouped["root-after"][0]["value"] == "root alive"


# -- events, acks, binary ----------------------------------------------------------------


async def test_emit_both_ways(transports: str) -> None:
    async with running() as (url, _, _recorder):
        seen = await run(url, "emit", transports)
    assert_emitted(seen)


def assert_emitted(seen: dict[str, Any]) -> None:
    """What the "emit" scenario must see (also with the msgpack parser)."""
    assert seen["told"]["args"] == [
        "héllo ✓",
        1,
        2.5,
        True,
        None,
        {"list": [1, "two", {"three": 3}]},
    ]
    assert seen["seq"]["values"] == list(range(20))  # in order


async def test_acks_both_ways(transports: str) -> None:
    async with running() as (url, _, _recorder):
        seen = await run(url, "acks", transports)
    assert seen["emitWithAck"]["value"] == {"a": [1, 2]}
    assert seen["callback"]["args"] == [1, "two", {"three": 3}]  # several ack values
    assert seen["empty"]["args"] == []
    assert seen["timeout-flag"]["value"] == "in time"
    assert seen["server-ack"]["value"] == "ada:life"  # the server's emit_with_ack
    assert seen["server-ack-several"]["value"] == ["y", "x", "third"]


async def test_binary_both_ways(transports: str) -> None:
    async with running() as (url, _, _recorder):
        seen = await run(url, "binary", transports)
    assert_binary(seen)


def assert_binary(seen: dict[str, Any]) -> None:
    """What the "binary" scenario must see (also with the msgpack parser)."""
    data = bytes([1, 2, 3, 4, 5, 0, 255])
    assert seen["binary-ack"]["value"] == {
        "reversed": hexed(data[::-1]),
        "parts": [hexed(data[:2]), hexed(data[2:])],
        "type": "bytes",
    }
    assert seen["binary-event"]["args"] == [
        "text first",
        {"nested": [hexed(b"xyz"), {"deeper": hexed(b"")}]},
        hexed(b"\x09"),
    ]
    assert seen["binary-server-ack"]["value"] == {
        "got": hexed(bytes([10, 20, 30])),
        "reversed": hexed(bytes([30, 20, 10])),
    }


# -- rooms and broadcasts --------------------------------------------------------------


async def test_rooms_and_broadcasts(transports: str) -> None:
    async with running() as (url, _, _recorder):
        seen = await run(url, "rooms", transports)
    assert seen["joined"] == {"event": "joined", "a": ["r1"], "b": ["r1"], "c": ["r2"]}
    assert (seen["count"]["r1"], seen["count"]["r2"]) == (2, 1)
    assert seen["poll"]["replies"] == ["a:q?", "b:q?"]  # broadcast acks from r1
    assert seen["left"]["b"] == []
    assert seen["kicked"]["reason"] == "io server disconnect"
    received = seen["received"]
    assert received["a"] == ["c to all but c", "server to r1+r2", "server to all but r2"]
    assert received["b"] == ["a to r1", "c to all but c", "server to r1+r2", "server to all but r2"]
    assert received["c"] == ["server to r1+r2", "server to r3"]


# -- reconnection and recovery ------------------------------------------------------------


async def test_reconnects_after_server_drops(transports: str) -> None:
    async with running() as (url, _, recorder):
        seen = await run(url, "reconnect", transports, upgrade=True)
        _, _, first, _ = await recorder.next("connect")
        dropped = await recorder.next("disconnect")
        _, _, second, recovered = await recorder.next("connect")
    assert dropped == ("disconnect", "/", first, "forced close")
    reconnected = seen["reconnected"]
    assert reconnected["reason"] == "transport close"
    assert reconnected["attempt"] == 1
    assert not reconnected["sameId"] and not reconnected["recovered"] and not recovered
    assert seen["whoami"]["data"]["sid"] == second != first


async def test_recovery_after_transport_killed(transports: str) -> None:
    """The client kills its transport; events emitted while it is away arrive,
    in order and once each, when it comes back with its sid and rooms."""
    async with (
        running(connection_state_recovery=True) as (url, server, recorder),
        node_client(url, "recover-client-kill", transports) as client,
    ):
        away = await client.event("away")
        _, _, sid, _ = await recorder.next("connect")
        _, _, gone, reason = await recorder.next("disconnect")
        assert gone == sid == away["id"]
        # Polling sends a close packet ("forced close"); WebSocket just closes.
        assert reason in ("transport close", "forced close")
        await server.to("r").emit("missed", 1)
        await server.emit("missed", 2, to=["r", "elsewhere"])
        await server.to(sid).emit("missed", 3)
        await server.to("elsewhere").emit("missed", "not for us")
        await server.except_("r").emit("missed", "not for us either")
        await client.send("reconnect")
        grouped = await client.finish()
        _, _, again, recovered = await recorder.next("connect")
    assert (again, recovered) == (sid, True)
    assert grouped["recovered"][0] == {"event": "recovered", "recovered": True, "sameId": True}
    state = grouped["state"][0]
    assert state["rooms"] == ["r"]
    assert state["whoami"] == {"sid": sid, "nsp": "/", "user": "ada", "recovered": True}
    assert grouped["missed"][0]["values"] == [0, 1, 2, 3]


async def test_recovery_after_server_drops(transports: str) -> None:
    """The server drops the connection (``socket.conn.close()``: "forced close",
    recoverable) and emits at once; the client reconnects by itself."""
    async with running(connection_state_recovery=True) as (url, _, recorder):
        seen = await run(url, "recover-server-drop", transports)
        _, _, sid, _ = await recorder.next("connect")
        _, _, _, reason = await recorder.next("disconnect")
        _, _, again, recovered = await recorder.next("connect")
    assert reason == "forced close"
    assert (again, recovered) == (sid, True)
    assert seen["recovered"] == {
        "event": "recovered",
        "reason": "transport close",
        "recovered": True,
        "sameId": True,
    }
    assert seen["state"]["rooms"] == ["r"]
    assert seen["missed"]["values"] == [0, 1, 2, 3]


# -- under an ASGI server ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["connect", "binary", "rooms", "recover-server-drop"])
async def test_under_uvicorn(transports: str, scenario: str) -> None:
    """The same scenarios with the server mounted as an ASGI app under uvicorn."""
    async with running_asgi(connection_state_recovery=True) as (url, _, _recorder):
        seen = await run(url, scenario, transports)
    if scenario == "connect":
        final = "polling" if transports == "polling" else "websocket"
        assert seen["transport"]["name"] == final
    elif scenario == "binary":
        assert seen["binary-server-ack"]["value"]["reversed"] == hexed(bytes([30, 20, 10]))
    elif scenario == "rooms":
        assert seen["received"]["c"] == ["server to r1+r2", "server to r3"]
    else:
        assert seen["recovered"]["recovered"] is True
        assert seen["missed"]["values"] == [0, 1, 2, 3]
