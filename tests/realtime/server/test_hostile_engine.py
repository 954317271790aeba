"""Hostile clients against the Engine.IO sessions of a realtime server (issue 12).

Each test serves the README's chat (:func:`chat_server`, recovery on) with a
well-behaved WebSocket client alongside (:func:`bystander`), runs one attack
for a bounded time, then checks three things: the attacker got the documented
outcome (a close code, an HTTP status, the session gone), the process grew
less than a stated bound (:class:`MemoryWatch`; the attacker's own client runs
in this process too), and the bystander lost no ack and never waited longer
than the stated latency.

What the server does (docs/security.md):

* a long-polling client that never polls: its queue is bounded by
  ``max_outgoing_bytes`` (encoded), past it the session is closed ("slow
  client") and its next request gets 400 "Session ID unknown";
* a WebSocket client that never reads: the server stops reading it while its
  write buffer is above ``write_high_water``, and closes it (1008) past
  ``max_outgoing_bytes``;
* one POST of tens of thousands of packets: dispatched in batches, yielding to
  the event loop between them;
* ``max_events_per_second``: past it the session is closed, over either
  transport (WebSocket close 1008; polling: the next request gets 400);
* Origin: by default only the server's own origin (or no Origin at all) gets
  in, over polling and WebSocket alike; ``"*"`` never allows credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest

import tether
from helpers import timeout
from realtime.conftest import StartEngine
from realtime.hostile_helpers import (
    MemoryWatch,
    MiB,
    bystander,
    chat_server,
    measured,
)
from realtime.sio_helpers import (
    RECORD_SEP,
    EioSocket,
    eio_url,
    eventually,
    http_request,
    open_polling,
    open_websocket,
    post,
    running,
    sio_connect,
)
from tether import realtime

#: Bound on the bystander's worst ack latency, in timeout units.
LATENCY = 0.5


async def until(deadline: float, attack: asyncio.Task[None]) -> None:
    """Let ``attack`` run until ``deadline`` (loop time) or its end, then stop it."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(attack), deadline - time.monotonic())
    attack.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attack


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """The longest the event loop went without running a 10 ms timer on time
    (``[worst]``, in seconds): how long everyone was stalled. The bystander
    shares this loop, so a stall also stops it sending: an ack in flight
    across the stall is not guaranteed, this measure is."""
    worst = [0.0]

    async def sample() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            worst[0] = max(worst[0], time.monotonic() - started - 0.01)

    task = asyncio.get_running_loop().create_task(sample())
    try:
        yield worst
    finally:
        task.cancel()


async def polling_connect(port: int) -> str:
    """A long-polling session connected to ``/``: its sid (the CONNECT answer stays queued)."""
    sid, _ = await open_polling(port)
    assert (await post(port, sid, "40")).status == 200
    return sid


async def unknown_sid(port: int, sid: str) -> None:
    """The session is gone: a GET on it gets Engine.IO's 400 "Session ID unknown"."""
    response = await http_request(port, "GET", eio_url(sid))
    assert response.status == 400, response
    assert response.json() == {"code": 1, "message": "Session ID unknown"}


