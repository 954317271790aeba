"""The Socket.IO v5 server on the wire: connecting to namespaces (static and
dynamic), middleware, events, acknowledgements both ways, binary attachments,
malformed packets.

Packets are written and read as literal strings over a WebSocket (or raw
long-polling requests): ``40`` is Engine.IO ``message`` + Socket.IO
``CONNECT``, ``42`` an ``EVENT``, and so on. Section names refer to the
Socket.IO v5 specification (socketio/socket.io-protocol).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

import tether
from helpers import timeout
from realtime.conftest import StartSio
from realtime.sio_helpers import (
    EioSocket,
    eventually,
    open_polling,
    open_websocket,
    poll,
    post,
    sio_connect,
)
from tether import realtime
from tether.realtime import AckTimeout, ConnectionRefused, Disconnected, Socket

PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'


def echo_server(**options: Any) -> realtime.Server:
    """The server the Socket.IO protocol test-suite expects, on ``/`` and ``/custom``."""
    options.setdefault("connect_timeout", timeout(2))
    server = realtime.Server(**options)
    for namespace in (server, server.of("/custom")):

        @namespace.on("connect")
        async def connect(socket: Socket, auth: dict[str, Any]) -> None:
            await socket.emit("auth", auth)

        @namespace.on("message")
        async def message(socket: Socket, *args: Any) -> None:
            await socket.emit("message-back", *args)

        @namespace.on("message-with-ack")
        async def message_with_ack(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args

    return server


async def connected(port: int, namespace: str = "/", auth: Any = None) -> EioSocket:
    """Connected to ``namespace`` of an echo server, its ``auth`` event read."""
    ws, _ = await sio_connect(port, namespace, auth)
    prefix = "42" if namespace == "/" else f"42{namespace},"
    assert await ws.recv() == prefix + '["auth",' + json.dumps(auth or {}) + "]"
    return ws


# -- §Connection to a namespace ----------------------------------------------------------


@pytest.mark.parametrize(
    ("connect", "prefix", "auth"),
    [
        ("40", "40", "{}"),
        ('40{"token":"123"}', "40", '{"token":"123"}'),
        ("40/custom,", "40/custom,", "{}"),
        ('40/custom,{"token":"abc"}', "40/custom,", '{"token":"abc"}'),
    ],
)
async def test_connect(start_sio: StartSio, connect: str, prefix: str, auth: str) -> None:
    sio = await start_sio(echo_server())
    ws = await open_websocket(sio.port)
    eio_sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.send(connect)
    reply = await ws.recv_text()
    assert reply.startswith(prefix)
    handshake = json.loads(reply[len(prefix) :])
    assert set(handshake) == {"sid"}
    # A Socket.IO sid of its own, not the Engine.IO one (§Connection to a namespace).
    assert isinstance(handshake["sid"], str) and handshake["sid"] != eio_sid
    event_prefix = "42" + prefix[2:]
    assert await ws.recv() == f'{event_prefix}["auth",{auth}]'
    await ws.close()


async def test_connect_over_polling(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    sid, _ = await open_polling(sio.port)
    assert (await post(sio.port, sid, '40{"a":1}')).status == 200
    connect, auth = await poll(sio.port, sid)
    assert connect.startswith('40{"sid":')
    assert auth == '42["auth",{"a":1}]'
    # Several packets in one POST, and the replies batched in one GET.
    await post(sio.port, sid, '42["message",1]', '421["message-with-ack",2]')
    replies = await poll(sio.port, sid)
    while len(replies) < 2:
        replies += await poll(sio.port, sid)
    assert sorted(replies) == sorted(['42["message-back",1]', "431[2]"])


async def test_unknown_namespace_is_refused(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("40/random")
    assert await ws.recv() == '44/random,{"message":"Invalid namespace"}'
    # Only that namespace: the session is still there for the others.
    await ws.send("40")
    assert (await ws.recv_text()).startswith('40{"sid":')
    await ws.close()


async def test_several_namespaces_on_one_session(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send("40/custom,")
    custom = json.loads((await ws.recv_text())[len("40/custom,") :])["sid"]
    assert await ws.recv() == '42/custom,["auth",{}]'
    await ws.send('42/custom,["message","c"]', '42["message","m"]')
    assert await ws.recv() == '42/custom,["message-back","c"]'
    assert await ws.recv() == '42["message-back","m"]'
    assert set(sio.server.of("/custom").sockets) == {custom}
    await ws.close()


async def test_invalid_handshake_closes_the_connection(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("4abc")
    assert await ws.closed() == ["1"]


async def test_no_connect_within_the_timeout_closes_the_connection(start_sio: StartSio) -> None:
    server = echo_server(connect_timeout=timeout(0.2))
    sio = await start_sio(server)
    # Opened first, so its timer would fire first: connecting in time cancels it.
    punctual = await connected(sio.port)
    idle = await open_websocket(sio.port)
    assert (await idle.recv_text()).startswith("0{")
    assert await idle.closed() == ["1"]
    await punctual.send('42["message",1]')
    assert await punctual.recv() == '42["message-back",1]'
    await punctual.close()


async def test_duplicate_connect_is_ignored(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send("40", '42["message","after"]')
    assert await ws.recv() == '42["message-back","after"]'
    assert len(sio.server.sockets) == 1
    await ws.close()


async def test_connect_handler_with_only_the_socket(start_sio: StartSio) -> None:
    server = realtime.Server()
    seen: asyncio.Queue[Socket] = asyncio.Queue()

    @server.on("connect")
    def connect(socket: Socket) -> None:
        seen.put_nowait(socket)

    sio = await start_sio(server)
    ws, sid = await sio_connect(sio.port, auth={"x": 1}, query="a=b")
    socket = await asyncio.wait_for(seen.get(), timeout(1))
    assert socket.sid == sid and socket.connected
    assert socket.handshake.auth == {"x": 1}
    assert socket.handshake.query["a"] == "b"
    assert socket.handshake.query["EIO"] == "4"
    assert "host" in socket.handshake.headers
    await ws.close()


async def test_connect_reply_is_written_before_the_connect_handler_runs(
    start_sio: StartSio,
) -> None:
    # As socket.io's server does: what the handler emits goes in a later
    # write, so a client reading one message at a time (the official
    # protocol test suite's) sees the CONNECT reply and the event apart.
    server = realtime.Server()
    unsent: asyncio.Queue[int] = asyncio.Queue()

    @server.on("connect")
    async def connect(socket: Socket) -> None:
        websocket = socket.session._ws
        assert isinstance(websocket, tether.Connection)
        unsent.put_nowait(websocket._out_size)  # queued in tether, not yet written
        await socket.emit("hello")

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    assert await asyncio.wait_for(unsent.get(), timeout(1)) == 0
    assert await ws.recv() == '42["hello"]'
    await ws.close()


async def test_connect_handler_can_refuse(start_sio: StartSio) -> None:
    server = realtime.Server()

    @server.on("connect")
    async def connect(socket: Socket, auth: dict[str, Any]) -> None:
        raise ConnectionRefused("not today")

    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("40")
    assert (await ws.recv_text()).startswith('40{"sid":')
    assert await ws.recv() == "41"
    assert not server.sockets
    await ws.close()


# -- §Disconnection from a namespace ------------------------------------------------------


async def test_disconnect_from_the_main_namespace(start_sio: StartSio) -> None:
    server = echo_server()
    reasons: asyncio.Queue[str] = asyncio.Queue()
    server.on("disconnect", lambda socket, reason: reasons.put_nowait(reason))
    sio = await start_sio(server)
    ws = await connected(sio.port)
    await ws.send("41")
    assert await asyncio.wait_for(reasons.get(), timeout(1)) == "client namespace disconnect"
    assert not server.sockets
    # Events for a namespace the client left are dropped; the session stays.
    await ws.send('42["message","ignored"]')
    await ws.nothing()
    await ws.send("40")
    assert (await ws.recv_text()).startswith('40{"sid":')
    await ws.close()


async def test_disconnect_from_a_custom_namespace(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send("40/custom")
    assert (await ws.recv_text()).startswith("40/custom,")
    await ws.recv()  # auth
    await ws.send("41/custom", '42["message","message to main namespace"]')
    assert await ws.recv() == '42["message-back","message to main namespace"]'
    assert not sio.server.of("/custom").sockets
    await ws.close()


# -- events and acknowledgements ----------------------------------------------------------


async def test_plain_event(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send('42["message",1,"2",{"3":[true]},null,1.5]')
    assert await ws.recv() == '42["message-back",1,"2",{"3":[true]},null,1.5]'
    await ws.close()


async def test_event_with_binary_attachments(start_sio: StartSio) -> None:
    server = echo_server()
    received: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    @server.on("inspect")
    def inspect(socket: Socket, *args: Any) -> None:
        received.put_nowait(args)

    sio = await start_sio(server)
    ws = await connected(sio.port)
    await ws.send(f'452-["message",{PH0},{PH1}]', b"\x01\x02\x03", b"\x04\x05\x06")
    assert await ws.recv_many(3) == [
        f'452-["message-back",{PH0},{PH1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    ]
    # Attachments anywhere in the arguments, handed to the handler as bytes.
    await ws.send(f'452-["inspect",{{"a":[{PH1}]}},{PH0}]', b"zero", b"one")
    assert await asyncio.wait_for(received.get(), timeout(1)) == ({"a": [b"one"]}, b"zero")
    await ws.close()


async def test_event_with_ack(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send('42456["message-with-ack",1,"2",{"3":[false]}]')
    assert await ws.recv() == '43456[1,"2",{"3":[false]}]'
    await ws.close()


async def test_event_with_binary_attachments_and_ack(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send(f'452-789["message-with-ack",{PH0},{PH1}]', b"\x01\x02\x03", b"\x04\x05\x06")
    assert await ws.recv_many(3) == [f"462-789[{PH0},{PH1}]", b"\x01\x02\x03", b"\x04\x05\x06"]
    await ws.close()


async def test_ack_values(start_sio: StartSio) -> None:
    server = realtime.Server()
    server.on("none", lambda socket: None)
    server.on("one", lambda socket: "x")
    server.on("list", lambda socket: [1, 2])
    server.on("tuple", lambda socket: (1, "a", None))

    @server.on("slow")
    async def slow(socket: Socket, value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('421["none"]', '422["one"]', '423["list"]', '424["tuple"]', '425["slow",21]')
    replies = await ws.recv_many(5)
    assert sorted(replies) == ["431[]", '432["x"]', "433[[1,2]]", '434[1,"a",null]', "435[42]"]
    # No ack asked for: nothing comes back.
    await ws.send('42["one"]')
    await ws.nothing()
    await ws.close()


async def test_ack_in_a_custom_namespace(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port, "/custom")
    await ws.send('42/custom,7["message-with-ack","hi"]')
    assert await ws.recv() == '43/custom,7["hi"]'
    await ws.close()


async def test_catch_all_handler_and_unknown_events(start_sio: StartSio) -> None:
    server = realtime.Server()
    custom = server.of("/custom")
    custom.on("*", lambda socket, event, *args: [event, *args])
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    # No handler at all: dropped, the session carries on.
    await ws.send('421["nobody"]')
    await ws.nothing()
    await ws.send("40/custom,", '42/custom,3["anything",1]')
    assert (await ws.recv_text()).startswith("40/custom,")
    assert await ws.recv() == '43/custom,3[["anything",1]]'
    await ws.close()


async def test_reserved_event_from_the_client_is_malformed(start_sio: StartSio) -> None:
    # As in the reference parser: a client cannot fire "disconnect" remotely.
    server = echo_server()
    reasons: asyncio.Queue[str] = asyncio.Queue()
    server.on("disconnect", lambda socket, reason: reasons.put_nowait(reason))
    sio = await start_sio(server)
    ws = await connected(sio.port)
    await ws.send('42["disconnect","fake"]')
    assert await ws.closed() == ["1"]
    assert await asyncio.wait_for(reasons.get(), timeout(1)) == "parse error"


async def test_a_failing_handler_does_not_end_the_session(start_sio: StartSio) -> None:
    server = echo_server()

    @server.on("boom")
    def boom(socket: Socket) -> None:
        raise RuntimeError("handler bug")

    sio = await start_sio(server)
    ws = await connected(sio.port)
    await ws.send('421["boom"]', '42["message","still"]')
    assert await ws.recv() == '42["message-back","still"]'
    await ws.close()


async def slow_to_connect(
    start_sio: StartSio, server: realtime.Server
) -> tuple[EioSocket, asyncio.Event]:
    """A WebSocket session to ``server``, whose middleware on ``/`` waits for the gate."""
    gate = asyncio.Event()

    @server.use
    async def slow(socket: Socket, auth: dict[str, Any]) -> None:
        await gate.wait()

    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    return ws, gate


async def test_events_before_connect_settles_are_kept_in_order(start_sio: StartSio) -> None:
    ws, gate = await slow_to_connect(start_sio, echo_server())
    await ws.send("40", '42["message",1]', '42["message",2]')
    await ws.nothing()
    gate.set()
    assert (await ws.recv_text()).startswith('40{"sid":')
    assert await ws.recv_many(3) == [
        '42["auth",{}]',
        '42["message-back",1]',
        '42["message-back",2]',
    ]
    await ws.close()


async def test_events_for_an_unjoined_namespace_are_dropped(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send('42/custom,["message","x"]', '42["message","y"]')
    assert await ws.recv() == '42["message-back","y"]'
    await ws.nothing()
    await ws.close()


# -- handler concurrency (RealtimeLimits.max_handler_tasks, max_pending_bytes) -------------


def gated_server(**options: Any) -> tuple[realtime.Server, asyncio.Event, list[int]]:
    """``work(n)`` waits for the gate, then acks ``n``; ``running`` lists the
    ``n`` of the handlers running at each start."""
    server = realtime.Server(**options)
    gate = asyncio.Event()
    running: list[int] = []
    active: set[int] = set()

    @server.on("work")
    async def work(socket: Socket, n: int, *padding: Any) -> int:
        active.add(n)
        running.append(len(active))
        await gate.wait()
        active.discard(n)
        return n

    return server, gate, running


async def test_handlers_run_at_most_max_handler_tasks_at_once_in_order(
    start_sio: StartSio,
) -> None:
    server, gate, running = gated_server(max_handler_tasks=2)
    sio = await start_sio(server)
    ws = await connected_plain(sio.port)
    await ws.send(*[f'42{n}["work",{n}]' for n in range(1, 7)])
    await eventually(lambda: len(running) == 2)
    await ws.nothing()  # the other four wait
    assert running == [1, 2]
    gate.set()
    assert await ws.recv_many(6) == [f"43{n}[{n}]" for n in range(1, 7)]
    assert max(running) == 2
    await ws.close()


async def test_running_handlers_hold_at_most_max_pending_bytes(start_sio: StartSio) -> None:
    server, gate, running = gated_server(max_pending_bytes=4096)
    sio = await start_sio(server)
    ws = await connected_plain(sio.port)
    # 1,524 characters + 256 each: two fit in 4,096, the third waits (and the
    # bytes waiting stay under the limit: no close).
    await ws.send(*[f'42{n}["work",{n},"{"x" * 1500}"]' for n in range(1, 4)])
    await eventually(lambda: len(running) == 2)
    await ws.nothing()
    gate.set()
    assert await ws.recv_many(3) == [f"43{n}[{n}]" for n in range(1, 4)]
    assert running == [1, 2, 1]
    await ws.close()


def test_max_handler_tasks_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_handler_tasks must be at least 1"):
        realtime.Server(max_handler_tasks=0)


async def connected_plain(port: int) -> EioSocket:
    ws, _ = await sio_connect(port)
    return ws


async def test_acks_are_not_queued_behind_waiting_events(start_sio: StartSio) -> None:
    # One handler slot, taken by a handler awaiting the client's ack, and an
    # event waiting behind it: the ack must still get through.
    server, answers = asking_server()
    server.limits = server.limits.replace(max_handler_tasks=1)
    server.on("later", lambda socket: "ran")
    sio = await start_sio(server)
    ws = await connected_plain(sio.port)
    await ws.send(f'42["ask",{timeout(2)}]', '421["later"]')
    ack_id = ack_id_of(await ws.recv_text())
    await ws.nothing()  # "later" waits for the slot
    await ws.send(f'43{ack_id}["yes"]')
    assert await asyncio.wait_for(answers.get(), timeout(1)) == "yes"
    assert await ws.recv() == '431["ran"]'
    await ws.close()


async def test_connect_handler_can_await_an_ack(start_sio: StartSio) -> None:
    server = realtime.Server()
    answers: asyncio.Queue[Any] = asyncio.Queue()

    @server.on("connect")
    async def connect(socket: Socket) -> None:
        answers.put_nowait(await socket.emit_with_ack("hello", timeout=timeout(2)))

    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("40")
    assert (await ws.recv_text()).startswith('40{"sid":')
    question = await ws.recv_text()
    # While the connect handler runs the namespace is still connecting; the
    # ack goes to the socket anyway (it used to wait behind the connection).
    await ws.send(f"43{ack_id_of(question)}[7]")
    assert await asyncio.wait_for(answers.get(), timeout(1)) == 7
    await ws.close()


async def test_pending_bytes_past_the_limit_close_the_session_1008(start_sio: StartSio) -> None:
    server, gate, _ = gated_server(max_handler_tasks=1, max_pending_bytes=4096)
    sio = await start_sio(server)
    ws = await connected_plain(sio.port)
    # One runs; each waiting one counts its 515 characters and 256 bytes.
    await ws.send(*[f'42["work",{n},"{"x" * 500}"]' for n in range(7)])
    await ws.closed()
    assert ws.connection.close_code == 1008
    assert ws.connection.close_reason == "policy violation"
    assert not server.engine.sessions
    gate.set()


async def test_pending_bytes_over_polling(start_sio: StartSio) -> None:
    server, gate, _ = gated_server(max_handler_tasks=1, max_pending_bytes=4096)
    closed: asyncio.Queue[str] = asyncio.Queue()
    server.on("disconnect", lambda socket, reason: closed.put_nowait(reason))
    sio = await start_sio(server)
    sid, _ = await open_polling(sio.port)
    assert (await post(sio.port, sid, "40")).status == 200
    await post(sio.port, sid, *[f'42["work",{n},"{"x" * 500}"]' for n in range(7)])
    # Not a recoverable reason: the client starts over.
    assert await asyncio.wait_for(closed.get(), timeout(1)) == "policy violation"
    assert sid not in server.engine.sessions
    gate.set()


async def test_packets_behind_a_pending_connect_count(start_sio: StartSio) -> None:
    ws, gate = await slow_to_connect(start_sio, realtime.Server(max_pending_bytes=4096))
    await ws.send("40", *[f'42["x","{"x" * 500}"]' for _ in range(6)])
    await ws.closed()
    assert ws.connection.close_code == 1008
    gate.set()


async def test_plain_handlers_need_no_task(start_sio: StartSio) -> None:
    server = echo_server()
    tasks: list[int] = []
    server.on("count", lambda socket: tasks.append(len(server.runner.tasks)) or len(tasks))
    sio = await start_sio(server)
    ws = await connected(sio.port)
    await ws.send(*[f'42{n}["count"]' for n in range(1, 101)])
    assert await ws.recv_many(100) == [f"43{n}[{n}]" for n in range(1, 101)]
    # Run as they came, with no task of their own (the connect handler's may linger).
    assert max(tasks) <= 1
    await ws.close()


async def test_handler_failures_are_logged_once_per_interval(
    start_sio: StartSio, caplog: pytest.LogCaptureFixture
) -> None:
    server = echo_server()

    @server.on("boom")
    async def boom(socket: Socket) -> None:
        raise RuntimeError("handler bug")

    server.on("*", lambda socket, event: 1 / 0)
    sio = await start_sio(server)
    ws = await connected(sio.port)
    events = [*['42["boom"]'] * 50, *[f'42["unknown-{n}"]' for n in range(50)]]
    await ws.send(*events, '42["message","done"]')
    assert await ws.recv() == '42["message-back","done"]'
    await ws.close()
    await eventually(lambda: not server.runner.tasks)
    failures = [r for r in caplog.records if r.exc_info]
    # One per handler ("boom", and "*" however many names the client made up).
    assert sorted(r.getMessage().split(" of ")[0] for r in failures) == [
        "handler '*'",
        "handler 'boom'",
    ]


# -- acknowledgements from the client ---------------------------------------------------


def asking_server() -> tuple[realtime.Server, asyncio.Queue[Any]]:
    """A server whose ``ask`` handler awaits the client's ack of ``question``."""
    server = realtime.Server()
    answers: asyncio.Queue[Any] = asyncio.Queue()

    @server.on("ask")
    async def ask(socket: Socket, wait: float, *args: Any) -> None:
        try:
            answers.put_nowait(await socket.emit_with_ack("question", *args, timeout=wait))
        except (AckTimeout, Disconnected) as exc:
            answers.put_nowait(exc)

    return server, answers


