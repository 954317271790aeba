"""The Engine.IO client session (tether.realtime.client.engineio): Target, and
EngineSession against a real Engine.IO server on 127.0.0.1 port 0 (the
``start_engine`` fixture: sessions that echo every message): the handshake
over either transport, the upgrade from polling to websocket, heartbeats, and
closing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import pytest

from helpers import timeout
from realtime.conftest import EchoEngine, StartEngine
from tether.realtime.client.engineio import EngineSession, Target

T = TypeVar("T")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


class Recorder:
    """What a session hands its owner: the messages, then the one close."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closes: list[tuple[str, BaseException | None]] = []
        self.closed = asyncio.Event()

    def on_message(self, data: str | bytes) -> None:
        self.messages.put_nowait(data)

    def on_close(self, session: EngineSession, reason: str, exc: BaseException | None) -> None:
        self.closes.append((reason, exc))
        self.closed.set()


async def open_session(
    engine: EchoEngine, transports: Sequence[str], recorder: Recorder
) -> EngineSession:
    target = Target.from_url(f"http://127.0.0.1:{engine.port}", "/engine.io/")
    return await within(
        EngineSession.open(
            target,
            transports,
            on_message=recorder.on_message,
            on_close=recorder.on_close,
            max_payload=1_000_000,
            logger=logging.getLogger("test_engineio_client"),
        )
    )


async def echo(session: EngineSession, recorder: Recorder, data: str | bytes) -> None:
    session.send(data)
    assert await within(recorder.messages.get()) == data


def test_target_from_url() -> None:
    target = Target.from_url("https://example.com/ignored?token=a%20b", "socket.io")
    assert (target.secure, target.host, target.port) == (True, "example.com", 443)
    assert target.resource("polling", "abc") == (
        "/socket.io/?token=a+b&EIO=4&transport=polling&sid=abc"
    )
    assert Target.from_url("ws://[::1]:81", "/x/").websocket_url() == (
        "ws://[::1]:81/x/?EIO=4&transport=websocket"
    )
    with pytest.raises(ValueError):
        Target.from_url("ftp://example.com", "/socket.io")


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_handshake_echo_and_close(start_engine: StartEngine, transport: str) -> None:
    engine = await start_engine()
    recorder = Recorder()
    session = await open_session(engine, [transport], recorder)
    assert session.transport.name == transport
    assert session.handshake.sid in engine.engine.sessions
    await echo(session, recorder, "héllo ✓")
    await echo(session, recorder, b"\x00\xff")
    await within(session.close(timeout(1)))
    assert session.closed
    assert recorder.closes == [("forced close", None)]
    # The server saw the client close the session: a close packet over polling;
    # over websocket the client just closes the WebSocket, as the reference
    # client does.
    expected = {"polling": "forced close", "websocket": "transport close"}[transport]
    assert await engine.closed(session.handshake.sid) == expected


async def test_upgrade_from_polling_keeps_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    recorder = Recorder()
    session = await open_session(engine, ["polling", "websocket"], recorder)
    sid = session.handshake.sid
    assert session.transport.name == "polling"
    await echo(session, recorder, "before")
    while session.transport.name != "websocket":  # §Upgrade: probe, then upgrade
        await asyncio.sleep(timeout(0.05))
    await echo(session, recorder, "after")
    assert session.handshake.sid == sid and not recorder.closes
    await within(session.close(timeout(1)))
    assert await engine.closed(sid) == "transport close"  # the WebSocket closed


async def test_no_upgrade_when_only_polling_is_listed(start_engine: StartEngine) -> None:
    engine = await start_engine()
    recorder = Recorder()
    session = await open_session(engine, ["polling"], recorder)
    await echo(session, recorder, "one")
    await asyncio.sleep(timeout(0.3))
    assert session.transport.name == "polling"
    await within(session.close(timeout(1)))


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_pings_are_answered(start_engine: StartEngine, transport: str) -> None:
    # §Heartbeat: the server pings every 50 ms and waits 100 ms for the pong.
    engine = await start_engine(ping_interval=0.05, ping_timeout=0.1)
    recorder = Recorder()
    session = await open_session(engine, [transport], recorder)
    await asyncio.sleep(timeout(0.5))  # many heartbeats
    assert not session.closed and not recorder.closes
    await echo(session, recorder, "still here")
    await within(session.close(timeout(1)))


async def test_server_closing_the_session_closes_ours(start_engine: StartEngine) -> None:
    engine = await start_engine()
    recorder = Recorder()
    session = await open_session(engine, ["websocket"], recorder)
    engine.engine.close_all()
    await within(recorder.closed.wait())
    assert session.closed
    assert [reason for reason, _ in recorder.closes] == ["transport close"]
    session.send("dropped")  # queued nowhere once closed
