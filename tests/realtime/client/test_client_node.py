"""tether's Socket.IO client against the official Node server (socket.io 4.8).

The server is ``tests/interop/node/socketio_server.mjs`` (its header lists
the events it answers), started once for this module and killed by PID at the
end. It runs two servers: one plain, one with connection state recovery.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from helpers import node_bin, repo_root, timeout
from tether.exceptions import ConnectionRefused, Disconnected
from tether.realtime.client import Client

pytestmark = pytest.mark.interop

SCRIPT = repo_root() / "tests" / "interop" / "node" / "socketio_server.mjs"
T = TypeVar("T")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    """Await with a bound, so that a server that never answers fails the test."""
    return await asyncio.wait_for(awaitable, timeout(units))


@dataclass(frozen=True)
class NodeServer:
    url: str  # connection state recovery off
    recovery_url: str  # connection state recovery on


@pytest.fixture(scope="module")
def node_server() -> Iterator[NodeServer]:
    yield from node_server_process()


def node_server_process(*args: str) -> Iterator[NodeServer]:
    """Run ``socketio_server.mjs`` with ``args`` (``"msgpack"``: its parser)."""
    executable = node_bin()
    if executable is None:
        pytest.skip("node is not installed (scripts/test installs it)")
    process = subprocess.Popen(
        [executable, str(SCRIPT), *args],
        cwd=repo_root(),  # where node_modules/socket.io is
        stdin=subprocess.PIPE,  # the server exits when it closes
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout(10))
        line = process.stdout.readline() if ready else b""
        assert line, f"the node server did not start (exit code {process.poll()})"
        ports = json.loads(line)
        yield NodeServer(
            f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['recoveryPort']}"
        )
    finally:
        process.kill()  # by PID: only the process this module started
        process.wait(timeout(10))


class Events:
    """Records what a client's handlers get, per event; awaited with a bound."""

    def __init__(self, client: Client, *names: str, namespace: str = "/") -> None:
        self.queues: defaultdict[str, asyncio.Queue[tuple[Any, ...]]] = defaultdict(asyncio.Queue)
        for name in names:
            client.on(name, self._recorder(name), namespace=namespace)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.queues[name].put_nowait(args)

        return record

    async def get(self, name: str, units: float = 3) -> tuple[Any, ...]:
        return await within(self.queues[name].get(), units)