def ack_id_of(packet: str, prefix: str = "42") -> int:
    assert packet.startswith(prefix), packet
    return int(re.match(r"\d+", packet[len(prefix) :]).group())  # type: ignore[union-attr]


async def test_server_awaits_the_client_ack(start_sio: StartSio) -> None:
    server, answers = asking_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send(f'42["ask",{timeout(1)},1,"two"]')
    question = await ws.recv_text()
    ack_id = ack_id_of(question)
    assert question == f'42{ack_id}["question",1,"two"]'
    await ws.send(f'43{ack_id}["yes"]')
    assert await asyncio.wait_for(answers.get(), timeout(1)) == "yes"
    # Several values come back as a tuple; none as None.
    await ws.send(f'42["ask",{timeout(1)}]')
    ack_id = ack_id_of(await ws.recv_text())
    await ws.send(f"43{ack_id}[1,2]")
    assert await asyncio.wait_for(answers.get(), timeout(1)) == (1, 2)
    await ws.send(f'42["ask",{timeout(1)}]')
    ack_id = ack_id_of(await ws.recv_text())
    await ws.send(f"43{ack_id}[]")
    assert await asyncio.wait_for(answers.get(), timeout(1)) is None
    await ws.close()


async def test_server_ack_with_binary(start_sio: StartSio) -> None:
    server, answers = asking_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send(f'42["ask",{timeout(1)}]')
    ack_id = ack_id_of(await ws.recv_text())
    await ws.send(f'461-{ack_id}[{{"file":{PH0}}}]', b"\xff\x00")
    assert await asyncio.wait_for(answers.get(), timeout(1)) == {"file": b"\xff\x00"}
    await ws.close()


