"""The observer seam (tether.realtime.server.observe): a recording Observer on a
real server on 127.0.0.1 port 0, driven by tether's realtime Client; each hook
is checked for its arguments and its order against the handlers. An observer
that raises is logged and does not break the server; unobserve stops the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

from helpers import timeout
from tether import realtime
from tether.realtime.client import Client
from tether.realtime.server.observe import HOOKS, Observer

T = TypeVar("T")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


class Recorder(Observer):
    """Every call, in order, as (hook name, simple arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.changed = asyncio.Event()

    def _add(self, *call: Any) -> None:
        self.calls.append(call)
        self.changed.set()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == name]

    async def wait_for(self, name: str, count: int = 1) -> list[tuple[Any, ...]]:
        async def wait() -> None:
            while len(self.named(name)) < count:
                self.changed.clear()
                await self.changed.wait()

        await within(wait())
        return self.named(name)

    def server_started(self) -> None:
        self._add("server_started")

    def server_stopping(self) -> None:
        self._add("server_stopping")

    def session_opened(self, session: Any) -> None:
        self._add("session_opened", session.transport)

    def session_closed(self, session: Any, reason: str) -> None:
        self._add("session_closed", reason)

    def message_received(self, session: Any, size: int) -> None:
        self._add("message_received", size)

    def messages_sent(self, count: int, size: int) -> None:
        self._add("messages_sent", count, size)

    def socket_connected(self, socket: Any, recovered: bool) -> None:
        self._add("socket_connected", socket.sid, recovered, sorted(socket.rooms))

    def socket_disconnected(self, socket: Any, reason: str) -> None:
        self._add("socket_disconnected", socket.sid, reason)

    def room_joined(self, nsp: str, room: str, sid: str) -> None:
        self._add("room_joined", nsp, room, sid)

    def room_left(self, nsp: str, room: str, sid: str) -> None:
        self._add("room_left", nsp, room, sid)

    def event_received(self, socket: Any, event: str, args: Any) -> None:
        self._add("event_received", socket.sid, event, list(args))

    def event_sent(
        self, nsp: str, event: str, args: Any, *, sid: Any = None, opts: Any = None
    ) -> None:
        rooms = None if opts is None else sorted(opts.rooms)
        self._add("event_sent", nsp, event, list(args), sid, rooms)

    def recovery(self, nsp: str, succeeded: bool) -> None:
        self._add("recovery", nsp, succeeded)

    def ack_round_trip(self, socket: Any, seconds: float) -> None:
        self._add("ack_round_trip", socket.sid, seconds)


@pytest.fixture
async def observed() -> AsyncIterator[tuple[realtime.Server, Recorder, Client]]:
    server = realtime.Server()
    recorder = Recorder()
    server.observe(recorder)

    @server.on("connect")
    async def connect(socket: realtime.Socket) -> None:
        recorder._add("handler connect", socket.sid)
        await socket.join("lobby")

    @server.on("chat")
    def chat(socket: realtime.Socket, text: str) -> str:
        recorder._add("handler chat", text)
        return text.upper()

    @server.on("ask")
    async def ask(socket: realtime.Socket) -> Any:
        return await socket.emit_with_ack("question", 1)

    @server.on("shout")
    async def shout(socket: realtime.Socket, text: str) -> None:
        await server.to("lobby").emit("news", text)

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(realtime.serve(server, "127.0.0.1", 0))
        client = Client(reconnection=False, transports=["websocket"])
        client.on("question", lambda n: n + 1)
        news: asyncio.Queue[Any] = asyncio.Queue()
        client.on("news", news.put_nowait)
        await within(client.connect(f"http://127.0.0.1:{http.port}"))
        stack.push_async_callback(client.disconnect)
        client.news = news  # type: ignore[attr-defined]
        yield server, recorder, client


async def test_hook_names_are_stable() -> None:
    # Helper C's metrics use these names: renaming one breaks them.
    assert HOOKS == (
        "server_started",
        "server_stopping",
        "session_opened",
        "session_closed",
        "message_received",
        "messages_sent",
        "socket_connected",
        "socket_disconnected",
        "room_joined",
        "room_left",
        "event_received",
        "event_sent",
        "recovery",
        "ack_round_trip",
    )