MakeClient = Callable[..., Client]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Clients with fast reconnection, all disconnected when the test ends."""
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options = {
            "reconnection_delay": 0.05,
            "reconnection_delay_max": 0.2,
            "connect_timeout": timeout(5),
            **options,
        }
        client = Client(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await within(client.disconnect())


async def test_connect_and_disconnect(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    events = Events(client, "connect", "disconnect")
    await within(client.connect(node_server.url))
    assert await events.get("connect") == ()
    assert client.connected
    assert client.transport == "websocket"
    info = await within(client.emit_with_ack("whoami"))
    assert info == {
        "sid": client.sid(),
        "nsp": "/",
        "transport": "websocket",
        "auth": {},
        "header": None,
    }
    assert not client.recovered()

    await within(client.disconnect())
    assert await events.get("disconnect") == ("io client disconnect",)
    assert not client.connected
    assert client.sid() is None
    await within(client.wait())
    with pytest.raises(Disconnected):
        await client.emit("echo", 1)


async def test_heartbeat_keeps_the_session(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    # The server pings every 300 ms and drops clients that do not answer in
    # 400 ms: still connected after a second means pongs went back.
    client = make_client()
    await within(client.connect(node_server.url))
    sid = client.sid()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.wait(), timeout(1))
    assert client.connected
    assert client.sid() == sid


async def test_namespaces(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    main = Events(client, "echo", "connect")
    chat = Events(client, "echo", "connect", namespace="/chat")
    await within(client.connect(node_server.url, namespaces=["/", "/chat"]))
    await main.get("connect")
    await chat.get("connect")
    assert client.sid("/") != client.sid("/chat")
    assert (await within(client.emit_with_ack("whoami", namespace="/chat")))["nsp"] == "/chat"

    await client.emit("echo", "to chat", namespace="/chat")
    await client.emit("echo", "to main")
    assert await chat.get("echo") == ("to chat",)
    assert await main.get("echo") == ("to main",)
    with pytest.raises(ValueError):
        await client.emit("echo", namespace="/elsewhere")


async def test_namespace_from_url(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    await within(client.connect(node_server.url + "/chat"))
    assert client.sid("/chat") is not None
    assert client.sid("/") is None


async def test_emit_both_ways(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    events = Events(client, "echo")
    await within(client.connect(node_server.url))
    args = ["héllo 🚀", 42, 1.5, True, None, [1, "two"], {"nested": {"list": [None]}}]
    await client.emit("echo", *args)
    assert await events.get("echo") == tuple(args)
    await client.emit("echo")
    assert await events.get("echo") == ()


async def test_acks_from_the_server(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    await within(client.connect(node_server.url))
    # One value, several (a tuple), none (None): like python-socketio's call().
    assert await within(client.emit_with_ack("echo_ack", {"a": 1})) == {"a": 1}
    assert await within(client.emit_with_ack("echo_ack", 1, "two")) == (1, "two")
    assert await within(client.emit_with_ack("echo_ack")) is None
    replies = await within(
        asyncio.gather(
            *(client.emit_with_ack("echo_ack", i, timeout=timeout(3)) for i in range(20))
        )
    )
    assert replies == list(range(20))


async def test_acks_to_the_server(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    events = Events(client, "answer")
    answers: list[Any] = [("sync", 1), "async", None]

    @client.on("question")
    def question(*args: Any) -> Any:
        answer = answers.pop(0)
        if answer == "async":

            async def later() -> Any:
                await asyncio.sleep(0)
                return ["async", *args]

            return later()
        return answer

    await within(client.connect(node_server.url))
    await client.emit("ask", "q1")
    assert await events.get("answer") == ("sync", 1)  # a tuple: one argument per item
    await client.emit("ask", "q2")
    assert await events.get("answer") == (["async", "q2"],)  # a list: one argument
    await client.emit("ask", "q3")
    assert await events.get("answer") == ()  # None: no arguments


async def test_binary_both_ways(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    events = Events(client, "echo", "answer")
    client.on("question", lambda blob: (blob[::-1], {"copy": blob}))
    await within(client.connect(node_server.url))
    args = [b"\x00\x01\xff", {"deep": [b"", bytearray(b"ba")]}, "text", b"x" * 100_000]
    await client.emit("echo", *args)
    assert await events.get("echo") == (
        b"\x00\x01\xff",
        {"deep": [b"", b"ba"]},
        "text",
        b"x" * 100_000,
    )
    assert await within(client.emit_with_ack("echo_ack", b"\x01", [b"\x02"])) == (
        b"\x01",
        [b"\x02"],
    )
    await client.emit("ask", b"abc")
    assert await events.get("answer") == (b"cba", {"copy": b"abc"})


async def test_connect_error_with_data(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client()
    events = Events(client, "connect_error", namespace="/private")
    with pytest.raises(ConnectionRefused) as caught:
        await within(client.connect(node_server.url, namespaces=["/", "/private"]))
    assert caught.value.message == "not authorized"
    assert caught.value.data == {"reason": "bad token"}
    (error,) = await events.get("connect_error")
    assert isinstance(error, ConnectionRefused)
    assert (error.message, error.data) == ("not authorized", {"reason": "bad token"})
    assert not client.connected
    await within(client.wait())

    # The same client again, with the right auth payload, from a function.
    async def auth() -> dict[str, str]:
        return {"token": "secret"}

    await within(client.connect(node_server.url, namespaces=["/private"], auth=auth))
    info = await within(client.emit_with_ack("whoami", namespace="/private"))
    assert info["auth"] == {"token": "secret"}


async def test_server_disconnects_the_namespace(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client()
    events = Events(client, "disconnect", "connect")
    await within(client.connect(node_server.url))
    await events.get("connect")
    await client.emit("kick")
    assert await events.get("disconnect") == ("io server disconnect",)
    await within(client.wait())  # not reconnecting: the server meant it
    assert not client.connected
    assert events.queues["connect"].empty()


async def test_reconnection_after_the_server_drops_the_connection(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client()
    events = Events(client, "connect", "disconnect", "echo")
    await within(client.connect(node_server.url))
    await events.get("connect")
    first_sid = client.sid()

    await client.emit("drop")
    assert await events.get("disconnect") == ("transport close",)
    await events.get("connect")
    assert client.connected
    assert client.sid() not in (None, first_sid)
    assert not client.recovered()  # recovery is off on this server
    await client.emit("echo", "after")
    assert await events.get("echo") == ("after",)


async def test_emits_while_disconnected_are_sent_after_reconnecting(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client()
    events = Events(client, "connect", "echo")
    while_disconnected: list[bool] = []
    acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @client.on("disconnect")
    async def on_disconnect(reason: str) -> None:
        if reason != "transport close":
            return  # the end of the test
        while_disconnected.append(client.connected)
        for i in range(3):
            await client.emit("echo", "buffered", i, b"\x00")
        acked.set_result(await client.emit_with_ack("echo_ack", "buffered ack"))

    await within(client.connect(node_server.url))
    await events.get("connect")
    await client.emit("drop")
    await events.get("connect")
    for i in range(3):
        assert await events.get("echo") == ("buffered", i, b"\x00")
    assert await within(acked) == "buffered ack"
    assert while_disconnected == [False]


async def test_state_recovery_delivers_missed_events(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client()
    events = Events(client, "connect", "disconnect", "echo", "missed")
    chat = Events(client, "echo", "connect", namespace="/chat")
    await within(client.connect(node_server.recovery_url, namespaces=["/", "/chat"]))
    await events.get("connect")
    await chat.get("connect")
    sid = client.sid()
    assert not client.recovered()
    # Every event from this server carries its offset as a last argument: the
    # client keeps it for itself (it resumes from there).
    await client.emit("echo", "a", "b")
    assert await events.get("echo") == ("a", "b")
    await client.emit("echo", "c", namespace="/chat")
    assert await chat.get("echo") == ("c",)

    # The server closes the connection, then emits two events we miss.
    await client.emit("drop_then_emit", "missed 1", {"n": 2})
    assert await events.get("disconnect") == ("transport close",)
    await events.get("connect")
    await chat.get("connect")
    assert client.recovered()
    assert client.sid() == sid
    assert await events.get("missed") == ("missed 1",)
    assert await events.get("missed") == ({"n": 2},)
    # /chat missed nothing, but its session was recovered too.
    assert client.recovered("/chat")
    assert chat.queues["echo"].empty()
    await client.emit("echo", "still here")
    assert await events.get("echo") == ("still here",)


async def test_polling_transport(node_server: NodeServer, make_client: MakeClient) -> None:
    client = make_client(transports=("polling",))
    events = Events(client, "echo", "connect", "disconnect")
    headers = {"X-Tether-Test": "polling"}
    await within(client.connect(node_server.url, namespaces=["/", "/chat"], headers=headers))
    assert client.transport == "polling"
    info = await within(client.emit_with_ack("whoami"))
    assert (info["transport"], info["header"]) == ("polling", "polling")
    await client.emit("echo", "über", b"\x00\xff", {"b": [b"\x01"]})
    assert await events.get("echo") == ("über", b"\x00\xff", {"b": [b"\x01"]})
    assert await within(client.emit_with_ack("echo_ack", b"bin")) == b"bin"
    # Several packets in flight at once share payloads.
    replies = await within(
        asyncio.gather(*(client.emit_with_ack("echo_ack", i) for i in range(10)))
    )
    assert replies == list(range(10))
    # Heartbeat over polling: still connected after several ping intervals.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.wait(), timeout(1))
    # Reconnection over polling.
    await events.get("connect")
    await client.emit("drop")
    assert (await events.get("disconnect"))[0] in ("transport close", "transport error")
    await events.get("connect")
    assert client.transport == "polling"


async def test_polling_upgrades_to_websocket(
    node_server: NodeServer, make_client: MakeClient
) -> None:
    client = make_client(transports=("polling", "websocket"))
    events = Events(client, "echo", "upgraded")
    await within(client.connect(node_server.url, headers=[("X-Tether-Test", "both")]))
    sid = client.sid()
    assert await events.get("upgraded") == ("websocket",)  # the server saw the upgrade
    assert client.transport == "websocket"
    info = await within(client.emit_with_ack("whoami"))
    assert (info["transport"], info["sid"], info["header"]) == ("websocket", sid, "both")
    await client.emit("echo", b"\x01\x02", "after upgrade")
    assert await events.get("echo") == (b"\x01\x02", "after upgrade")
