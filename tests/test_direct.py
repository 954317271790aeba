"""Writes past the transport (tether._direct): which transports, partial
writes, a full socket buffer, errors, and order on a real uvloop server."""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest

import tether
from helpers import raw_upgrade, timeout
from tether import _direct
from tether.protocol import connection as core
from tether.protocol.connection import encode_broadcast_frame

uvloop = pytest.importorskip("uvloop")
# The module (tether.broadcast is also the function, re-exported by the package).
tether_broadcast = importlib.import_module("tether.broadcast")

SendFn = Callable[[int, "bytes | memoryview"], int]


def _senders() -> list[tuple[str, SendFn]]:
    found: list[tuple[str, SendFn]] = [("os.write", _direct._write_py)]
    try:
        from tether import _sendnow
    except ImportError:
        return found
    return [*found, ("send(2)", _sendnow.send)]


class RecordingTransport:
    """What send_now hands the transport: the bytes the kernel did not take."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes | memoryview) -> None:
        self.written.append(bytes(data))


@pytest.fixture(params=_senders(), ids=lambda pair: pair[0])
def sender(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[SendFn]:
    _, send = request.param
    monkeypatch.setattr(_direct, "_send", send)
    yield send


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _read_all(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(timeout())
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "closed early"
        data += chunk
    return bytes(data)


def _split_between(data: bytes, written: list[bytes]) -> int:
    """How many bytes of ``data`` went to the socket, checking that the
    transport got exactly the rest, in one write."""
    (rest,) = written
    assert 0 < len(rest) < len(data)
    sent = len(data) - len(rest)
    assert data[sent:] == rest
    return sent


def test_what_the_socket_takes_goes_now_and_the_rest_to_the_transport(
    sender: SendFn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    data = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    transport = RecordingTransport()
    _direct.send_now(a.fileno(), transport, data)  # type: ignore[arg-type]
    sent = _split_between(data, transport.written)
    assert _read_all(b, sent) == data[:sent]


def test_a_full_socket_buffer_hands_everything_to_the_transport(
    sender: SendFn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    with pytest.raises(BlockingIOError):
        while True:
            a.send(b"x" * 65536)
    transport = RecordingTransport()
    _direct.send_now(a.fileno(), transport, b"frame")  # type: ignore[arg-type]
    assert transport.written == [b"frame"]


def test_an_error_is_left_to_the_transport_to_report(
    sender: SendFn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    b.close()  # the peer is gone: EPIPE (and no SIGPIPE, or this process dies)
    transport = RecordingTransport()
    _direct.send_now(a.fileno(), transport, b"frame")  # type: ignore[arg-type]
    assert transport.written == [b"frame"]


def test_the_c_send_is_in_use_unless_turned_off() -> None:
    if os.environ.get("TETHER_NO_SPEEDUPS", "") not in ("", "0"):
        assert not _direct.HAVE_SENDNOW
    elif os.environ.get("TETHER_REQUIRE_SPEEDUPS") == "1":
        assert _direct.HAVE_SENDNOW, "tether._sendnow did not import; is a compiler installed?"


async def _server_fds() -> list[int]:
    """The direct-write descriptor of a server connection on this loop."""
    accepted: asyncio.Queue[tether.Connection] = asyncio.Queue()

    async def handler(connection: tether.Connection) -> None:
        await accepted.put(connection)
        await connection.wait_closed()

    async with (
        tether.serve(handler, "127.0.0.1", 0) as server,
        tether.connect(f"ws://127.0.0.1:{server.port}") as client,
    ):
        connection = await asyncio.wait_for(accepted.get(), timeout())
        assert connection.transport is not None and client.transport is not None
        return [_direct.direct_fd(connection.transport), _direct.direct_fd(client.transport)]


def test_uvloop_tcp_transports_are_written_past_and_others_are_not() -> None:
    server_fd, client_fd = uvloop.run(_server_fds())
    assert server_fd >= 0 and client_fd >= 0
    assert asyncio.run(_server_fds()) == [-1, -1]  # the stdlib's write sends at once itself


def test_a_tls_transport_is_never_written_past() -> None:
    class Fake:
        def get_extra_info(self, name: str) -> object:
            return {"sslcontext": ssl.create_default_context(), "socket": socket.socket()}[name]

    Fake.__module__, Fake.__name__ = "uvloop.loop", "TCPTransport"
    assert _direct.direct_fd(Fake()) == -1  # type: ignore[arg-type]


async def _broadcast_in_order(count: int, size: int) -> list[int]:
    """Broadcast numbered messages to a client that reads only once they are
    all sent: the first go straight to the socket, then the kernel's buffer
    fills (a partial write, the rest to the transport) and the rest queue
    behind, or are skipped past write_high_water. What arrives must be in order."""
    ready = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        ready.set()
        await connection.wait_closed()

    async with tether.serve(handler, "127.0.0.1", 0, max_message_size=size * 2) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        async with tether.connect(uri, max_message_size=size * 2) as client:
            await asyncio.wait_for(ready.wait(), timeout())
            body = b"x" * size
            sent = 0
            for number in range(count):
                sent += tether.broadcast(server.connections, number.to_bytes(4, "big") + body)
            assert sent >= 2  # the first writes at once, at least one more behind it
            received = []
            for _ in range(sent):
                message = await asyncio.wait_for(client.recv(), timeout())
                assert isinstance(message, bytes) and len(message) == size + 4
                received.append(int.from_bytes(message[:4], "big"))
            return received


def test_a_broadcast_written_past_the_transport_arrives_whole_and_in_order() -> None:
    received = uvloop.run(_broadcast_in_order(64, 256 * 1024))
    assert received == sorted(received)
    assert received[0] == 0


def _raw_client(
    port: int, expected: int, go: threading.Event, drained: threading.Event, result: list[bytes]
) -> None:
    """A blocking client: handshake, wait for ``go``, then read ``expected``
    bytes, setting ``drained`` once the first MiB is in (the server's socket
    has room again)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout()) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        raw_upgrade(sock)
        go.wait(timeout())
        data = bytearray()
        while len(data) < expected:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 1 << 20:
                drained.set()
        result.append(bytes(data))