async def test_connect_join_event_ack_broadcast_disconnect(
    observed: tuple[realtime.Server, Recorder, Client],
) -> None:
    server, recorder, client = observed
    sid = client.sid()
    assert sid is not None
    assert await within(client.emit_with_ack("chat", "hi")) == "HI"
    # Order: connected (in its own room only) before the connect handler,
    # which joins "lobby"; the event is reported before its handler runs.
    order = [c[0] for c in recorder.calls if not c[0].startswith("message")]
    assert order[:6] == [
        "server_started",
        "session_opened",
        "socket_connected",
        "handler connect",
        "room_joined",
        "event_received",
    ]
    assert order[6] == "handler chat"
    assert recorder.named("session_opened") == [("websocket",)]
    assert recorder.named("socket_connected") == [(sid, False, [sid])]
    assert recorder.named("room_joined") == [("/", "lobby", sid)]
    assert recorder.named("event_received") == [(sid, "chat", ["hi"])]
    assert recorder.named("message_received")  # at least the CONNECT and the event
    # The CONNECT reply and the ack, one session each.
    assert all(count == 1 for count, _ in recorder.named("messages_sent"))

    assert await within(client.emit_with_ack("ask")) == 2
    assert recorder.named("event_sent") == [("/", "question", [1], sid, None)]
    ((ack_sid, seconds),) = recorder.named("ack_round_trip")
    assert ack_sid == sid and 0 <= seconds < timeout(3)

    await client.emit("shout", "hey")
    assert await within(client.news.get()) == "hey"  # type: ignore[attr-defined]
    assert recorder.named("event_sent")[-1] == ("/", "news", ["hey"], None, ["lobby"])

    socket = server.sockets[sid]
    await socket.leave("lobby")
    await socket.leave("lobby")  # not in it any more: not reported again
    assert recorder.named("room_left") == [("/", "lobby", sid)]

    await client.disconnect()
    await recorder.wait_for("session_closed")
    assert recorder.named("socket_disconnected") == [(sid, "client namespace disconnect")]


async def test_a_failing_observer_is_logged_and_others_still_called(
    observed: tuple[realtime.Server, Recorder, Client], caplog: pytest.LogCaptureFixture
) -> None:
    server, recorder, client = observed

    class Broken(Observer):
        def event_received(self, socket: Any, event: str, args: Any) -> None:
            raise RuntimeError("broken observer")

    broken = server.observe(Broken())
    server.unobserve(recorder)
    server.observe(recorder)  # after the broken one
    assert server.observers == (broken, recorder)
    with caplog.at_level(logging.ERROR, "tether.realtime"):
        assert await within(client.emit_with_ack("chat", "x")) == "X"
    assert "an observer's event_received hook failed" in caplog.text
    assert recorder.named("event_received")[-1][1:] == ("chat", ["x"])

    server.unobserve(broken)
    server.unobserve(recorder)
    assert server.observers == ()
    assert all(getattr(server.hooks, name) is None for name in HOOKS)
    before = len(recorder.calls)
    assert await within(client.emit_with_ack("chat", "y")) == "Y"
    assert recorder.calls[before:] == [("handler chat", "y")]  # no hook call


async def test_recovery_is_reported() -> None:
    server = realtime.Server(connection_state_recovery=True)
    recorder = server.observe(Recorder())
    assert isinstance(recorder, Recorder)
    sockets: list[realtime.Socket] = []
    server.on("connect", sockets.append)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        client = Client(reconnection_delay=0.01, transports=["websocket"])
        try:
            await within(client.connect(f"http://127.0.0.1:{http.port}"))
            sid = client.sid()
            assert sid is not None
            sockets[0].conn.close()  # a lost connection: the client comes back
            connected = await recorder.wait_for("socket_connected", 2)
            assert connected[1][:2] == (sid, True)
            assert recorder.named("recovery") == [("/", True)]
            assert recorder.named("socket_disconnected")[0][1] in (
                "forced close",
                "transport close",
            )
        finally:
            await client.disconnect()
    assert recorder.calls[-1] == ("server_stopping",)