async def test_server_ack_timeout(start_sio: StartSio) -> None:
    server, answers = asking_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send(f'42["ask",{timeout(0.1)}]')
    ack_id = ack_id_of(await ws.recv_text())
    assert isinstance(await asyncio.wait_for(answers.get(), timeout(1)), AckTimeout)
    # A late ack is dropped quietly.
    await ws.send(f'43{ack_id}["late"]', '421["ask",1]')
    assert answers.empty()
    await ws.recv()
    await ws.close()


async def test_unknown_ack_id_is_ignored(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send('43999["who?"]', '42["message",1]')
    assert await ws.recv() == '42["message-back",1]'
    await ws.close()


async def test_server_emits_binary_attachments(start_sio: StartSio) -> None:
    server = realtime.Server()

    @server.on("send-files")
    async def send_files(socket: Socket) -> None:
        await socket.emit("files", b"\x01", {"nested": [b"\x02\x03"], "n": 1})

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('42["send-files"]')
    assert await ws.recv_many(3) == [
        f'452-["files",{PH0},{{"nested":[{PH1}],"n":1}}]',
        b"\x01",
        b"\x02\x03",
    ]
    await ws.close()


async def test_binary_over_polling(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    sid, _ = await open_polling(sio.port)
    await post(sio.port, sid, "40")
    assert len(await poll(sio.port, sid)) == 2  # CONNECT, auth
    # Attachments are base64 "b" packets inside the payload, both ways.
    await post(sio.port, sid, f'451-["message",{PH0}]', "bAQID")
    assert await poll(sio.port, sid) == [f'451-["message-back",{PH0}]', "bAQID"]


# -- malformed packets (§Packet encoding) --------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        "4abc",  # unknown packet type
        "42{}",  # an event that is not an array
        '42abc["message-with-ack",1]',  # invalid ack id
        '42[1,"x"]',  # the event name must be a string
        "4",  # empty Socket.IO packet
        "44",  # a client may not send CONNECT_ERROR
        '451-["message",{"_placeholder":true,"num":5}]',  # placeholder out of range
    ],
)
async def test_malformed_packet_closes_only_that_session(start_sio: StartSio, packet: str) -> None:
    sio = await start_sio(echo_server())
    other = await connected(sio.port)
    ws = await connected(sio.port)
    await ws.send(packet)
    if packet.startswith("451-"):
        await ws.send(b"\x00")
    assert await ws.closed() == ["1"]
    await other.send('42["message","fine"]')
    assert await other.recv() == '42["message-back","fine"]'
    assert len(sio.server.sockets) == 1
    await other.close()