# -- slow clients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("echo", "count", "limits"),
    [
        # Each POST asks for 100 acks of 5 KB: 500 KB more to queue per request.
        ('421["echo","' + "x" * 5000 + '"]', 100, {}),
        # Or for 5,000 acks of 5 bytes ("431[]"), each counted with what Python
        # holds per packet (about 120 bytes in all): 2,200 of them pass 256 KiB,
        # where their text alone would take 29,000 (seconds of dispatch).
        ('421["echo"]', 5000, {"max_outgoing_bytes": 256 * 1024}),
    ],
    ids=["large acks", "tiny acks"],
)
async def test_polling_client_that_never_polls_is_closed(
    echo: str, count: int, limits: dict[str, int]
) -> None:
    async with running(chat_server(**limits)) as rt, bystander(rt.port) as watcher:
        sid = await polling_connect(rt.port)
        refused: list[int] = []

        async def attack() -> None:
            while True:
                response = await post(rt.port, sid, *[echo] * count)
                if response.status != 200:
                    refused.append(response.status)
                    return

        with MemoryWatch() as memory:
            await until(time.monotonic() + timeout(2), asyncio.create_task(attack()))
        # The session was closed as a slow client: its queue went with it.
        assert refused == [400]
        assert sid not in rt.server.engine.sessions
        await unknown_sid(rt.port, sid)
        assert memory.growth() < 24 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_polling_client_in_a_busy_room_is_closed() -> None:
    # Broadcasts (shared encoded packets) count against the polling queue too.
    server = chat_server(max_outgoing_bytes=64 * 1024)
    async with running(server) as rt, bystander(rt.port) as watcher:
        sid = await polling_connect(rt.port)
        assert (await post(rt.port, sid, '42["join","busy"]')).status == 200
        speaker, _ = await sio_connect(rt.port)
        await speaker.send('420["join","busy"]')
        with MemoryWatch() as memory:
            for _ in range(200):  # 200 broadcasts of ~560 bytes: past 64 KiB
                await speaker.send('42["say","' + "x" * 500 + '"]')
            await eventually(lambda: sid not in rt.server.engine.sessions)
        await speaker.close()
        await unknown_sid(rt.port, sid)
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_broadcasts_to_a_busy_websocket_are_queued_not_skipped() -> None:
    # Small socket buffers on both ends, so that what the client does not read
    # stays in the server's write buffer, above write_high_water (64 KiB) and
    # under max_outgoing_bytes: a non-volatile broadcast must wait there, not
    # be skipped as tether.broadcast skips a slow connection.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    server = chat_server()
    async with realtime.serve(server, sock=listener) as http:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", http.port))
        url = eio_url(transport="websocket", scheme="ws", port=http.port)
        ws = EioSocket(await tether.connect(url, sock=client, max_queue=1, compression=None))
        assert (await ws.recv_text()).startswith("0{")
        await ws.send("40", '420["join","room"]')
        assert (await ws.recv_text()).startswith("40")
        assert await ws.recv_text() == '430["room"]'
        sid = next(iter(server.engine.sessions))
        session = server.engine.sessions[sid]
        text = "x" * 1000
        for i in range(200):  # 200 KB, not read meanwhile
            await server.to("room").emit("n", i, text)
        websocket = session.websocket
        assert websocket is not None
        assert websocket.write_buffer_size() > websocket.limits.write_high_water
        # Recovery is on: each event also carries its offset, last.
        received = [json.loads((await ws.recv_text())[2:])[:3] for _ in range(200)]
        assert received == [["n", i, text] for i in range(200)]
        assert not session.closed
        await ws.close()


async def ack_flood(ws: EioSocket, size: int) -> None:
    """Connect to ``/``, then ask for acks of ``size`` bytes as fast as the
    server takes them, never reading an answer."""
    assert (await ws.recv_text()).startswith("0{")
    await ws.send("40")
    assert (await ws.recv_text()).startswith("40")
    payload = "x" * size
    n = 0
    while True:
        n += 1
        await ws.connection.send(f'42{n}["echo","{payload}"]')
        await asyncio.sleep(0)  # the attacker's pace: let the server run


