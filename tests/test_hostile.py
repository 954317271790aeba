"""Hostile clients against a real server on loopback: every attack ends the
attacker's connection the documented way (or holds it to a bound) while other
connections carry on.

Each test keeps a *bystander* open from another address (127.0.0.2) and checks
it echoes after the attack, then opens a fresh connection. Already covered
elsewhere and not repeated here: a message over ``max_message_size`` from a
tether client (test_server.py), unmasked and malformed frames (1002,
test_server.py), the slow-client policy of ``broadcast`` (test_broadcast.py),
``send`` backpressure (test_connection.py).

What the server does with floods (see docs/security.md):

* pings: each is answered while the peer reads the pongs; once the pongs back
  up past ``write_high_water`` the server stops reading that peer until they
  drain, so the flood stalls in the attacker's own socket buffers;
* tiny or empty fragments: reassembled in O(log n) parts, never more than
  ``max_message_size`` bytes; the message completes normally, or fails with
  1009 once it would exceed the limit. Each frame costs CPU in proportion to
  its bytes, like any other traffic; ``max_messages_per_second`` does not
  count fragments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import tether
from conftest import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    OpenRaw,
    RawClient,
    StartServer,
    frame_header,
    ws_uri,
)
from helpers import timeout
from realtime.hostile_helpers import MemoryWatch
from tether.protocol.deflate import PerMessageDeflate

OP_CONT = 0x0
RSV1 = 0x40
KiB = 1024
MiB = 1024 * KiB


# -- helpers -------------------------------------------------------------------------


async def connect_from(
    server: tether.Server, source: str = "127.0.0.2", path: str = "/", **options: Any
) -> tether.Connection:
    """A tether client whose TCP connection comes from ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.wait_for(
        asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port)), timeout(2)
    )
    return await tether.connect(ws_uri(server, path), sock=sock, open_timeout=timeout(2), **options)


async def echoes(connection: tether.Connection, message: str = "still here") -> bool:
    await connection.send(message)
    return await asyncio.wait_for(connection.recv(), timeout(2)) == message


async def fresh_echo(server: tether.Server) -> bool:
    connection = await connect_from(server, "127.0.0.3")
    try:
        return await echoes(connection, "fresh")
    finally:
        await connection.close()


async def eventually(predicate: Callable[[], bool], within: float = timeout(3)) -> None:
    """Poll ``predicate`` until it holds (a condition, not a fixed delay)."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Routes:
    """A handler by path: "/" echoes, "/stuck" never reads, "/flood" sends until
    blocked, "/close" closes at once. Server-side connections are kept in ``seen``."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tether.Connection]] = {}

    async def __call__(self, connection: tether.Connection) -> None:
        self.seen.setdefault(connection.path, []).append(connection)
        if connection.path == "/stuck":
            await connection.wait_closed()
        elif connection.path == "/flood":
            while True:
                await connection.send(b"f" * (16 * KiB))
        elif connection.path == "/close":
            await connection.close(1000)
        else:
            async for message in connection:
                await connection.send(message)


def header(opcode: int, length: int, *, fin: bool = True, mask: bool = True) -> bytes:
    """A frame header announcing ``length`` bytes (the payload is not sent)."""
    return frame_header(opcode, length, fin=fin, key=os.urandom(4) if mask else b"")


async def read_to_end(raw: RawClient) -> bytes:
    """Everything the server sends until it closes or resets the connection."""
    data = b""
    try:
        while chunk := await raw.reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def read_status(raw: RawClient) -> int:
    head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    return int(head.split(b" ", 2)[1])


# -- every limit of tether.Limits: the close code (or bound), others carry on --------

Attack = Callable[[tether.Server, OpenRaw, Routes], Awaitable[str]]


async def attack_message_size(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port)
    raw.send_frame(OP_BINARY, b"a" * 3000, fin=False)
    raw.send_frame(OP_CONT, b"b" * 3000, fin=False)  # 6000 bytes so far, each frame fine
    raw.writer.write(header(OP_CONT, 3000))  # would reach 9000: refused from the header
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    return str(code)


async def attack_frame_size(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port)
    raw.writer.write(header(OP_BINARY, 1 << 40))  # a terabyte announced, nothing sent
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert await asyncio.wait_for(raw.at_eof(), timeout(2))
    return str(code)