async def test_binary_message_without_a_packet_closes_the_session(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    ws = await connected(sio.port)
    await ws.send(b"\x01\x02")
    assert await ws.closed() == ["1"]


async def test_too_many_attachments_close_the_session(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server(max_attachments=2))
    ws = await connected(sio.port)
    await ws.send('453-["message",1]')
    assert await ws.closed() == ["1"]


# -- dynamic namespaces -------------------------------------------------------------------


async def test_dynamic_namespaces_by_pattern(start_sio: StartSio) -> None:
    server = realtime.Server()
    workspaces = server.of(re.compile(r"/workspace-\d+"))
    joined: asyncio.Queue[str] = asyncio.Queue()

    @workspaces.on("connect")
    def connect(socket: Socket) -> None:
        joined.put_nowait(socket.nsp)

    workspaces.on("where", lambda socket: socket.nsp)
    sio = await start_sio(server)
    one, _ = await sio_connect(sio.port, "/workspace-1")
    two, _ = await sio_connect(sio.port, "/workspace-22")
    assert {await asyncio.wait_for(joined.get(), timeout(1)) for _ in range(2)} == {
        "/workspace-1",
        "/workspace-22",
    }
    # The children share the parent's handlers.
    await one.send('42/workspace-1,1["where"]')
    assert await one.recv() == '43/workspace-1,1["/workspace-1"]'
    await two.send('42/workspace-22,1["where"]')
    assert await two.recv() == '43/workspace-22,1["/workspace-22"]'
    # An emit on the parent reaches every child, each in its own namespace.
    await workspaces.emit("hello")
    assert await one.recv() == '42/workspace-1,["hello"]'
    assert await two.recv() == '42/workspace-22,["hello"]'
    assert len(await workspaces.fetch_sockets()) == 2
    # The pattern must match the whole name.
    await one.send("40/workspace-x,")
    assert await one.recv() == '44/workspace-x,{"message":"Invalid namespace"}'
    await one.send("40/workspace-1/sub,")
    assert await one.recv() == '44/workspace-1/sub,{"message":"Invalid namespace"}'
    await one.close()
    await two.close()


async def test_dynamic_namespaces_by_predicate(start_sio: StartSio) -> None:
    server = realtime.Server()

    async def allowed(name: str, auth: dict[str, Any]) -> bool:
        return name.startswith("/room-") and auth.get("key") == "k"

    rooms = server.of(allowed)
    rooms.on("echo", lambda socket, value: value)

    @rooms.use
    def tag(socket: Socket, auth: dict[str, Any]) -> None:
        socket.data["tag"] = socket.nsp

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port, "/room-a", {"key": "k"})
    await ws.send('42/room-a,5["echo","v"]')
    assert await ws.recv() == '43/room-a,5["v"]'
    (info,) = await server.of("/room-a").fetch_sockets()
    assert info.data == {"tag": "/room-a"}
    await ws.send('40/room-b,{"key":"wrong"}')
    assert await ws.recv() == '44/room-b,{"message":"Invalid namespace"}'
    await ws.send('40/other,{"key":"k"}')
    assert await ws.recv() == '44/other,{"message":"Invalid namespace"}'
    await ws.close()


