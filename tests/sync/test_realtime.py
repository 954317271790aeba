"""tether.sync.realtime's Client and SimpleClient against the official Node
Socket.IO server (socket.io 4.8) and tether's own realtime server.

The Node server is ``tests/interop/node/socketio_server.mjs`` (its header
lists the events it answers), started once for this module and killed by PID
at the end by the asyncio client's fixture (``node_server``, imported);
tether's server runs on an event loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import timeout
from realtime.client.test_client_node import NodeServer, node_server
from sync.conftest import run_script
from tether import realtime
from tether.exceptions import AckTimeout, ConnectionRefused, Disconnected, InvalidState
from tether.sync import loop as sync_loop
from tether.sync.loop import EventLoopThread
from tether.sync.realtime import Client, SimpleClient

__all__ = ["node_server"]  # the fixture, imported to be used here

FAST = {"reconnection_delay": 0.05, "reconnection_delay_max": 0.2}


@pytest.fixture(scope="module")
def node_url(node_server: NodeServer) -> str:
    return node_server.url


class Recorder:
    """What a client's handlers got, per event, and on which thread."""

    def __init__(self, client: Client, *names: str, namespace: str = "/") -> None:
        self.queues: defaultdict[str, queue.Queue[tuple[Any, ...]]] = defaultdict(queue.Queue)
        self.threads: set[threading.Thread] = set()
        for name in names:
            client.on(name, self.recorder(name), namespace=namespace)

    def recorder(self, name: str, answer: Any = None) -> Callable[..., Any]:
        def record(*args: Any) -> Any:
            self.threads.add(threading.current_thread())
            self.queues[name].put(args)
            return answer

        return record

    def get(self, name: str, units: float = 3) -> tuple[Any, ...]:
        return self.queues[name].get(timeout=timeout(units))


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(**{**FAST, "connect_timeout": timeout(5), **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# -- SimpleClient ----------------------------------------------------------------------


def test_simple_client_emit_call_receive(node_url: str) -> None:
    with SimpleClient(connect_timeout=timeout(5)) as client:
        client.connect(node_url)
        assert client.connected and client.transport == "websocket"
        assert client.call("echo_ack", 1, "two", timeout=timeout(3)) == (1, "two")
        assert client.call("whoami", timeout=timeout(3))["sid"] == client.sid
        client.emit("echo", "x", b"\x01\x02")
        assert client.receive(timeout=timeout(3)) == ["echo", "x", b"\x01\x02"]
        with pytest.raises(TimeoutError):
            client.receive(timeout=timeout(0.1))
        # The server closes the namespace: what was received is still read, then Disconnected.
        client.emit("echo", "last")
        client.emit("kick")
        assert client.receive(timeout=timeout(3)) == ["echo", "last"]
        with pytest.raises(Disconnected):
            client.receive(timeout=timeout(3))
        with pytest.raises(Disconnected):
            client.receive(timeout=timeout(3))
    assert not client.connected


def test_simple_client_auth_and_namespace(node_url: str) -> None:
    with SimpleClient(reconnection=False, connect_timeout=timeout(5)) as client:
        with pytest.raises(ConnectionRefused) as refused:
            client.connect(node_url, namespace="/private", auth={"token": "wrong"})
        assert refused.value.message == "not authorized"
        assert refused.value.data == {"reason": "bad token"}
        client.connect(node_url, namespace="/private", auth={"token": "secret"})
        info = client.call("whoami", timeout=timeout(3))
        assert info["nsp"] == "/private" and info["auth"] == {"token": "secret"}


def test_simple_client_transports(node_url: str) -> None:
    with SimpleClient(connect_timeout=timeout(5)) as client:
        client.connect(node_url, transports=("polling", "websocket"))
        assert client.receive(timeout=timeout(5)) == ["upgraded", "websocket"]
        assert client.transport == "websocket"
        with pytest.raises(Disconnected):
            client.connect(node_url)  # connected already


# -- Client ----------------------------------------------------------------------------


def test_handlers_run_off_the_loop_thread_in_order(
    node_url: str, clients: Callable[..., Client]
) -> None:
    client = clients()
    events = Recorder(client, "connect", "echo", "answer")
    client.on("question", events.recorder("question", answer=("yes", 2)))
    client.connect(node_url)
    assert events.get("connect") == ()
    for n in range(20):
        client.emit("echo", n)
    assert [events.get("echo")[0] for _ in range(20)] == list(range(20))
    # The server asks a question with an ack: the handler's return value answers it.
    client.emit("ask", "ready?")
    assert events.get("question") == ("ready?",)
    assert events.get("answer") == ("yes", 2)
    # Every handler ran on the client's one handler thread.
    assert len(events.threads) == 1
    (thread,) = events.threads
    assert thread is not threading.current_thread() and thread is not sync_loop.shared.thread


def test_emit_callback_and_call(node_url: str, clients: Callable[..., Client]) -> None:
    client = clients()
    client.connect(node_url)
    acked: queue.Queue[tuple[tuple[Any, ...], threading.Thread]] = queue.Queue()
    client.emit(
        "echo_ack", 7, "eight", callback=lambda *a: acked.put((a, threading.current_thread()))
    )
    args, thread = acked.get(timeout=timeout(3))
    assert args == (7, "eight")
    assert thread is not threading.current_thread() and thread is not sync_loop.shared.thread
    assert client.call("echo_ack", timeout=timeout(3)) is None
    # "echo" is never acknowledged by the server.
    with pytest.raises(AckTimeout):
        client.call("echo", 1, timeout=timeout(0.2))
    with pytest.raises(ValueError, match="reserved"):
        client.emit("connect", callback=print)
    with pytest.raises(ValueError, match="reserved"):
        client.emit("disconnect")


def test_a_handler_may_call_the_server(node_url: str, clients: Callable[..., Client]) -> None:
    client = clients()
    got: queue.Queue[Any] = queue.Queue()

    @client.on("echo")
    def on_echo(*args: Any) -> None:
        # From the handler thread: a blocking call waits on the loop, which runs on.
        got.put(client.call("echo_ack", *args, timeout=timeout(3)))

    client.connect(node_url)
    client.emit("echo", "round trip")
    assert got.get(timeout=timeout(3)) == "round trip"


def test_a_failing_handler_does_not_stop_the_next(
    node_url: str, clients: Callable[..., Client]
) -> None:
    client = clients()
    events = Recorder(client, "answer")

    @client.on("echo")
    def broken(*args: Any) -> None:
        raise RuntimeError("handler bug")

    client.connect(node_url)
    client.emit("echo", 1)
    client.emit("ask", "still there?")
    client.on("question", events.recorder("question", answer="yes"))
    assert events.get("answer") == ("yes",)


def test_reconnection_after_the_connection_drops(
    node_url: str, clients: Callable[..., Client]
) -> None:
    client = clients()
    events = Recorder(client, "connect", "disconnect")
    client.connect(node_url)
    assert events.get("connect") == ()
    first_sid = client.sid()
    client.emit("drop")  # the server closes the Engine.IO connection
    assert events.get("disconnect") == ("transport close",)
    assert events.get("connect") == ()
    assert client.connected and client.sid() != first_sid
    assert client.call("echo_ack", "back", timeout=timeout(3)) == "back"
    assert not client.wait(timeout=timeout(0.1))


def test_wait_returns_when_the_server_disconnects(
    node_url: str, clients: Callable[..., Client]
) -> None:
    client = clients()
    events = Recorder(client, "disconnect")
    client.connect(node_url)
    client.emit("kick")
    assert client.wait(timeout=timeout(3))
    assert events.get("disconnect") == ("io server disconnect",)
    with pytest.raises(Disconnected):
        client.emit("echo", 1)


def test_disconnect_runs_the_disconnect_handler_before_returning(
    node_url: str, clients: Callable[..., Client]
) -> None:
    client = clients()
    events = Recorder(client, "disconnect")
    client.connect(node_url)
    client.disconnect()
    assert events.queues["disconnect"].get_nowait() == ("io client disconnect",)
    assert not client.connected
    assert client.wait(timeout=timeout(1))


@pytest.mark.parametrize("method", ["disconnect", "close"])
def test_a_handler_may_disconnect_the_client(
    node_url: str, clients: Callable[..., Client], method: str
) -> None:
    client = clients()
    events = Recorder(client, "disconnect")

    @client.on("echo")
    def on_echo(*args: Any) -> None:
        getattr(client, method)()  # the handler's own thread: must not wait for itself

    client.connect(node_url)
    client.emit("echo", "bye")
    assert client.wait(timeout=timeout(3))
    assert events.get("disconnect") == ("io client disconnect",)


def test_coroutine_handlers_are_refused() -> None:
    client = Client()

    async def handler() -> None:
        pass

    with pytest.raises(TypeError, match="plain functions"):
        client.on("news", handler)
    client.close()


def test_inside_a_running_loop_raises(node_url: str) -> None:
    client = Client(reconnection=False)

    async def misuse() -> None:
        with pytest.raises(InvalidState, match="running event loop"):
            client.connect(node_url)

    asyncio.run(misuse())
    client.close()


# -- against tether's realtime server ---------------------------------------------------


class TetherRealtime:
    """tether's realtime server on ``loop``; :meth:`stop` and :meth:`start` again
    on the same port, as a server that goes away and comes back."""

    def __init__(self, loop: EventLoopThread) -> None:
        self.loop = loop
        self.server = realtime.Server(ping_interval=timeout(0.3), ping_timeout=timeout(0.4))
        self.port = 0
        self.stack: contextlib.AsyncExitStack | None = None
        self.disconnects: queue.Queue[str] = queue.Queue()

        @self.server.on("echo_ack")
        async def echo_ack(socket: Any, *args: Any) -> tuple[Any, ...]:
            return args

        @self.server.on("echo")
        async def echo(socket: Any, *args: Any) -> None:
            await socket.emit("echo", *args)

        @self.server.on("disconnect")
        async def disconnected(socket: Any, reason: str) -> None:
            self.disconnects.put(reason)

        @self.server.on("flood")
        async def flood(socket: Any, count: int, size: int) -> int:
            for n in range(count):
                await socket.emit("item", n, "x" * size)
            return count  # the ack comes after every item

    async def _start(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        http = await self.stack.enter_async_context(
            realtime.serve(self.server, "127.0.0.1", self.port)
        )
        self.port = http.port

    async def _stop(self) -> None:
        if self.stack is not None:
            await self.stack.aclose()
            self.stack = None

    def start(self) -> str:
        self.loop.run(self._start)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.run(self._stop)


@pytest.fixture
def tether_realtime(server_loop: EventLoopThread) -> Iterator[TetherRealtime]:
    server = TetherRealtime(server_loop)
    try:
        yield server
    finally:
        server.stop()


def test_against_tethers_server_and_back_after_it_went_away(
    tether_realtime: TetherRealtime, clients: Callable[..., Client]
) -> None:
    url = tether_realtime.start()
    client = clients()
    events = Recorder(client, "connect", "disconnect", "connect_error", "echo")
    client.connect(url, auth={"user": "sync"})
    assert events.get("connect") == ()
    assert client.call("echo_ack", 1, [2], timeout=timeout(3)) == (1, [2])
    tether_realtime.stop()
    assert events.get("disconnect")[0] in ("transport close", "io server disconnect")
    # While the server is away: attempts fail, events wait in the buffer.
    assert isinstance(events.get("connect_error")[0], Exception)
    client.emit("echo", "buffered")
    tether_realtime.start()
    assert events.get("connect", units=5) == ()
    assert events.get("echo") == ("buffered",)  # sent once connected again
    assert client.call("echo_ack", "again", timeout=timeout(3)) == "again"


def test_simple_client_against_tethers_server(tether_realtime: TetherRealtime) -> None:
    url = tether_realtime.start()
    with SimpleClient(connect_timeout=timeout(5)) as client:
        client.connect(url, transports=("polling",))
        assert client.transport == "polling"
        assert client.call("echo_ack", {"a": b"\x00"}, timeout=timeout(3)) == {"a": b"\x00"}


def test_simple_client_holds_few_unread_events_and_loses_none(
    tether_realtime: TetherRealtime,
) -> None:
    """Unread events hold the client's handler slots; the rest wait, and all
    arrive in order once read."""
    url = tether_realtime.start()
    limits = realtime.RealtimeLimits(max_handler_tasks=2)
    with SimpleClient(connect_timeout=timeout(5), limits=limits) as client:
        client.connect(url)
        assert client.call("flood", 50, 100, timeout=timeout(3)) == 50
        async_client = client.client
        assert async_client is not None
        table = async_client.client._handlers
        assert sync_loop.shared.run(_running, table) == 2  # the other 48 wait
        assert [client.receive(timeout=timeout(3))[1] for _ in range(50)] == list(range(50))


async def _running(table: Any) -> int:
    return int(table.running)


def test_simple_client_that_stops_reading_is_dropped_past_max_pending_bytes(
    tether_realtime: TetherRealtime,
) -> None:
    url = tether_realtime.start()
    limits = realtime.RealtimeLimits(max_handler_tasks=2, max_pending_bytes=8192)
    with SimpleClient(reconnection=False, connect_timeout=timeout(5), limits=limits) as client:
        client.connect(url)
        client.emit("flood", 50, 300)
        # The two events read before the drop, then the end: nothing piled up.
        assert [client.receive(timeout=timeout(3))[1] for _ in range(2)] == [0, 1]
        with pytest.raises(Disconnected):
            client.receive(timeout=timeout(3))


def test_disconnect_returns_after_the_backlog_and_the_disconnect_handler(
    tether_realtime: TetherRealtime, clients: Callable[..., Client]
) -> None:
    """With events waiting for a handler slot, disconnect() still returns
    once every handler before it and the "disconnect" one have run."""
    url = tether_realtime.start()
    client = clients(limits=realtime.RealtimeLimits(max_handler_tasks=1))
    seen: list[Any] = []
    release = threading.Event()

    @client.on("item")
    def item(n: int, text: str) -> None:
        assert release.wait(timeout(5))
        seen.append(n)

    client.on("disconnect", lambda reason: seen.append(reason))
    client.connect(url)
    assert client.call("flood", 5, 10, timeout=timeout(3)) == 5  # 1 runs, 4 wait
    leaving = threading.Thread(target=client.disconnect)
    leaving.start()
    deadline = time.monotonic() + timeout(3)
    while client.connected and time.monotonic() < deadline:  # disconnect() is under way
        time.sleep(0.01)
    assert not client.connected and leaving.is_alive()  # held up by the backlog
    release.set()
    leaving.join(timeout(5))
    assert not leaving.is_alive()
    assert seen == [0, 1, 2, 3, 4, "io client disconnect"]


def test_a_script_that_never_disconnects_says_goodbye_at_exit(
    tether_realtime: TetherRealtime,
) -> None:
    url = tether_realtime.start()
    script = f"""
from tether.sync.realtime import Client
client = Client()
client.on("disconnect", lambda reason: print("disconnected:", reason))
client.connect({url!r})
print(client.call("echo_ack", "still here", timeout=5))
"""
    started = time.monotonic()
    result = run_script(script)
    # Closed at exit, within the grace period: the disconnect handler ran,
    # and the server saw the client leave.
    expected = "still here\ndisconnected: io client disconnect\n"
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")
    assert tether_realtime.disconnects.get(timeout=timeout(3)) == "client namespace disconnect"
    assert time.monotonic() - started < timeout(10)


def test_a_handler_that_never_returns_does_not_keep_the_process_alive(
    tether_realtime: TetherRealtime,
) -> None:
    url = tether_realtime.start()
    script = f"""
import threading
from tether.sync.realtime import Client
client = Client()
started = threading.Event()

@client.on("echo")
def stuck(*args):
    started.set()
    threading.Event().wait()  # for ever

client.connect({url!r})
client.emit("echo", 1)
print(started.wait(5))
"""
    result = run_script(script)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")