async def attack_header_bytes(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request(extra="X-Junk: " + "j" * 5000 + "\r\n"))
    return str(await read_status(raw))


async def attack_header_count(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request(extra="".join(f"X-{i}: {i}\r\n" for i in range(40))))
    return str(await read_status(raw))


async def attack_queue(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request("/stuck"))
    await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    for _ in range(200):
        raw.send_frame(OP_TEXT, b"m" * 100)
    await eventually(lambda: bool(routes.seen.get("/stuck")))
    stuck = routes.seen["/stuck"][0]
    await eventually(lambda: stuck._reading_paused)
    assert len(stuck._messages) <= server.limits.max_queue
    return "reading paused"


async def attack_queue_bytes(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request("/stuck"))
    await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    for _ in range(100):
        raw.send_frame(OP_BINARY, b"m" * (4 * KiB))
    await eventually(lambda: bool(routes.seen.get("/stuck")))
    stuck = routes.seen["/stuck"][0]
    await eventually(lambda: stuck._reading_paused)
    # Paused on bytes, well before max_queue messages.
    assert len(stuck._messages) < server.limits.max_queue
    assert stuck._queued_bytes <= server.limits.max_queue_bytes + 4 * KiB
    return "reading paused"


async def attack_write_water(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False, rcvbuf=4096)
    raw.writer.write(raw.request("/flood"))
    raw.stop_reading()  # never reads what /flood sends
    await eventually(lambda: bool(routes.seen.get("/flood")))
    flood = routes.seen["/flood"][0]
    await eventually(lambda: flood._writing_paused)  # its send() now waits
    # Bounded: up to write_high_water queued in the transport when the last
    # flush handed it up to write_high_water more, plus one message.
    assert flood.write_buffer_size() <= 2 * server.limits.write_high_water + 17 * KiB
    return "send waits"


async def attack_open_timeout(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request()[:30])  # half a request, then nothing
    started = time.monotonic()
    answer = await asyncio.wait_for(read_to_end(raw), timeout(3))
    assert answer == b"" and time.monotonic() - started >= server.limits.open_timeout * 0.8  # type: ignore[operator]
    return "dropped"


async def attack_close_timeout(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request("/close"))
    await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert code == 1000
    started = time.monotonic()  # we never answer the close frame
    assert await asyncio.wait_for(raw.at_eof(), timeout(3))
    assert time.monotonic() - started >= server.limits.close_timeout * 0.8  # type: ignore[operator]
    return "aborted"


async def attack_keepalive(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port)  # read_close skips the pings: never answered
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(3))
    return str(code)


async def attack_connections(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    cap = server.limits.max_connections_per_ip
    assert cap is not None
    for _ in range(cap):
        await raw_client(server.port)  # from 127.0.0.1, all accepted
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request())
    return str(await read_status(raw))


async def attack_rate(server: tether.Server, raw_client: OpenRaw, routes: Routes) -> str:
    raw = await raw_client(server.port)
    for _ in range(500):
        raw.send_frame(OP_TEXT, b"spam")
    code, reason = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert "rate" in reason
    return str(code)


LIMIT_CASES: list[tuple[str, dict[str, Any], Attack, str]] = [
    ("max_message_size", {"max_message_size": 8000}, attack_message_size, "1009"),
    ("max_frame_size", {"max_frame_size": 64 * KiB}, attack_frame_size, "1009"),
    ("max_header_bytes", {"max_header_bytes": 4000}, attack_header_bytes, "431"),
    ("max_header_count", {"max_header_count": 30}, attack_header_count, "431"),
    ("max_queue", {"max_queue": 8}, attack_queue, "reading paused"),
    ("max_queue_bytes", {"max_queue_bytes": 32 * KiB}, attack_queue_bytes, "reading paused"),
    ("write_high_water", {"write_high_water": 32 * KiB}, attack_write_water, "send waits"),
    ("write_low_water", {"write_low_water": 8 * KiB}, attack_write_water, "send waits"),
    ("open_timeout", {"open_timeout": timeout(0.5)}, attack_open_timeout, "dropped"),
    ("close_timeout", {"close_timeout": timeout(0.5)}, attack_close_timeout, "aborted"),
    (
        "ping_interval",
        {"ping_interval": timeout(0.2), "ping_timeout": timeout(0.3)},
        attack_keepalive,
        "1011",
    ),
    (
        "ping_timeout",
        {"ping_interval": timeout(0.1), "ping_timeout": timeout(0.2)},
        attack_keepalive,
        "1011",
    ),
    ("max_connections_per_ip", {"max_connections_per_ip": 3}, attack_connections, "503"),
    ("max_messages_per_second", {"max_messages_per_second": 50}, attack_rate, "1008"),
]


