"""The byte stream under a connection (tether._http1.HTTPStream): the HTTP/1.1
head and body buffer before the upgrade, the end-of-iteration write queue,
drained(), deadlines and closing TCP.

Each test drives the stream through the asyncio layer's internal interface
(read_head, read_body, drained, close_transport, closed_future, write_frames,
flush) on the server's end of a real TCP connection on 127.0.0.1, made by
``connect_accepted_socket`` as a server makes it; the other end is a plain
socket the test reads and writes by hand. The same paths through a whole
server are in test_http_handler.py, test_server.py and test_hostile*.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

import tether
from helpers import timeout
from tether._http1 import VECTORED_AT
from tether.connection import Connection
from tether.limits import DEFAULT_LIMITS
from tether.protocol import connection as core
from tether.protocol.http import parse_request

KiB = 1024
MiB = 1024 * KiB
T = TypeVar("T")

_log = logging.getLogger("tether.test_http1")

#: Small buffers on both sides, so that a peer that does not read pauses our
#: writing after a few dozen KiB (the kernel would otherwise absorb MiBs).
FLOW: dict[str, Any] = {
    "write_high_water": 32 * KiB,
    "write_low_water": 8 * KiB,
    "rcvbuf": 4096,
    "sndbuf": 8192,
}

ANSWER = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"


class Pair:
    """The stream under test and its peer, a non-blocking socket."""

    def __init__(self, stream: Connection, peer: socket.socket) -> None:
        self.stream = stream
        self.peer = peer
        self.loop = asyncio.get_running_loop()

    @property
    def transport(self) -> asyncio.Transport:
        assert self.stream.transport is not None
        return self.stream.transport

    async def send(self, data: bytes) -> None:
        async def send_all() -> None:
            # In pieces: one sock_sendall of MiBs through a small SO_SNDBUF
            # crawls (~2 s for 4 MiB, whoever reads at the other end).
            for start in range(0, len(data), 64 * KiB):
                await self.loop.sock_sendall(self.peer, data[start : start + 64 * KiB])

        await asyncio.wait_for(send_all(), timeout(2))

    async def recv_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = await asyncio.wait_for(
                self.loop.sock_recv(self.peer, size - len(data)), timeout(2)
            )
            if not chunk:
                raise EOFError(f"the stream ended after {len(data)} of {size} bytes")
            data += chunk
        return bytes(data)

    async def read_to_end(self) -> bytes:
        """Everything the stream sends until its FIN (a reset raises)."""
        data = bytearray()
        while chunk := await asyncio.wait_for(self.loop.sock_recv(self.peer, 65536), timeout(2)):
            data += chunk
        return bytes(data)

    async def read_until_gone(self) -> bytes:
        """What the peer still receives, up to a FIN or a reset (an abort)."""
        data = bytearray()
        try:
            while chunk := await asyncio.wait_for(
                self.loop.sock_recv(self.peer, 65536), timeout(2)
            ):
                data += chunk
        except ConnectionResetError:
            pass
        return bytes(data)

    async def wait_closed(self, seconds: float) -> None:
        # closed_future() is shared: shielded, so a timeout does not cancel it.
        await asyncio.wait_for(asyncio.shield(self.stream.closed_future()), seconds)


OpenPair = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def open_pair() -> AsyncIterator[OpenPair]:
    pairs: list[Pair] = []

    async def open_(
        *,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        peer_sndbuf: int | None = None,
        **options: Any,
    ) -> Pair:
        """``rcvbuf`` and ``peer_sndbuf`` size the peer's socket buffers (set
        before connecting, so the TCP window stays small), ``sndbuf`` the
        stream's; ``options`` are limits."""
        loop = asyncio.get_running_loop()
        limits = DEFAULT_LIMITS.replace(**options)
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if peer_sndbuf is not None:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, peer_sndbuf)
            peer.setblocking(False)
            with socket.create_server(("127.0.0.1", 0)) as listener:
                listener.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(peer, listener.getsockname()), timeout())
                accepted, _ = await asyncio.wait_for(loop.sock_accept(listener), timeout())
            if sndbuf is not None:
                accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            _, stream = await loop.connect_accepted_socket(
                lambda: Connection(core.Side.SERVER, limits, _log), accepted
            )
        except BaseException:
            peer.close()
            raise
        pair = Pair(stream, peer)
        pairs.append(pair)
        return pair

    yield open_
    for pair in pairs:
        pair.peer.close()
        # Not once closed: asyncio's abort() fails after a close() that
        # flushed its buffer (3.11).
        if pair.stream.transport is not None and not pair.stream.closed:
            pair.stream.transport.abort()
        await pair.wait_closed(timeout())