async def test_websocket_client_that_never_reads_is_paused() -> None:
    # The server stops reading the attacker while its write buffer is above
    # write_high_water: the flood stalls in the attacker's socket buffers, and
    # its missing pongs end the session.
    server = chat_server(ping_interval=1.5, ping_timeout=0.5)
    async with running(server) as rt, bystander(rt.port) as watcher:
        ws = await open_websocket(rt.port, max_queue=1, compression=None)
        with MemoryWatch() as memory:
            await until(time.monotonic() + timeout(2), asyncio.create_task(ack_flood(ws, 25_000)))
        await ws.closed(wait=5)  # the pong it never sent (behind its flood)
        assert len(rt.server.engine.sessions) == 1  # the bystander's
        assert memory.growth() < 10 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_websocket_client_over_max_outgoing_bytes_is_closed() -> None:
    # Each ack (100 KB) is more than max_outgoing_bytes: once the attacker's
    # socket buffers are full, the first ack that stays queued closes it.
    server = chat_server(max_outgoing_bytes=96 * 1024)
    async with running(server) as rt, bystander(rt.port) as watcher:
        ws = await open_websocket(rt.port, max_queue=1, compression=None)
        with MemoryWatch() as memory:
            await until(time.monotonic() + timeout(2), asyncio.create_task(ack_flood(ws, 100_000)))
        assert len(rt.server.engine.sessions) == 1  # the bystander's
        seen = await ws.closed(wait=5)
        assert ws.connection.close_code == 1008
        assert ws.connection.close_reason == "slow client"
        assert seen[-1] == "1"  # Engine.IO's close packet, behind the backlog
        assert memory.growth() < 16 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


# -- a POST of many packets -------------------------------------------------------------


async def test_post_of_many_packets_does_not_stall_others() -> None:
    async with running(chat_server()) as rt, bystander(rt.port) as watcher:
        sid = await polling_connect(rt.port)
        body = RECORD_SEP.join(['42["say","hi"]'] * 45_000)
        async with loop_lag() as lag:
            with MemoryWatch() as memory:
                response = await http_request(rt.port, "POST", eio_url(sid), body, wait=10)
        assert response.status == 200
        assert response.text == "ok"
        assert lag[0] < timeout(LATENCY), f"the loop stalled {lag[0]:.3f} s"
        print(f"\n  worst loop stall {lag[0] * 1000:.0f} ms", end="")
        assert memory.growth() < 64 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_post_packets_keep_their_order(start_engine: StartEngine) -> None:
    engine = await start_engine()
    path = "/engine.io/"
    sid, _ = await open_polling(engine.port, path=path)
    count = 5000  # many batches
    body = RECORD_SEP.join(f"4{i}" for i in range(count))
    response = await http_request(engine.port, "POST", eio_url(sid, path=path), body)
    assert response.status == 200
    echoed: list[str] = []
    while len(echoed) < count:
        reply = await http_request(engine.port, "GET", eio_url(sid, path=path))
        echoed += [p for p in reply.text.split(RECORD_SEP) if p.startswith("4")]
    assert echoed == [f"4{i}" for i in range(count)]


# -- event rate ---------------------------------------------------------------------------


async def test_event_rate_limit_closes_a_websocket_session() -> None:
    async with running(chat_server(max_events_per_second=20)) as rt, bystander(rt.port) as watcher:
        ws = await open_websocket(rt.port)
        assert (await ws.recv_text()).startswith("0{")
        await ws.send("40")
        with MemoryWatch() as memory:
            with contextlib.suppress(tether.ConnectionClosed):
                for _ in range(200):
                    await ws.send('42["say","hi"]')
            await ws.closed()
        assert ws.connection.close_code == 1008
        assert ws.connection.close_reason == "policy violation"
        assert memory.growth() < 8 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_event_rate_limit_closes_a_polling_session() -> None:
    async with running(chat_server(max_events_per_second=20)) as rt, bystander(rt.port) as watcher:
        sid = await polling_connect(rt.port)
        with MemoryWatch() as memory:
            await post(rt.port, sid, *['42["say","hi"]'] * 200)
        assert sid not in rt.server.engine.sessions
        await unknown_sid(rt.port, sid)
        assert memory.growth() < 8 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


async def test_event_rate_within_the_limit_is_served() -> None:
    async with running(chat_server(max_events_per_second=50)) as rt:
        ws = await open_websocket(rt.port)
        assert (await ws.recv_text()).startswith("0{")
        await ws.send("40")
        assert (await ws.recv_text()).startswith("40")
        for i in range(30):  # within the burst of one second's worth
            await ws.send(f'42{i}["echo",{i}]')
        assert [await ws.recv_text() for _ in range(30)] == [f"43{i}[{i}]" for i in range(30)]
        await ws.close()