async def _a_frame_never_overtakes_the_transports_buffer() -> tuple[bytes, bytes]:
    big = encode_broadcast_frame(b"a" * (8 << 20))
    small = encode_broadcast_frame(b"b" * 100)
    accepted = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        accepted.set()
        await connection.wait_closed()

    limits = {"write_high_water": 16 << 20, "write_low_water": 1 << 20}
    async with tether.serve(handler, "127.0.0.1", 0, **limits) as server:
        go = threading.Event()
        drained = threading.Event()
        result: list[bytes] = []
        reader = threading.Thread(
            target=_raw_client, args=(server.port, len(big) + len(small), go, drained, result)
        )
        reader.start()
        try:
            await asyncio.wait_for(accepted.wait(), timeout())
            (connection,) = server.connections
            # 8 MiB: more than the kernel takes at once while the client does
            # not read (its thread waits for go: reading during the write, it
            # could drain the socket between the direct write and the
            # transport's, as it once did under load); the rest waits in the
            # transport's buffer, which uvloop writes only when the loop polls.
            assert connection.write_shared(big)
            assert connection.transport is not None
            assert connection.transport.get_write_buffer_size() > 0
            go.set()
            # The client reads a MiB, so the socket has room again, while this
            # loop does not poll (a blocking wait, bounded): the small frame
            # must still go behind the big one's rest, not to the socket first.
            assert drained.wait(timeout())
            assert connection.write_shared(small)
        finally:
            go.set()  # (the client reads on, whatever failed above)
            await asyncio.to_thread(reader.join, timeout(2))
        return result[0], big + small


def test_a_frame_never_overtakes_what_the_transport_has_buffered() -> None:
    received, expected = uvloop.run(_a_frame_never_overtakes_the_transports_buffer())
    assert received == expected


# -- _sendnow.fanout: the C loop of tether.broadcast ----------------------------

needs_fanout = pytest.mark.skipif(_direct.fanout is None, reason="no C extension")


class FakeProtocol:
    def __init__(self) -> None:
        self.state = core.State.OPEN
        self.sending_fragmented = False