@pytest.fixture
def unobserved(
    observed: tuple[realtime.Server, Recorder, Client],
) -> tuple[realtime.Server, Client]:
    """The observed server and client, with the recorder uninstalled."""
    server, recorder, client = observed
    server.unobserve(recorder)
    return server, client


class Partial(Observer):
    """Overrides two hooks only, and logs each call with its own name."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name = name
        self.log = log

    def event_received(self, socket: Any, event: str, args: Any) -> None:
        self.log.append((self.name, f"event_received {event}"))

    def messages_sent(self, count: int, size: int) -> None:
        self.log.append((self.name, "messages_sent"))


async def test_only_the_hooks_an_observer_overrides_are_called(
    unobserved: tuple[realtime.Server, Client],
) -> None:
    server, client = unobserved
    log: list[tuple[str, str]] = []
    partial = server.observe(Partial("a", log))
    # Decided when installed: the rest are None at the sites, not no-ops called.
    called = {name for name in HOOKS if getattr(server.hooks, name) is not None}
    assert called == {"event_received", "messages_sent"}
    # One observer: its own bound method, called with no layer in between.
    assert server.hooks.event_received == partial.event_received  # type: ignore[attr-defined]
    assert await within(client.emit_with_ack("chat", "x")) == "X"
    assert log == [("a", "event_received chat"), ("a", "messages_sent")]  # the event, its ack


async def test_two_observers_get_each_call_in_install_order(
    observed: tuple[realtime.Server, Recorder, Client],
) -> None:
    server, recorder, client = observed
    server.unobserve(recorder)
    log: list[tuple[str, str]] = []
    server.observe(Partial("a", log))
    server.observe(Partial("b", log))
    server.observe(recorder)  # overrides every hook
    assert await within(client.emit_with_ack("chat", "x")) == "X"
    assert log == [
        ("a", "event_received chat"),
        ("b", "event_received chat"),
        ("a", "messages_sent"),
        ("b", "messages_sent"),
    ]
    assert recorder.named("event_received") == [(client.sid(), "chat", ["x"])]
    assert [c for c in recorder.calls if c[0] == "message_received"]


async def test_observers_installed_and_removed_while_running(
    observed: tuple[realtime.Server, Recorder, Client],
) -> None:
    server, recorder, client = observed
    log: list[tuple[str, str]] = []
    late = server.observe(Partial("late", log))
    assert server.observers == (recorder, late)
    assert await within(client.emit_with_ack("chat", "x")) == "X"
    assert log == [("late", "event_received chat"), ("late", "messages_sent")]
    server.unobserve(late)
    assert await within(client.emit_with_ack("chat", "y")) == "Y"
    assert len(log) == 2  # no call after it left
    assert [c[1] for c in recorder.named("event_received")] == ["chat", "chat"]


async def test_a_hook_set_on_the_instance_counts_as_overridden(
    unobserved: tuple[realtime.Server, Client],
) -> None:
    server, client = unobserved
    seen: list[str] = []
    observer = Observer()
    observer.event_received = lambda socket, event, args: seen.append(event)  # type: ignore[method-assign]
    server.observe(observer)
    assert server.hooks.event_received is not None and server.hooks.messages_sent is None
    assert await within(client.emit_with_ack("chat", "x")) == "X"
    assert seen == ["chat"]


async def test_a_failing_lone_observer_is_logged_and_the_server_goes_on(
    unobserved: tuple[realtime.Server, Client], caplog: pytest.LogCaptureFixture
) -> None:
    server, client = unobserved

    class Broken(Observer):
        def message_received(self, session: Any, size: int) -> None:
            raise RuntimeError("broken observer")

        def event_received(self, socket: Any, event: str, args: Any) -> None:
            raise RuntimeError("broken observer")

        def messages_sent(self, count: int, size: int) -> None:
            raise RuntimeError("broken observer")

    server.observe(Broken())
    with caplog.at_level(logging.ERROR, "tether.realtime"):
        assert await within(client.emit_with_ack("chat", "x")) == "X"
    for hook in ("message_received", "event_received", "messages_sent"):
        assert f"an observer's {hook} hook failed" in caplog.text