# -- Origin and CORS ----------------------------------------------------------------------

EVIL = "https://evil.example"


async def test_cross_origin_refused_by_default() -> None:
    async with running(chat_server()) as rt, bystander(rt.port) as watcher:
        with MemoryWatch() as memory:
            with pytest.raises(tether.InvalidStatus) as caught:
                await open_websocket(rt.port, origin=EVIL)
            assert caught.value.response.status == 403
            response = await http_request(rt.port, "GET", eio_url(), headers=[("Origin", EVIL)])
            assert response.status == 403
            assert response.json() == {"code": 4, "message": "Forbidden"}
            assert "access-control-allow-origin" not in response.headers
        assert memory.growth() < 8 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)
        # The server's own origin, and clients sending none, get in.
        own = f"http://127.0.0.1:{rt.port}"
        ws = await open_websocket(rt.port, origin=own)
        assert (await ws.recv_text()).startswith("0{")
        await ws.close()
        response = await http_request(rt.port, "GET", eio_url(), headers=[("Origin", own)])
        assert response.status == 200
        assert (await http_request(rt.port, "GET", eio_url())).status == 200


async def test_same_origin_behind_a_tls_proxy() -> None:
    # The proxy terminates TLS: the page's origin is https://, the request
    # reaches tether over plain HTTP with X-Forwarded-Proto (and maybe Host
    # rewritten, the public one in X-Forwarded-Host).
    async with running(chat_server()) as rt:
        public = [
            ("Origin", "https://chat.example"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "chat.example"),
        ]
        assert (await http_request(rt.port, "GET", eio_url(), headers=public)).status == 200
        proto_only = [("Origin", f"https://127.0.0.1:{rt.port}"), ("X-Forwarded-Proto", "https")]
        assert (await http_request(rt.port, "GET", eio_url(), headers=proto_only)).status == 200
        # Another site is still refused.
        other = [("Origin", EVIL), ("X-Forwarded-Proto", "https")]
        assert (await http_request(rt.port, "GET", eio_url(), headers=other)).status == 403


async def test_any_origin_never_allows_credentials() -> None:
    async with running(chat_server(cors_allowed_origins="*")) as rt, bystander(rt.port) as watcher:
        with MemoryWatch() as memory:
            response = await http_request(rt.port, "GET", eio_url(), headers=[("Origin", EVIL)])
            ws = await open_websocket(rt.port, origin=EVIL)
            assert (await ws.recv_text()).startswith("0{")
            await ws.close()
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers
        assert memory.growth() < 8 * MiB
        measured(memory, watcher)
        await watcher.check(max_latency=LATENCY)


@pytest.mark.parametrize("origins", [None, "*", ["https://app.example", "*"]])
def test_credentials_need_an_origin_list(origins: object) -> None:
    with pytest.raises(ValueError, match="cors_credentials"):
        realtime.Server(cors_allowed_origins=origins, cors_credentials=True)  # type: ignore[arg-type]


def test_credentials_are_off_by_default() -> None:
    listed = realtime.Server(cors_allowed_origins=["https://app.example"])
    assert listed.engine.cors_credentials is False
    server = realtime.Server(cors_allowed_origins=["https://app.example"], cors_credentials=True)
    assert server.engine.cors_credentials is True


async def test_post_answer_of_a_listed_origin() -> None:
    server = chat_server(cors_allowed_origins=["https://app.example"], cors_credentials=True)
    async with running(server) as rt:
        headers = [("Origin", "https://app.example")]
        response = await http_request(rt.port, "GET", eio_url(), headers=headers)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        sid = json.loads(response.text[1:])["sid"]
        response = await http_request(rt.port, "POST", eio_url(sid), "40", headers=headers)
        assert response.status == 200
        assert response.headers["access-control-allow-credentials"] == "true"