async def test_static_namespace_wins_over_a_pattern(start_sio: StartSio) -> None:
    server = realtime.Server()
    server.of(re.compile(r"/.*")).on("who", lambda socket: "dynamic")
    server.of("/fixed").on("who", lambda socket: "static")
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port, "/fixed")
    await ws.send('42/fixed,1["who"]')
    assert await ws.recv() == '43/fixed,1["static"]'
    await ws.close()


# -- middleware ----------------------------------------------------------------------------


async def test_middleware_refuses_with_data(start_sio: StartSio) -> None:
    server = realtime.Server()

    @server.use
    async def require_token(socket: Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") != "secret":
            raise ConnectionRefused("access denied", {"reason": "bad token", "retry": False})
        socket.data["user"] = "ann"

    server.on("whoami", lambda socket: socket.data["user"])
    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send('40{"token":"nope"}')
    assert await ws.recv() == (
        '44{"message":"access denied","data":{"reason":"bad token","retry":false}}'
    )
    assert not server.sockets
    # The refusal is per namespace: the session may try again.
    await ws.send('40{"token":"secret"}', '421["whoami"]')
    assert (await ws.recv_text()).startswith('40{"sid":')
    assert await ws.recv() == '431["ann"]'
    await ws.close()


async def test_middleware_without_data_and_in_order(start_sio: StartSio) -> None:
    server = realtime.Server()
    admin = server.of("/admin")
    order: list[str] = []
    server.use(lambda socket, auth: order.append("main"))
    admin.use(lambda socket, auth: order.append("first"))

    @admin.use
    def second(socket: Socket, auth: dict[str, Any]) -> None:
        order.append("second")
        raise ConnectionRefused("admins only")

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send("40/admin,")
    assert await ws.recv() == '44/admin,{"message":"admins only"}'
    assert order == ["main", "first", "second"]
    await ws.close()


async def test_middleware_failure_is_an_internal_error(start_sio: StartSio) -> None:
    server = realtime.Server()

    @server.use
    def broken(socket: Socket, auth: dict[str, Any]) -> None:
        raise KeyError("bug")

    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("40")
    assert await ws.recv() == '44{"message":"Internal server error"}'
    await ws.close()


# -- the default client path: polling, then upgrade ----------------------------------


async def test_socketio_session_upgraded_to_websocket(start_sio: StartSio) -> None:
    sio = await start_sio(echo_server())
    sid, handshake = await open_polling(sio.port)
    assert handshake["upgrades"] == ["websocket"]
    await post(sio.port, sid, "40")
    assert len(await poll(sio.port, sid)) == 2  # CONNECT, auth
    ws = await open_websocket(sio.port, sid)
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    assert await poll(sio.port, sid) == ["6"]
    await ws.send("5", '42["message","upgraded"]')
    assert await ws.recv() == '42["message-back","upgraded"]'
    (socket,) = sio.server.sockets.values()
    await socket.send("via", "send")
    assert await ws.recv() == '42["message","via","send"]'
    await ws.close()


# -- emitting to a socket that went away --------------------------------------------------


async def test_emit_to_a_disconnected_socket(start_sio: StartSio) -> None:
    server = realtime.Server()
    sio = await start_sio(server)
    ws, sid = await sio_connect(sio.port)
    socket = server.sockets[sid]
    await ws.send("41")
    await eventually(lambda: not socket.connected)
    with pytest.raises(Disconnected):
        await socket.emit("late")
    with pytest.raises(Disconnected):
        await socket.emit_with_ack("late")
    await ws.close()


async def test_waiting_for_an_ack_when_the_client_leaves(start_sio: StartSio) -> None:
    server, answers = asking_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send(f'42["ask",{timeout(5)}]')
    await ws.recv()
    await ws.close()
    answer = await asyncio.wait_for(answers.get(), timeout(1))
    assert isinstance(answer, Disconnected)


async def test_socket_timeout_emit_with_ack(start_sio: StartSio) -> None:
    server = realtime.Server()
    results: asyncio.Queue[Any] = asyncio.Queue()

    @server.on("go")
    async def go(socket: Socket) -> None:
        try:
            await socket.timeout(timeout(0.1)).emit_with_ack("q")
        except AckTimeout as exc:
            results.put_nowait(exc)

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('42["go"]')
    assert (await ws.recv_text()).endswith('["q"]')
    assert isinstance(await asyncio.wait_for(results.get(), timeout(1)), AckTimeout)
    await ws.close()


def test_engine_options_and_limits_are_keyword_options() -> None:
    from tether.limits import DEFAULT_REALTIME_LIMITS
    from tether.realtime.server.engine import DEFAULT_ENGINE_OPTIONS, EngineOptions

    # Defaults come from EngineOptions and RealtimeLimits, written once there.
    assert realtime.Server().engine.options == DEFAULT_ENGINE_OPTIONS
    assert realtime.Server().limits == DEFAULT_REALTIME_LIMITS
    server = realtime.Server(
        ping_interval=5,
        transports=iter(["websocket"]),
        cors_allowed_origins={"https://a.example"},
        max_payload=1000,
        engine_options=EngineOptions(ping_timeout=3, allow_upgrades=False),
    )
    assert server.engine.options == EngineOptions(
        ping_interval=5,
        ping_timeout=3,
        transports=("websocket",),
        allow_upgrades=False,
        cors_allowed_origins=["https://a.example"],
    )
    assert server.limits.max_payload == 1000
    with pytest.raises(TypeError, match="unknown realtime limit"):
        realtime.Server(**{"ping_intervall": 5})  # type: ignore[arg-type]