async def with_buffered(stream: Connection, awaitable: Awaitable[T]) -> tuple[T, int]:
    """``awaitable``'s result and the size of the head buffer at the moment it
    returned (reading may resume then: a check a loop iteration later would
    also count what arrived since)."""
    result = await awaitable
    return result, len(stream._head)


async def next_iteration() -> None:
    """Return once the loop ran what was ready when called, such as the
    end-of-iteration flush of writes queued before."""
    loop = asyncio.get_running_loop()
    later = loop.create_future()
    loop.call_soon(later.set_result, None)
    await later


def without_waiting(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end if it gets there without suspending once."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("it waited")


def padded_head(size: int, start: bytes) -> bytes:
    """A request head of exactly ``size`` bytes, blank line included."""
    start += b"X-Pad: "
    head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


# -- read_head ---------------------------------------------------------------------------


async def test_read_head_waits_for_the_blank_line_across_reads(open_pair: OpenPair) -> None:
    pair = await open_pair()
    seen: asyncio.Queue[int] = asyncio.Queue()

    def parse(buf: bytearray, *, max_bytes: int, max_count: int) -> Any:
        seen.put_nowait(len(buf))  # read_head parses again after each read
        return parse_request(buf, max_bytes=max_bytes, max_count=max_count)

    async def parsed(size: int) -> None:
        while (length := await asyncio.wait_for(seen.get(), timeout())) < size:
            pass
        assert length == size

    reading = asyncio.ensure_future(pair.stream.read_head(parse))
    head = b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Trace: abc\r\n\r\n"
    # The blank line split across reads; a frame's first bytes right behind
    # it, in the same read (RFC 6455 §4: the peer need not wait for the 101).
    pieces = [head[:10], head[10:-1], head[-1:] + b"\x81\x05"]
    sent = 0
    for piece in pieces[:-1]:
        await pair.send(piece)
        sent += len(piece)
        await parsed(sent)
        assert not reading.done()
    await pair.send(pieces[-1])
    result = await asyncio.wait_for(reading, timeout())
    assert result is not None
    request, used = result
    assert (request.method, request.path, request.headers["X-Trace"]) == ("GET", "/chat", "abc")
    assert used == len(head)
    # What follows the head stays buffered, for read_body or the WebSocket core.
    assert bytes(pair.stream._head) == head + b"\x81\x05"


async def test_a_head_one_byte_over_max_header_bytes_is_refused_unread_past_it(
    open_pair: OpenPair,
) -> None:
    limit = 1024
    pair = await open_pair(max_header_bytes=limit)
    await pair.send(padded_head(limit + 1, b"GET / HTTP/1.1\r\n") + b"x" * 32 * KiB)
    with pytest.raises(tether.PayloadTooBig):
        await asyncio.wait_for(pair.stream.read_head(parse_request), timeout())
    # Not a byte more than the limit was read (the rest waits in the kernel's
    # buffers, which the peer fills, not ours), and reading is paused.
    assert len(pair.stream._head) == limit
    assert not pair.transport.is_reading()


async def test_a_head_of_exactly_max_header_bytes_then_a_larger_body(open_pair: OpenPair) -> None:
    limit = 1024
    pair = await open_pair(max_header_bytes=limit)
    stream = pair.stream
    head = padded_head(limit, b"POST /up HTTP/1.1\r\nContent-Length: 3000\r\n")
    body = os.urandom(3000)
    await pair.send(head + body + b"GET /next HTTP/1.1\r\n\r\n")
    parsed = await asyncio.wait_for(stream.read_head(parse_request), timeout())
    assert parsed is not None
    request, used = parsed
    assert (request.path, used) == ("/up", limit)
    # Paused at the limit: the body is not read before it is asked for.
    assert len(stream._head) == limit
    assert not pair.transport.is_reading()
    got, left = await asyncio.wait_for(
        with_buffered(stream, stream.read_body(used, len(body))), timeout()
    )
    assert got == body
    # Read up to the body's end and no further; cut off, and reading resumed
    # for the next request.
    assert left == 0
    assert pair.transport.is_reading()
    parsed = await asyncio.wait_for(stream.read_head(parse_request), timeout())
    assert parsed is not None and parsed[0].path == "/next"


async def test_pipelined_keep_alive_requests_are_read_one_at_a_time(open_pair: OpenPair) -> None:
    limit = 1024
    pair = await open_pair(max_header_bytes=limit)
    stream = pair.stream
    bodies = [os.urandom(n) for n in (0, 5, 700, 1024, 3000, 0)]
    await pair.send(
        b"".join(
            b"POST /%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body)
            for i, body in enumerate(bodies)
        )
    )
    for i, body in enumerate(bodies):
        parsed, buffered = await asyncio.wait_for(
            with_buffered(stream, stream.read_head(parse_request)), timeout()
        )
        assert parsed is not None
        request, used = parsed
        assert request.path == f"/{i}"
        assert buffered <= limit
        size = int(request.headers["Content-Length"])
        got, left = await asyncio.wait_for(
            with_buffered(stream, stream.read_body(used, size)), timeout()
        )
        assert got == body
        # At most max_header_bytes read in all, or up to the body's end if
        # larger: what is left is the part of that past this request.
        assert left <= max(0, limit - (used + size))
    assert len(stream._head) == 0


# -- the peer leaving, deadlines ------------------------------------------------------------

PARTIAL = {
    "head": b"GET / HTTP/1.1\r\nHost: x\r\n",
    "body": b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
}


async def read_partial(stream: Connection, stage: str, deadline: float | None) -> object:
    """read_head, or read_body after it, on the PARTIAL request of ``stage``."""
    if stage == "head":
        return await stream.read_head(parse_request, deadline)
    parsed = await stream.read_head(parse_request)
    assert parsed is not None
    return await stream.read_body(parsed[1], 100, deadline)


@pytest.mark.parametrize("stage", ["head", "body"])
async def test_reading_returns_none_when_the_peer_leaves(open_pair: OpenPair, stage: str) -> None:
    pair = await open_pair()
    await pair.send(PARTIAL[stage])
    reading = asyncio.ensure_future(read_partial(pair.stream, stage, None))
    pair.peer.close()
    assert await asyncio.wait_for(reading, timeout()) is None
    assert not pair.stream.timed_out


@pytest.mark.parametrize("stage", ["head", "body"])
async def test_a_missed_deadline_aborts_the_connection(open_pair: OpenPair, stage: str) -> None:
    deadline = timeout(0.2)
    pair = await open_pair()
    await pair.send(PARTIAL[stage])
    started = time.monotonic()
    reading = read_partial(pair.stream, stage, deadline)
    assert await asyncio.wait_for(reading, deadline + timeout(1)) is None
    assert time.monotonic() - started >= deadline * 0.9
    assert pair.stream.timed_out
    await pair.wait_closed(timeout())
    assert await pair.read_until_gone() == b""


async def test_deadlines_that_are_met_are_cancelled(open_pair: OpenPair) -> None:
    deadline = timeout(0.1)
    pair = await open_pair()
    stream = pair.stream
    head = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    # Both wait for bytes (so that each starts its deadline) and get them in time.
    reading = asyncio.ensure_future(stream.read_head(parse_request, deadline))
    await pair.send(head[:10])
    await pair.send(head[10:] + b"12345")
    parsed = await asyncio.wait_for(reading, timeout())
    assert parsed is not None
    body = asyncio.ensure_future(stream.read_body(parsed[1], 10, deadline))
    await pair.send(b"67890")
    assert await asyncio.wait_for(body, timeout()) == b"1234567890"
    # Long after both deadlines the connection is still open.
    done, _ = await asyncio.wait([stream.closed_future()], timeout=deadline * 4)
    assert not done
    assert not stream.timed_out
    assert not pair.transport.is_closing()


# -- the write queue --------------------------------------------------------------------


def record_writes(transport: asyncio.Transport) -> list[tuple[str, bytes]]:
    """Record the stream's calls to ``transport.write`` and ``writelines``
    (which still write)."""
    calls: list[tuple[str, bytes]] = []
    write, writelines = transport.write, transport.writelines
    inside = False

    def spy_write(data: Any) -> None:
        if not inside:  # not writelines' own call (asyncio before 3.12)
            calls.append(("write", bytes(data)))
        write(data)

    def spy_writelines(parts: Any) -> None:
        nonlocal inside
        parts = list(parts)
        calls.append(("writelines", b"".join(parts)))
        inside = True
        try:
            writelines(parts)
        finally:
            inside = False

    transport.write = spy_write  # type: ignore[method-assign]
    transport.writelines = spy_writelines  # type: ignore[method-assign]
    return calls


async def test_writes_of_one_iteration_go_out_in_one_write_at_its_end(open_pair: OpenPair) -> None:
    pair = await open_pair()
    stream = pair.stream
    calls = record_writes(pair.transport)
    stream._write(b"first ")
    stream._write_parts(b"head ", b"payload ")
    stream._write(b"last")
    assert calls == []
    assert stream._unsent() == 23  # counted for backpressure while queued
    await next_iteration()
    assert calls == [("write", b"first head payload last")]
    assert stream._unsent() == 0
    assert await pair.recv_exactly(23) == b"first head payload last"


async def test_past_write_high_water_the_queue_is_written_at_once(open_pair: OpenPair) -> None:
    pair = await open_pair(write_high_water=4096, write_low_water=1024)
    stream = pair.stream
    calls = record_writes(pair.transport)
    stream._write(b"a" * 3000)
    assert calls == []
    # Over write_high_water: handed to the transport now, so that its
    # buffer (and pause_writing) sees every byte.
    stream._write(b"b" * 3000)
    assert calls == [("write", b"a" * 3000 + b"b" * 3000)]
    await next_iteration()
    assert len(calls) == 1  # nothing left for the end of the iteration
    assert await pair.recv_exactly(6000) == b"a" * 3000 + b"b" * 3000


async def test_a_large_queue_is_written_vectored(open_pair: OpenPair) -> None:
    pair = await open_pair()
    calls = record_writes(pair.transport)
    head, payload = b"\x82\x7e\x40\x00", os.urandom(VECTORED_AT)
    pair.stream._write_parts(head, payload)
    await next_iteration()
    # writelines: the payload is not copied behind its header first.
    assert calls == [("writelines", head + payload)]
    assert await pair.recv_exactly(len(head) + len(payload)) == head + payload


async def test_write_frames_goes_behind_the_queue_or_out_at_once(open_pair: OpenPair) -> None:
    pair = await open_pair()
    stream = pair.stream
    calls = record_writes(pair.transport)
    stream.write_frames(b"alone ")
    assert calls == [("write", b"alone ")]  # nothing queued: no flush to schedule
    stream._write(b"queued ")
    stream.write_frames(b"behind")
    assert len(calls) == 1  # not ahead of what was queued before
    await next_iteration()
    assert calls[1:] == [("write", b"queued behind")]
    assert await pair.recv_exactly(19) == b"alone queued behind"


# -- drained ------------------------------------------------------------------------------


def fill(pair: Pair, size: int) -> bytes:
    """Write ``size`` random bytes, over write_high_water: writing pauses."""
    data = os.urandom(size)
    pair.stream._write(data)
    assert pair.stream._writing_paused
    return data


async def test_drained_answers_at_once_unless_writing_is_paused(open_pair: OpenPair) -> None:
    pair = await open_pair(**FLOW)
    stream = pair.stream
    stream._write(b"x" * 20 * KiB)  # queued, under write_high_water
    assert without_waiting(stream.drained(timeout())) is True
    pair.peer.close()
    await pair.wait_closed(timeout())
    assert without_waiting(stream.drained(timeout())) is False


async def test_drained_waits_until_the_peer_reads(open_pair: OpenPair) -> None:
    pair = await open_pair(**FLOW)
    stream = pair.stream
    data = fill(pair, 512 * KiB)

    async def drained() -> tuple[bool, int]:
        return await stream.drained(None), stream._unsent()

    waiting = asyncio.ensure_future(drained())
    done, _ = await asyncio.wait([waiting], timeout=timeout(0.2))
    assert not done
    assert await pair.recv_exactly(len(data)) == data
    ok, unsent = await asyncio.wait_for(waiting, timeout())
    assert ok
    assert unsent <= FLOW["write_low_water"]


async def test_drained_aborts_a_peer_that_reads_nothing(open_pair: OpenPair) -> None:
    stall = timeout(0.2)
    pair = await open_pair(**FLOW)
    fill(pair, 512 * KiB)
    started = time.monotonic()
    # One interval may still see progress (the kernel moving bytes on), the next not.
    assert await asyncio.wait_for(pair.stream.drained(stall), 2 * stall + timeout(1)) is False
    assert time.monotonic() - started >= stall * 0.9
    assert pair.stream.timed_out
    await pair.wait_closed(timeout())


async def test_drained_gives_a_slow_reader_the_time_it_needs(open_pair: OpenPair) -> None:
    stall = timeout(0.3)
    pair = await open_pair(**FLOW)
    data = fill(pair, 160 * KiB)

    async def read_slowly() -> bytes:
        received = b""
        while len(received) < len(data):
            received += await pair.recv_exactly(min(8 * KiB, len(data) - len(received)))
            await asyncio.sleep(stall / 6)  # the reader's pace, not synchronisation
        return received

    reader = asyncio.ensure_future(read_slowly())
    started = time.monotonic()
    # The deadline is on progress (nginx's send_timeout), not on the whole answer.
    assert await asyncio.wait_for(pair.stream.drained(stall), timeout(5)) is True
    elapsed = time.monotonic() - started
    assert not pair.stream.timed_out
    assert await asyncio.wait_for(reader, timeout(5)) == data
    assert elapsed > stall  # else this test shows nothing
    assert not pair.transport.is_closing()


@pytest.mark.parametrize("end", ["peer reads", "peer drops"])
async def test_every_coroutine_waiting_for_the_drain_is_woken(
    open_pair: OpenPair, end: str
) -> None:
    # Several tasks may write on one connection (send() from two tasks, or
    # send_nowait() then drain() beside a handler's send()): one drain, many waiters.
    pair = await open_pair(**FLOW)
    stream = pair.stream
    data = fill(pair, 512 * KiB)
    waiters = [
        asyncio.ensure_future(stream.drained(None)),
        asyncio.ensure_future(stream.drain()),
        asyncio.ensure_future(stream.drain()),
    ]
    done, _ = await asyncio.wait(waiters, timeout=timeout(0.1))
    assert not done
    if end == "peer reads":
        assert await pair.recv_exactly(len(data)) == data
    else:
        # A reset (SO_LINGER 0), not a FIN: the written bytes can never be sent.
        pair.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pair.peer.close()
    _, pending = await asyncio.wait(waiters, timeout=timeout())
    for waiter in pending:
        waiter.cancel()
    assert not pending, f"{len(pending)} of {len(waiters)} never woke"
    if end == "peer reads":
        assert [waiter.result() for waiter in waiters] == [True, None, None]
    else:
        assert waiters[0].result() is False
        for waiter in waiters[1:]:
            assert isinstance(waiter.exception(), tether.ConnectionClosedError)
    assert not stream.timed_out


async def test_a_cancelled_drain_leaves_the_others_waiting(open_pair: OpenPair) -> None:
    pair = await open_pair(**FLOW)
    stream = pair.stream
    data = fill(pair, 512 * KiB)
    first, second = asyncio.ensure_future(stream.drain()), asyncio.ensure_future(stream.drain())
    try:
        done, _ = await asyncio.wait([first, second], timeout=timeout(0.1))
        assert not done
        first.cancel()
        await asyncio.wait([first])
        # The other one is neither cancelled along nor forgotten.
        done, _ = await asyncio.wait([second], timeout=timeout(0.1))
        assert not done
        assert await pair.recv_exactly(len(data)) == data
        await asyncio.wait_for(asyncio.shield(second), timeout())
    finally:
        second.cancel()


# -- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("peer_reads", [True, False], ids=["peer reads", "peer stalls"])
async def test_close_transport_sends_what_is_buffered_or_aborts_at_close_timeout(
    open_pair: OpenPair, peer_reads: bool
) -> None:
    close_timeout = timeout(0.5)
    pair = await open_pair(close_timeout=close_timeout, **FLOW)
    data = fill(pair, 256 * KiB)
    started = time.monotonic()
    pair.stream.close_transport(pair.transport)
    if peer_reads:
        assert await pair.read_to_end() == data
        await pair.wait_closed(timeout())
    else:
        await pair.wait_closed(close_timeout + timeout(1))
        assert time.monotonic() - started >= close_timeout * 0.9
        assert len(await pair.read_until_gone()) < len(data)
    assert not pair.stream.timed_out  # close_timeout is not a read or drain deadline


async def test_linger_delivers_the_answer_then_reads_and_drops_what_follows(
    open_pair: OpenPair,
) -> None:
    pair = await open_pair(max_header_bytes=1024, close_timeout=timeout(5), peer_sndbuf=16 * KiB)
    stream = pair.stream
    await pair.send(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 16 * KiB)
    with pytest.raises(tether.PayloadTooBig):
        await asyncio.wait_for(stream.read_head(parse_request), timeout())
    pair.transport.write(ANSWER)
    stream.close_transport(pair.transport, linger=True)
    # The answer, then a FIN (no reset, although most of the request was
    # never read: RFC 7230 §6.6).
    assert await pair.read_to_end() == ANSWER
    assert not stream.closed_future().done()
    # What the peer still sends is read and dropped: 4 MiB do not fit in the
    # socket buffers, nor are they kept.
    await pair.send(b"b" * 4 * MiB)
    assert len(stream._head) == 0
    # Closed as soon as the peer closes too, not at close_timeout.
    pair.peer.close()
    await pair.wait_closed(timeout())


async def test_linger_ends_at_close_timeout_when_the_peer_stays(open_pair: OpenPair) -> None:
    close_timeout = timeout(0.3)
    pair = await open_pair(close_timeout=close_timeout)
    stream = pair.stream
    await pair.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(stream.read_head(parse_request), timeout()) is not None
    pair.transport.write(ANSWER)
    started = time.monotonic()
    stream.close_transport(pair.transport, linger=True)
    assert await pair.read_to_end() == ANSWER
    await pair.wait_closed(close_timeout + timeout(1))
    assert time.monotonic() - started >= close_timeout * 0.9


async def test_closed_future_is_shared_and_done_once_tcp_is_closed(open_pair: OpenPair) -> None:
    pair = await open_pair()
    closed = pair.stream.closed_future()
    assert pair.stream.closed_future() is closed
    assert not closed.done()
    pair.peer.close()
    await asyncio.wait_for(asyncio.shield(closed), timeout())
    # Asked for only once the connection is gone: done already.
    late = await open_pair()
    late.peer.close()
    assert await asyncio.wait_for(late.stream.read_head(parse_request), timeout()) is None
    assert late.stream.closed_future().done()