class FakeTransport(RecordingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.buffered = 0

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeConnection:
    """What fanout reads of a Connection, over one end of a socket pair."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._out: list[bytes] | tuple[()] = ()
        self.protocol: FakeProtocol | None = FakeProtocol()
        self.transport: FakeTransport | None = FakeTransport()


def _fanout(connections: list[FakeConnection], frame: bytes) -> tuple[int, list[object]]:
    fallen: list[object] = []

    def fallback(connection: object) -> bool:
        fallen.append(connection)
        return True

    assert _direct.fanout is not None
    sent, last = _direct.fanout(connections, frame, core.State.OPEN, fallback)
    assert last is (connections[-1] if sent else None)
    return sent, fallen


@needs_fanout
def test_fanout_writes_to_the_socket_when_every_condition_holds(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    connection = FakeConnection(a.fileno())
    assert _fanout([connection, connection], b"frame") == (2, [])
    assert _read_all(b, 10) == b"frameframe"
    assert connection.transport is not None and connection.transport.written == []


def _unknown_fd(c: FakeConnection) -> None:
    c._fd = -2


def _not_direct(c: FakeConnection) -> None:
    c._fd = -1


def _queued(c: FakeConnection) -> None:
    c._out = [b"queued"]


def _no_protocol(c: FakeConnection) -> None:
    c.protocol = None


def _closing_core(c: FakeConnection) -> None:
    assert c.protocol is not None
    c.protocol.state = core.State.CLOSING


def _mid_fragment(c: FakeConnection) -> None:
    assert c.protocol is not None
    c.protocol.sending_fragmented = True


def _no_transport(c: FakeConnection) -> None:
    c.transport = None


def _closing_transport(c: FakeConnection) -> None:
    assert c.transport is not None
    c.transport.closing = True


def _buffered(c: FakeConnection) -> None:
    assert c.transport is not None
    c.transport.buffered = 1


@needs_fanout
@pytest.mark.parametrize(
    "change",
    [
        _unknown_fd,
        _not_direct,
        _queued,
        _no_protocol,
        _closing_core,
        _mid_fragment,
        _no_transport,
        _closing_transport,
        _buffered,
    ],
)
def test_fanout_leaves_every_other_case_to_the_fallback(
    change: Callable[[FakeConnection], None], pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    direct, other = FakeConnection(a.fileno()), FakeConnection(a.fileno())
    change(other)
    assert _fanout([other, direct], b"frame") == (2, [other])
    assert _read_all(b, 5) == b"frame"  # the direct one only
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(1)


@needs_fanout
def test_fanout_counts_only_what_the_fallback_wrote_and_passes_its_errors_on() -> None:
    skipped = FakeConnection(-1)
    assert _direct.fanout is not None
    assert _direct.fanout([skipped], b"frame", core.State.OPEN, lambda c: False) == (0, None)
    with pytest.raises(ZeroDivisionError):
        _direct.fanout([skipped], b"frame", core.State.OPEN, lambda c: 1 / 0)


@needs_fanout
def test_fanout_hands_the_transport_what_the_socket_did_not_take(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    connection = FakeConnection(a.fileno())
    frame = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    assert _fanout([connection], frame) == (1, [])
    assert connection.transport is not None
    sent = _split_between(frame, connection.transport.written)
    rest = connection.transport.written[0]
    # The socket's buffer is full now: all of a frame goes to the transport
    # (a real one would hold the rest, and fanout would not be called for it).
    assert _fanout([connection], b"next") == (1, [])
    assert connection.transport.written == [rest, b"next"]
    assert _read_all(b, sent) == frame[:sent]


@needs_fanout
def test_fanout_leaves_an_error_to_the_transport_to_report(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    b.close()
    connection = FakeConnection(a.fileno())
    assert _fanout([connection], b"frame") == (1, [])
    assert connection.transport is not None and connection.transport.written == [b"frame"]


async def _second_broadcast_goes_direct() -> tuple[int, int, list[object]]:
    ready = asyncio.Event()
    count = 3

    async def handler(connection: tether.Connection) -> None:
        if len(server.connections) == count:
            ready.set()
        await connection.wait_closed()

    async with tether.serve(handler, "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        clients = [await tether.connect(uri) for _ in range(count)]
        try:
            await asyncio.wait_for(ready.wait(), timeout())
            fallen: list[object] = []
            original = tether_broadcast.send_frame

            def counting(*args: object, **kwargs: object) -> bool:
                fallen.append(args[0])
                return original(*args, **kwargs)  # type: ignore[arg-type]

            tether_broadcast.send_frame = counting  # type: ignore[assignment]
            try:
                first = tether.broadcast(server.connections, "one")
                fallen_first = len(fallen)
                fallen.clear()
                second = tether.broadcast(server.connections, "two")
            finally:
                tether_broadcast.send_frame = original
            for client in clients:
                assert await asyncio.wait_for(client.recv(), timeout()) == "one"
                assert await asyncio.wait_for(client.recv(), timeout()) == "two"
            assert first == second == count
            return fallen_first, server.metrics.broadcast_deliveries, fallen
        finally:
            for client in clients:
                await asyncio.wait_for(client.close(), timeout())


@needs_fanout
def test_a_connections_first_broadcast_finds_its_socket_and_the_next_go_straight_to_it() -> None:
    fallen_first, deliveries, fallen = uvloop.run(_second_broadcast_goes_direct())
    assert fallen_first == 3  # write_shared looked up each socket
    assert fallen == []  # then the C loop wrote to each
    assert deliveries == 6