def test_every_limit_has_a_case() -> None:
    assert sorted(name for name, *_ in LIMIT_CASES) == sorted(tether.Limits.describe())


@pytest.mark.parametrize(
    ("options", "attack", "expected"),
    [case[1:] for case in LIMIT_CASES],
    ids=[case[0] for case in LIMIT_CASES],
)
async def test_limit_ends_the_attack_while_others_carry_on(
    start_server: StartServer,
    raw_client: OpenRaw,
    options: dict[str, Any],
    attack: Attack,
    expected: str,
) -> None:
    routes = Routes()
    server = await start_server(routes, compression=None, **options)
    bystander = await connect_from(server)
    try:
        assert await echoes(bystander, "before")
        assert await attack(server, raw_client, routes) == expected
        assert await echoes(bystander, "after")
        assert await fresh_echo(server)
    finally:
        await bystander.close()


# -- slowloris -------------------------------------------------------------------------


async def test_slowloris_does_not_keep_legitimate_clients_out(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    open_timeout = timeout(2)
    server = await start_server(open_timeout=open_timeout)
    slow = [await raw_client(server.port, handshake=False) for _ in range(100)]
    request = slow[0].request()

    async def dribble(raw: RawClient) -> None:
        # One byte every open_timeout / 50: the request would take 3 open_timeouts.
        for i in range(len(request)):
            raw.writer.write(request[i : i + 1])
            await asyncio.sleep(open_timeout / 50)

    dribblers = [asyncio.create_task(dribble(raw)) for raw in slow]
    try:
        for _ in range(10):
            started = time.monotonic()
            connection = await connect_from(server)
            assert await echoes(connection)
            await connection.close()
            # Well under open_timeout: the slow handshakes hold nobody up.
            assert time.monotonic() - started < timeout(1)
        # Each slow handshake is dropped at open_timeout, unanswered.
        started = time.monotonic()
        answers = await asyncio.wait_for(
            asyncio.gather(*(read_to_end(raw) for raw in slow)), open_timeout + timeout(2)
        )
        assert answers == [b""] * len(slow)
        assert time.monotonic() - started < open_timeout + timeout(1)
    finally:
        for task in dribblers:
            task.cancel()
        await asyncio.gather(*dribblers, return_exceptions=True)
    assert await fresh_echo(server)


async def test_a_client_that_sends_nothing_is_dropped_at_open_timeout(
    start_server: StartServer, raw_client: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    open_timeout = timeout(0.5)
    server = await start_server(open_timeout=open_timeout)
    silent = await raw_client(server.port, handshake=False)
    half = await raw_client(server.port, handshake=False)
    half.writer.write(half.request()[:20])  # a head that never ends
    with caplog.at_level(logging.INFO, logger="tether.server"):
        answers = await asyncio.wait_for(
            asyncio.gather(read_to_end(silent), read_to_end(half)), open_timeout + timeout(2)
        )
    assert answers == [b"", b""]
    timed_out = [r for r in caplog.records if r.getMessage() == "opening handshake timed out"]
    assert len(timed_out) == 2
    assert await fresh_echo(server)


# -- hostile frames ------------------------------------------------------------------


async def test_64_bit_length_with_the_top_bit_set_fails_1002(
    echo_server: tether.Server, raw_client: OpenRaw
) -> None:
    bystander = await connect_from(echo_server)
    raw = await raw_client(echo_server.port)
    raw.writer.write(b"\x82\xff" + struct.pack("!Q", 1 << 63) + os.urandom(4))
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert code == 1002  # §5.2: the most significant bit MUST be 0
    assert await echoes(bystander)
    await bystander.close()


async def test_invalid_utf8_fails_1007(echo_server: tether.Server, raw_client: OpenRaw) -> None:
    bystander = await connect_from(echo_server)
    raw = await raw_client(echo_server.port)
    raw.send_frame(OP_TEXT, "caf\u00e9".encode()[:-1] + b"\xff", fin=False)
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert code == 1007  # failed on the first fragment, before the message ends
    assert await echoes(bystander)
    await bystander.close()


def zero_bomb_segment(size: int) -> bytes:
    """Raw deflate data for ``size`` zero bytes that refers only to itself, ending
    with a sync flush: any number of copies back to back is a valid stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH)


async def test_decompression_bomb_fails_1009_after_inflating_at_most_the_limit(
    start_server: StartServer, raw_client: OpenRaw, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflated: list[int] = []
    original = PerMessageDeflate.decompress

    def counting(self: PerMessageDeflate, data: Any, final: bool, budget: int) -> bytes:
        inflated.append(budget)  # at most budget + 1 bytes come out (then 1009)
        out = original(self, data, final, budget)
        inflated[-1] = len(out)
        return out

    monkeypatch.setattr(PerMessageDeflate, "decompress", counting)
    server = await start_server(max_message_size=1 * MiB)
    bystander = await connect_from(server)
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
    head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    assert b"permessage-deflate" in head
    segment = zero_bomb_segment(16 * MiB)  # ~16 KiB on the wire
    fragments = 64  # 1 GiB once inflated, if it were
    sent = 0
    raw.send_frame(OP_BINARY | RSV1, segment, fin=False)
    sent += 1
    close = asyncio.create_task(raw.read_close())
    while sent < fragments and not close.done():
        raw.send_frame(OP_CONT, segment, fin=False)
        sent += 1
        try:
            await raw.writer.drain()
        except ConnectionError:
            break  # the server already closed: the rest is never sent
        await asyncio.sleep(0)
    code, _ = await asyncio.wait_for(close, timeout(3))
    assert code == 1009
    assert len(segment) < 20 * KiB
    # Everything the server inflated for this message, 1009 included.
    assert sum(inflated) <= server.limits.max_message_size + 1
    assert await echoes(bystander)
    await bystander.close()


async def test_queued_deflate_messages_are_bounded_in_bytes_after_inflation(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # 40 connections that each send max_queue messages of 1 MiB of zeros,
    # ~1 KiB each on the wire, to a handler that never reads: counted in
    # messages only, each held 32 MiB inflated (1.16 GB in all).
    routes = Routes()
    server = await start_server(routes)
    limits = server.limits
    message = zero_bomb_segment(limits.max_message_size)[:-4]  # RFC 7692 §7.2.1
    async with echo_bystander(server) as watcher:
        with MemoryWatch() as memory:
            attackers = []
            for _ in range(40):
                raw = await raw_client(server.port, handshake=False)
                raw.writer.write(
                    raw.request("/stuck", extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
                )
                await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
                for _ in range(limits.max_queue):
                    raw.send_frame(OP_BINARY | RSV1, message)
                attackers.append(raw)
            await eventually(lambda: len(routes.seen.get("/stuck", ())) == 40)
            stuck = routes.seen["/stuck"]
            await eventually(lambda: all(c._reading_paused for c in stuck))
        held = max(c._queued_bytes for c in stuck)
        print(f"sent {len(message) * limits.max_queue} bytes per connection, held at most {held}")
        print(f"growth {memory.growth() / MiB:.1f} MiB for 40 connections")
        assert held <= limits.max_queue_bytes + limits.max_message_size
        assert memory.growth() < 120 * MiB, memory.growth()
        for connection in stuck:  # or closing them inflates what they hold back
            assert connection.transport is not None
            connection.transport.abort()
    watcher.check(max_latency=0.5)


class EchoBystander:
    """A tether client echoing a message every 50 ms; ``check()`` asserts that
    every echo came back, none slower than ``max_latency`` (scaled)."""

    def __init__(self, connection: tether.Connection) -> None:
        self.connection = connection
        self.latencies: list[float] = []
        self.lost = 0

    async def run(self) -> None:
        i = 0
        while True:
            i += 1
            started = time.monotonic()
            await self.connection.send(str(i))
            try:
                reply = await asyncio.wait_for(self.connection.recv(), timeout(2))
            except asyncio.TimeoutError:
                self.lost += 1
                continue
            assert reply == str(i)
            self.latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)  # the client's pace, not synchronisation

    def check(self, max_latency: float) -> None:
        assert self.latencies and not self.lost
        worst = max(self.latencies)
        print(f"bystander worst latency {worst * 1000:.0f} ms over {len(self.latencies)} echoes")
        assert worst <= timeout(max_latency), worst


@contextlib.asynccontextmanager
async def echo_bystander(server: tether.Server) -> AsyncIterator[EchoBystander]:
    connection = await connect_from(server)
    watcher = EchoBystander(connection)
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise AssertionError(f"bystander failed: {task.exception()!r}")
        await connection.close()


# -- floods ----------------------------------------------------------------------------


async def test_ping_flood_is_answered_and_stalls_when_pongs_are_not_read(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    routes = Routes()
    server = await start_server(routes, write_high_water=64 * KiB)
    bystander = await connect_from(server)
    # Accepted sockets inherit the listener's fixed receive buffer: without it
    # the kernel's autotuning (tcp_rmem's maximum is 32 MiB on some machines)
    # would hold the whole flood before anything backs up into the client.
    for listener in server.sockets:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
    raw = await raw_client(server.port, rcvbuf=4096, sndbuf=64 * KiB)
    # Read: every ping is answered.
    for i in range(2000):
        raw.send_frame(OP_PING, b"%d" % i)
    for i in range(2000):
        opcode, payload = await asyncio.wait_for(raw.read_frame(), timeout(2))
        assert (opcode, payload) == (0xA, b"%d" % i)
    # Stop reading and keep pinging: the server stops reading us instead of
    # piling up pongs; the flood backs up into our own buffers.
    raw.stop_reading()
    attacker = routes.seen["/"][-1]

    def backed_up() -> bool:
        for _ in range(1000):
            raw.send_frame(OP_PING, b"p" * 100)
        return raw.writer.transport.get_write_buffer_size() > 4 * MiB

    await eventually(backed_up, timeout(5))
    bound = server.limits.write_high_water + 256 * KiB + 64 * KiB  # + one read's pongs
    assert attacker.write_buffer_size() <= bound
    assert await echoes(bystander)
    # Reading again drains it all: the server resumes and answers the rest.
    raw.writer.transport.resume_reading()  # type: ignore[attr-defined]
    reader = asyncio.create_task(raw.at_eof())
    await eventually(lambda: raw.writer.transport.get_write_buffer_size() == 0, timeout(10))
    reader.cancel()
    assert attacker.open
    assert await echoes(bystander)
    await bystander.close()


async def test_tiny_fragment_flood_is_reassembled_in_bounded_memory(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    routes = Routes()
    server = await start_server(routes, compression=None, max_message_size=64 * KiB)
    bystander = await connect_from(server)
    raw = await raw_client(server.port)
    raw.send_frame(OP_TEXT, b"<", fin=False)
    for i in range(20_000):
        # Empty fragments (they do not count against max_message_size) and
        # one-byte ones, mixed.
        raw.send_frame(OP_CONT, b"" if i % 2 else b"x", fin=False)
    raw.send_frame(OP_PING, b"barrier")  # its pong: everything before was parsed
    assert await asyncio.wait_for(raw.read_frame(), timeout(5)) == (0xA, b"barrier")
    protocol = routes.seen["/"][-1].protocol
    assert protocol is not None
    assert len(protocol._reader._msg_parts) <= 32 + 2 * 17  # O(log n) parts, not 10,000
    raw.send_frame(OP_CONT, b">")
    assert await asyncio.wait_for(raw.read_frame(), timeout(2)) == (
        OP_TEXT,
        b"<" + b"x" * 10_000 + b">",
    )
    # Past max_message_size, one byte at a time: 1009.
    raw.send_frame(OP_BINARY, b"", fin=False)
    for _ in range(64 * KiB + 1):
        raw.send_frame(OP_CONT, b"y", fin=False)
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(5))
    assert code == 1009
    assert await echoes(bystander)
    await bystander.close()


async def test_a_client_that_never_reads_holds_bounded_memory_and_is_closed_by_broadcast(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    routes = Routes()
    high = 64 * KiB
    server = await start_server(routes, write_high_water=high)
    listeners = [await connect_from(server, path="/stuck") for _ in range(3)]
    raw = await raw_client(server.port, handshake=False, rcvbuf=4096)
    raw.writer.write(raw.request("/stuck"))
    raw.stop_reading()
    await eventually(lambda: len(server.connections) == 4)
    deaf = routes.seen["/stuck"][-1]
    others = [c for c in server.connections if c is not deaf]
    message = b"n" * (64 * KiB)
    received = [0] * len(listeners)

    async def read(i: int) -> None:
        while True:
            assert await listeners[i].recv() == message
            received[i] += 1

    readers = [asyncio.create_task(read(i)) for i in range(len(listeners))]
    sent = 0
    try:
        while deaf.open:
            assert sent < 400, "the deaf client was never closed"  # 25 MiB
            assert tether.broadcast(server.connections, message, slow="close") >= 3
            sent += 1
            # The server's buffer for it never exceeds high water + one message.
            assert deaf.write_buffer_size() <= high + len(message) + 16
            # Paced by the listeners, which read everything.
            await eventually(lambda: all(c.write_buffer_size() <= high for c in others))
        await eventually(lambda: received == [sent] * len(listeners))
    finally:
        for task in readers:
            task.cancel()
    assert all(c.open for c in others)
    code, reason = await asyncio.wait_for(_read_close_again(raw), timeout(3))
    assert code == 1008 and "slow" in reason
    for listener in listeners:
        await listener.close()
    assert await fresh_echo(server)


async def _read_close_again(raw: RawClient) -> tuple[int, str]:
    raw.writer.transport.resume_reading()  # type: ignore[attr-defined]
    await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), timeout(2))
    return await raw.read_close()


# -- per-IP cap and rate limit details -------------------------------------------------


async def test_connection_cap_is_per_address_and_freed_on_close(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(max_connections_per_ip=2)
    first = await connect_from(server, "127.0.0.4")
    second = await connect_from(server, "127.0.0.4")
    with pytest.raises(tether.InvalidStatus) as info:
        await connect_from(server, "127.0.0.4")
    assert info.value.response.status == 503
    assert info.value.response.headers.get("Retry-After") == "1"
    other = await connect_from(server, "127.0.0.5")  # another address is not affected
    assert await echoes(other)
    await first.close()
    await eventually(lambda: server.addresses.count("127.0.0.4") == 1)
    third = await connect_from(server, "127.0.0.4")  # a slot was freed
    assert await echoes(third)
    for connection in (second, third, other):
        await connection.close()
    await eventually(lambda: len(server.addresses) == 0)  # nothing left behind


async def test_message_rate_allows_a_steady_sender_under_the_limit(
    start_server: StartServer,
) -> None:
    server = await start_server(max_messages_per_second=1000)
    connection = await connect_from(server)
    for i in range(200):  # a burst within one second's worth
        assert await echoes(connection, str(i))
    assert connection.open
    await connection.close()


async def test_rate_limit_closes_a_flooder_that_does_not_read(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # The rate limit fails the connection even if the attacker never reads:
    # the server closes TCP after sending 1008, bounded by close_timeout.
    server = await start_server(max_messages_per_second=10, close_timeout=timeout(0.5))
    raw = await raw_client(server.port, rcvbuf=4096)
    raw.stop_reading()
    for _ in range(100):
        raw.send_frame(OP_TEXT, b"x")
    raw.writer.transport.resume_reading()  # type: ignore[attr-defined]
    code, _ = await asyncio.wait_for(raw.read_close(), timeout(2))
    assert code == 1008
    assert await asyncio.wait_for(raw.at_eof(), timeout(2))


@pytest.mark.parametrize("partial", [b"\x81", b"\x81\x85ab", b"\x82\x85abcdxy", b"\x82\xfe\xff"])
async def test_a_peer_that_leaves_mid_frame_does_not_stall_the_server(
    start_server: StartServer, raw_client: OpenRaw, partial: bytes
) -> None:
    # Regression: the handler's recv() used to spin forever on the incomplete
    # frame left pending after EOF, blocking the event loop for everyone.
    ended = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        try:
            async for message in connection:
                await connection.send(message)
        finally:
            ended.set()

    server = await start_server(handler)
    raw = await raw_client(server.port)
    raw.writer.write(partial)
    await raw.writer.drain()
    raw.writer.close()
    await asyncio.wait_for(ended.wait(), timeout(2))
    assert await fresh_echo(server)
