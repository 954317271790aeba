"""How a session's events reach their handlers
(tether.realtime.server.connection): in the order they came, one handler
started per event whether it is a plain function, a coroutine that finishes at
once or one that waits; failures logged; what a disconnect and a shutdown do
to handlers running or waiting. Against a real server on 127.0.0.1 port 0 and
a WebSocket client driven packet by packet. The bound on handlers running at
once (max_handler_tasks, max_pending_bytes) is in test_realtime_server.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from helpers import timeout
from realtime.conftest import StartSio
from realtime.sio_helpers import sio_connect
from tether import realtime
from tether.realtime import Disconnected, Socket
from tether.realtime.server.runner import EAGER_START


def mixed_server(**options: Any) -> tuple[realtime.Server, asyncio.Event, list[Any]]:
    """Handlers of every kind, each recording ``(kind, n)`` when it starts
    and whether it runs in a task of the server's runner."""
    server = realtime.Server(**options)
    gate = asyncio.Event()
    started: list[Any] = []

    @server.on("slow")
    async def slow(socket: Socket, n: int) -> int:
        started.append(("slow", n))
        await gate.wait()
        return n

    @server.on("quick")
    async def quick(socket: Socket, n: int) -> int:
        started.append(("quick", n))
        await socket.emit("quick", n)  # returns without waiting
        return n

    @server.on("plain")
    def plain(socket: Socket, n: int) -> int:
        started.append(("plain", n))
        return n

    @server.on("in_task")
    async def in_task(socket: Socket, wait: bool) -> list[bool]:
        seen = [asyncio.current_task() in server.runner.tasks]
        if wait:
            await asyncio.sleep(0)
            seen.append(asyncio.current_task() in server.runner.tasks)
        return seen

    return server, gate, started


async def test_events_start_in_the_order_they_came(start_sio: StartSio) -> None:
    server, gate, started = mixed_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send(
        '421["slow",1]',
        '422["quick",2]',
        '423["plain",3]',
        '424["slow",4]',
        '425["quick",5]',
        '426["plain",6]',
    )
    # The ones that do not wait answer at once, in order; the others once
    # the gate opens.
    assert await ws.recv_many(6) == [
        '42["quick",2]',
        "432[2]",
        "433[3]",
        '42["quick",5]',
        "435[5]",
        "436[6]",
    ]
    assert started == [
        ("slow", 1),
        ("quick", 2),
        ("plain", 3),
        ("slow", 4),
        ("quick", 5),
        ("plain", 6),
    ]
    gate.set()
    assert sorted(await ws.recv_many(2)) == ["431[1]", "434[4]"]
    await ws.close()


async def test_a_task_only_for_a_handler_that_waits(start_sio: StartSio) -> None:
    server, _, _ = mixed_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('421["in_task",false]', '422["in_task",true]')
    # A coroutine that finishes at once has no task of the runner; one that
    # waits goes on in one. Before 3.12 (no eager tasks) each has a task.
    expected = (
        ["431[[false]]", "432[[false,true]]"]
        if EAGER_START
        else ["431[[true]]", "432[[true,true]]"]
    )
    assert await ws.recv_many(2) == expected
    await ws.close()


async def test_failures_are_logged_and_the_session_goes_on(
    start_sio: StartSio, caplog: pytest.LogCaptureFixture
) -> None:
    server = realtime.Server()

    @server.on("fail_now")
    async def fail_now(socket: Socket) -> None:
        raise RuntimeError("failed at once")

    @server.on("fail_later")
    async def fail_later(socket: Socket) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("failed after waiting")

    @server.on("fail_plain")
    def fail_plain(socket: Socket) -> None:
        raise RuntimeError("failed plain")

    server.on("ok", lambda socket: "ok")
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    with caplog.at_level(logging.ERROR, "tether.realtime"):
        # fail_later without an ack id: its task runs the handler's own
        # coroutine, and the task's done callback logs what it raised.
        await ws.send('421["fail_now"]', '42["fail_later"]', '423["fail_plain"]', '424["ok"]')
        # No ack for the handlers that failed; the next event is handled.
        assert await ws.recv() == '434["ok"]'
        await ws.nothing()
    for name, text in [
        ("fail_now", "failed at once"),
        ("fail_later", "failed after waiting"),
        ("fail_plain", "failed plain"),
    ]:
        assert f"handler {name!r} of / failed" in caplog.text
        assert f"RuntimeError: {text}" in caplog.text
    await ws.close()


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout is 3.11+")
async def test_a_timeout_in_a_handler_cancels_that_handler_only(start_sio: StartSio) -> None:
    server = realtime.Server()

    @server.on("bounded")
    async def bounded(socket: Socket) -> str:
        try:
            async with asyncio.timeout(0):  # type: ignore[attr-defined]
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not timed out"

    server.on("ok", lambda socket: "ok")
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('421["bounded"]')
    assert await ws.recv() == '431["timed out"]'
    # The session's reading went on: the timeout was the handler's.
    await ws.send('422["ok"]', '423["bounded"]')
    assert await ws.recv_many(2) == ['432["ok"]', '433["timed out"]']
    await ws.close()


async def test_a_disconnect_fails_awaited_acks_and_drops_waiting_events(
    start_sio: StartSio,
) -> None:
    server = realtime.Server(max_handler_tasks=1)
    outcomes: asyncio.Queue[Any] = asyncio.Queue()
    ran: list[str] = []

    @server.on("ask")
    async def ask(socket: Socket) -> None:
        try:
            await socket.emit_with_ack("question", timeout=timeout(10))
        except Disconnected as exc:
            outcomes.put_nowait(exc)

    @server.on("later")
    async def later(socket: Socket) -> None:
        ran.append("later")

    server.on("disconnect", lambda socket, reason: outcomes.put_nowait(reason))
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('42["ask"]', '42["later"]')
    assert (await ws.recv_text()).endswith('["question"]')
    await ws.nothing()  # "later" waits for the one handler slot
    await ws.close()
    got = [await asyncio.wait_for(outcomes.get(), timeout(2)) for _ in range(2)]
    assert "transport close" in got
    assert any(isinstance(outcome, Disconnected) for outcome in got)
    assert ran == []  # dropped with the session, never started


async def test_shutdown_cancels_a_handler_still_waiting(start_sio: StartSio) -> None:
    server = realtime.Server()
    waiting = asyncio.Event()
    ends: list[str] = []

    @server.on("forever")
    async def forever(socket: Socket) -> None:
        waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ends.append("cancelled")
            raise

    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('42["forever"]')
    await asyncio.wait_for(waiting.wait(), timeout(1))
    await asyncio.wait_for(server.shutdown(), timeout(3))
    assert ends == ["cancelled"]
    assert not server.runner.tasks
    await ws.close()
