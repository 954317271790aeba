"""The C step of a read and of a send (tether._hotpath): where it must hand
over to the core, and that both builds behave the same.

Every behaviour test runs in both passes of scripts/test: with the C step, the
reads below start with whole messages it takes and end with something it
must leave to the core (a control frame, a fragment, an incomplete frame,
invalid UTF-8, a limit); without it (TETHER_NO_SPEEDUPS=1) the core parses
them all. The replies must be the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

import pytest

import tether
from conftest import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    OpenRaw,
    StartServer,
    frame_header,
    ws_uri,
)
from helpers import timeout
from tether import _websocket
from tether import connection as connection_module
from tether._shared import MIN_READ, SCRATCH_SIZE
from tether.protocol import speedups

OP_CONT = 0x0


def masked(opcode: int, payload: bytes, *, fin: bool = True, key: bytes = b"k3y!") -> bytes:
    """A client frame (§5.3), masked here rather than by the code under test."""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return frame_header(opcode, len(payload), fin=fin, key=key) + body


def one_read(client: object, *frames: bytes) -> None:
    """Write ``frames`` in one write, so that they reach the server in one read."""
    client.writer.transport.write(b"".join(frames))  # type: ignore[attr-defined]


class Echo(tether.MessageHandler):
    def __init__(self) -> None:
        self.seen: list[tether.Message] = []

    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        self.seen.append(message)
        connection.send_nowait(message)


async def echo_server(start_server: StartServer, callbacks: bool, **options: object) -> object:
    if callbacks:
        return await start_server(Echo(), compression=None, **options)
    return await start_server(compression=None, **options)


async def echo_pair(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool, **options: object
) -> tuple[Any, Any]:
    """An echo server (``callbacks``: a MessageHandler) and a raw client of it."""
    server = await echo_server(start_server, callbacks, **options)
    return server, await raw_client(server.port)  # type: ignore[attr-defined]


def listener_of(server: object) -> Echo | None:
    handler = server.handler  # type: ignore[attr-defined]
    return handler if isinstance(handler, Echo) else None


async def frames_to_close(client: object) -> tuple[list[tuple[int, bytes]], int]:
    """The frames the server sends up to its close frame, and its close code."""
    frames = []
    while True:
        opcode, payload = await asyncio.wait_for(client.read_frame(), timeout())  # type: ignore[attr-defined]
        if opcode == OP_CLOSE:
            return frames, struct.unpack("!H", payload[:2])[0]
        frames.append((opcode, payload))


async def assert_fails_after(client: object, handler: Echo | None, first: bytes, code: int) -> None:
    """The connection fails with ``code`` after the message ``first``: a
    listener has it, and its echo, if any, went out before the close frame.

    With the C step a listener gets (and answers) the messages ahead of the
    bad frame before the core reaches it; without it the core parses the whole
    read first and has failed the connection by the time they are delivered,
    so their replies raise ConnectionClosed (dropped). A coroutine handler
    runs after the read either way."""
    frames, got = await frames_to_close(client)
    assert got == code
    assert frames in ([], [(OP_TEXT, first)])
    if handler is not None:
        assert handler.seen == [first.decode()]


both_apis = pytest.mark.parametrize("callbacks", [False, True], ids=["coroutine", "callbacks"])


def test_the_c_step_is_in_use_unless_turned_off() -> None:
    if os.environ.get("TETHER_NO_SPEEDUPS", "") not in ("", "0"):
        assert _websocket._receive is None and connection_module._send_plain is None
    elif os.environ.get("TETHER_REQUIRE_SPEEDUPS") == "1":
        assert _websocket._receive is not None, "tether._hotpath did not import"
        assert connection_module._send_plain is not None


@both_apis
async def test_whole_messages_then_a_ping_in_one_read(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool
) -> None:
    _server, client = await echo_pair(start_server, raw_client, callbacks)
    one_read(
        client,
        masked(OP_TEXT, "héllo".encode()),
        masked(OP_BINARY, b"\x00\xff" * 100),
        masked(OP_PING, b"p"),
        masked(OP_TEXT, b"after"),
    )
    got = [await asyncio.wait_for(client.read_frame(), timeout()) for _ in range(4)]
    # The pong is the core's answer while parsing, so it may go out before
    # the echoes of the messages ahead of it; the messages keep their order.
    assert (OP_PONG, b"p") in got
    assert [f for f in got if f[0] != OP_PONG] == [
        (OP_TEXT, "héllo".encode()),
        (OP_BINARY, b"\x00\xff" * 100),
        (OP_TEXT, b"after"),
    ]


@both_apis
async def test_a_frame_cut_at_the_end_of_a_read_completes_with_the_next(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool
) -> None:
    _server, client = await echo_pair(start_server, raw_client, callbacks)
    cut = masked(OP_TEXT, b"x" * 300)
    one_read(client, masked(OP_TEXT, b"first"), cut[:7])
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"first")
    one_read(client, cut[7:], masked(OP_TEXT, b"last"))
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"x" * 300)
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"last")


@both_apis
async def test_a_fragmented_message_after_whole_ones(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool
) -> None:
    _server, client = await echo_pair(start_server, raw_client, callbacks)
    one_read(
        client,
        masked(OP_BINARY, b"one"),
        masked(OP_TEXT, b"fr", fin=False),
        masked(OP_CONT, b"ag"),
        masked(OP_BINARY, b"two"),
    )
    got = [await asyncio.wait_for(client.read_frame(), timeout()) for _ in range(3)]
    assert got == [(OP_BINARY, b"one"), (OP_TEXT, b"frag"), (OP_BINARY, b"two")]


BIG = speedups.ASSEMBLE_AT + 5000  # collected across reads by the core's assembler

AFTER_A_LARGE_FRAME = {
    # The core completes the frame it collects; the C step takes what follows.
    "binary": [masked(OP_BINARY, b"b" * BIG)],
    "text": [masked(OP_TEXT, b"t" * BIG)],
    # A fragment: the core then holds a message open, and the frames after
    # it in that read are the core's too (the C step must not take them).
    "first fragment": [masked(OP_TEXT, b"f" * BIG, fin=False), masked(OP_CONT, b"!")],
}


@pytest.mark.parametrize("case", list(AFTER_A_LARGE_FRAME))
@both_apis
async def test_whole_messages_after_a_large_frame_that_ends_in_the_read(
    start_server: StartServer,
    raw_client: OpenRaw,
    callbacks: bool,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    c_receive = _websocket._receive
    if c_receive is not None:

        def spy(*args: Any) -> tuple[int, int, int]:
            assert c_receive is not None
            pos, count, full = c_receive(*args)
            calls.append((args[3], count))
            return pos, count, full

        monkeypatch.setattr(_websocket, "_receive", spy)
    _server, client = await echo_pair(start_server, raw_client, callbacks)
    big, *rest = AFTER_A_LARGE_FRAME[case]
    # The first read ends inside the large frame, past its header: the core
    # starts collecting it. The echo of "first" says that read was made.
    one_read(client, masked(OP_TEXT, b"first"), big[:1000])
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"first")
    one_read(client, big[1000:], *rest, masked(OP_BINARY, b"two"), masked(OP_TEXT, b"three"))
    expected = {
        "binary": (OP_BINARY, b"b" * BIG),
        "text": (OP_TEXT, b"t" * BIG),
        "first fragment": (OP_TEXT, b"f" * BIG + b"!"),
    }[case]
    got = [await asyncio.wait_for(client.read_frame(), timeout()) for _ in range(3)]
    assert got == [expected, (OP_BINARY, b"two"), (OP_TEXT, b"three")]
    if c_receive is not None:
        # The second read: the C step was asked from where the large frame
        # ends, and took the two whole messages after it unless the core
        # held a fragmented message open there.
        tail = len(big) - 1000
        assert (tail, 0 if rest else 2) in calls


@both_apis
async def test_a_large_text_frame_of_invalid_utf8_that_ends_in_a_read_fails_it(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool
) -> None:
    # §8.1: judged by the core when it completes the frame; nothing after it
    # in that read is delivered.
    server, client = await echo_pair(start_server, raw_client, callbacks)
    big = masked(OP_TEXT, b"x" * (BIG - 3) + b"\xed\xa0\x80")
    one_read(client, masked(OP_TEXT, b"first"), big[:1000])
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"first")
    one_read(client, big[1000:], masked(OP_TEXT, b"after"))
    frames, code = await frames_to_close(client)
    assert (frames, code) == ([], 1007)
    handler = listener_of(server)
    if handler is not None:
        assert handler.seen == ["first"]


@pytest.mark.parametrize(
    ("max_queue_bytes", "queued", "size"),
    [
        (None, 0, SCRATCH_SIZE),  # the default (1 MiB): the whole scratch buffer
        (300_000, 0, 300_000),
        (300_000, 100_000, MIN_READ),  # 200,000 left, but a read brings at least MIN_READ
        (10 * SCRATCH_SIZE, 0, SCRATCH_SIZE),
        (10 * SCRATCH_SIZE, 9 * SCRATCH_SIZE + 1000, SCRATCH_SIZE - 1000),
        (1000, 0, MIN_READ),
    ],
)
async def test_a_read_brings_no_more_than_the_queue_has_room_for(
    start_server: StartServer,
    raw_client: OpenRaw,
    max_queue_bytes: int | None,
    queued: int,
    size: int,
) -> None:
    # What a read leaves held back is then bounded by max_queue_bytes and
    # MIN_READ, not by the scratch buffer's size (docs/security.md).
    options = {} if max_queue_bytes is None else {"max_queue_bytes": max_queue_bytes}
    server = await start_server(compression=None, **options)
    await raw_client(server.port)  # type: ignore[attr-defined]
    await asyncio.wait_for(wait_for_connection(server), timeout())
    connection = next(iter(server.connections))  # type: ignore[attr-defined]
    connection._queued_bytes = queued
    view = connection.get_buffer(-1)
    assert len(view) == size
    assert view.obj is connection._shared.scratch.obj  # the front of the loop's scratch buffer


async def wait_for_connection(server: object) -> None:
    while not server.connections:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)  # polls a condition; bounded by the caller's wait_for


FAILS_AFTER = {
    # §8.1: the C step unmasks a text payload in place to decode it; on
    # invalid UTF-8 it must put the mask back, or the core sees other bytes.
    "invalid utf-8": ([masked(OP_TEXT, b"ok \xed\xa0\x80")], {}, 1007),
    # On the wire (masked with 0x80) these bytes are valid ASCII; unmasked
    # they are not UTF-8. A C step that left them unmasked would make the
    # core unmask them twice and deliver "\x7f\x7f\x7f\x7f".
    "utf-8 judged unmasked": ([masked(OP_TEXT, b"\xff" * 4, key=b"\x80" * 4)], {}, 1007),
    # §5.1: a client must mask every frame.
    "unmasked frame": ([frame_header(OP_TEXT, 3) + b"bad"], {}, 1002),
    "over max_message_size": ([masked(OP_TEXT, b"b" * 101)], {"max_message_size": 4}, 1009),
}


@pytest.mark.parametrize("case", list(FAILS_AFTER))
@both_apis
async def test_a_bad_frame_after_a_good_one_in_one_read_fails_the_connection(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool, case: str
) -> None:
    frames, options, code = FAILS_AFTER[case]
    server, client = await echo_pair(start_server, raw_client, callbacks, **options)
    one_read(client, masked(OP_TEXT, b"fine"), *frames)
    await assert_fails_after(client, listener_of(server), b"fine", code)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
@both_apis
async def test_each_length_encoding_of_a_whole_frame(
    start_server: StartServer, raw_client: OpenRaw, callbacks: bool, length: int
) -> None:
    # §5.2: 7-bit, 16-bit and 64-bit lengths, at their edges.
    _server, client = await echo_pair(start_server, raw_client, callbacks)
    payload = bytes(i % 251 for i in range(length))
    one_read(client, masked(OP_BINARY, payload), masked(OP_TEXT, b"end"))
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_BINARY, payload)
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"end")


async def held_back_read(
    start_server: StartServer,
    raw_client: OpenRaw,
    messages: list[bytes],
    check: Callable[[tether.Connection], None],
    **options: object,
) -> list[tether.Message]:
    """Send ``messages`` in one read to a handler that does not read yet; once
    the server stops reading, ``check`` the connection, then let the handler
    read them all and return what it got."""
    go = asyncio.Event()
    received: list[tether.Message] = []

    async def slow(connection: tether.Connection) -> None:
        await go.wait()
        async for message in connection:
            received.append(message)
            if len(received) == len(messages):
                await connection.send("done")

    server = await start_server(slow, compression=None, **options)
    client = await raw_client(server.port)  # type: ignore[attr-defined]
    one_read(client, *(masked(OP_BINARY, m) for m in messages))
    connection = next(iter(server.connections))

    async def reading_paused() -> None:
        while connection.transport is not None and connection.transport.is_reading():
            await asyncio.sleep(0.01)  # polls a condition; bounded by the wait_for below

    await asyncio.wait_for(reading_paused(), timeout(5))
    check(connection)
    go.set()
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_TEXT, b"done")
    return received


async def test_a_read_past_max_queue_is_held_back_and_delivered_in_order(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    def check(connection: tether.Connection) -> None:
        # max_queue messages wait; the rest stays unparsed in the core.
        assert len(connection._messages) == 8
        assert connection.protocol is not None and connection.protocol.pending_bytes > 0

    messages = [b"m%d" % i for i in range(40)]
    got = await held_back_read(start_server, raw_client, messages, check, max_queue=8)
    assert got == messages


async def test_max_queue_bytes_holds_a_read_back(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    def check(connection: tether.Connection) -> None:
        # Parsing stops once the queue reaches max_queue_bytes (the message
        # that reaches it is kept whole): 3 messages of 1,000 bytes, not 10.
        assert len(connection._messages) == 3
        assert connection._queued_bytes == 3000

    messages = [bytes([i]) * 1000 for i in range(10)]
    got = await held_back_read(start_server, raw_client, messages, check, max_queue_bytes=2500)
    assert got == messages


async def test_a_listener_that_fails_closes_with_1011_and_later_messages_are_not_delivered(
    start_server: StartServer, raw_client: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    class Fails(Echo):
        def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
            super().on_message(connection, message)
            if message == "boom":
                raise RuntimeError("handler bug")

    handler = Fails()
    server = await start_server(handler, compression=None)
    client = await raw_client(server.port)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="tether.server"):
        one_read(client, masked(OP_TEXT, b"a"), masked(OP_TEXT, b"boom"), masked(OP_TEXT, b"z"))
        code, _ = await asyncio.wait_for(client.read_close(), timeout())
    assert code == 1011
    assert handler.seen[:2] == ["a", "boom"]
    assert any(
        "on_message failed" in r.getMessage() and r.exc_info and r.exc_info[0] is RuntimeError
        for r in caplog.records
    )


async def test_a_listener_whose_peer_stops_reading_gets_the_rest_later_in_order(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # pause_writing() during a callback (the transport's buffer went over its
    # high-water mark): the messages after it in the same read wait in the
    # queue and reach the listener after resume_writing(), in order.
    class PausesOnce(Echo):
        seen_while_paused: list[tether.Message] | None = None

        def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
            super().on_message(connection, message)
            if message == "pause":
                connection.pause_writing()
                asyncio.get_running_loop().call_soon(self.resume, connection)

        def resume(self, connection: tether.Connection) -> None:
            self.seen_while_paused = list(self.seen)
            connection.resume_writing()

    handler = PausesOnce()
    server = await start_server(handler, compression=None)
    client = await raw_client(server.port)  # type: ignore[attr-defined]
    words = [b"a", b"pause", b"b", b"c"]
    one_read(client, *(masked(OP_TEXT, w) for w in words))
    got = [await asyncio.wait_for(client.read_frame(), timeout()) for _ in words]
    assert got == [(OP_TEXT, w) for w in words]
    assert handler.seen_while_paused == ["a", "pause"]
    assert handler.seen == [w.decode() for w in words]


async def test_rate_limit_counts_messages_the_c_step_would_take(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await echo_server(start_server, False, max_messages_per_second=5)
    client = await raw_client(server.port)  # type: ignore[attr-defined]
    one_read(client, *(masked(OP_TEXT, b"m") for _ in range(50)))
    code, _ = await asyncio.wait_for(client.read_close(), timeout())
    assert code == 1008


async def test_messages_over_a_compressed_connection(start_server: StartServer) -> None:
    # permessage-deflate frames carry RSV1: the core's, in both builds.
    server = await start_server(Echo())
    async with tether.connect(ws_uri(server)) as client:
        assert client.protocol is not None and client.protocol.deflate is not None
        for message in ("text " * 50, b"bytes" * 50):
            await client.send(message)
            assert await asyncio.wait_for(client.recv(), timeout()) == message


# -- the send step ---------------------------------------------------------


@pytest.mark.parametrize("length", [0, 125, 126, 16383, 16384, 65536])
async def test_send_nowait_frames_each_length_as_the_core_does(
    start_server: StartServer, raw_client: OpenRaw, length: int
) -> None:
    class Sends(tether.MessageHandler):
        def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
            connection.send_nowait("é" * length)
            connection.send_nowait(bytes(length))

    server = await start_server(Sends(), compression=None)
    client = await raw_client(server.port)  # type: ignore[attr-defined]
    one_read(client, masked(OP_TEXT, b"go"))
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (
        OP_TEXT,
        ("é" * length).encode(),
    )
    assert await asyncio.wait_for(client.read_frame(), timeout()) == (OP_BINARY, bytes(length))


async def test_send_of_an_unencodable_str_raises_and_sends_nothing(
    start_server: StartServer,
) -> None:
    errors: list[BaseException] = []

    async def handler(connection: tether.Connection) -> None:
        async for message in connection:
            try:
                await connection.send("\ud800")
            except UnicodeEncodeError as exc:
                errors.append(exc)
            await connection.send(message)

    server = await start_server(handler, compression=None)
    async with tether.connect(ws_uri(server), compression=None) as client:
        await client.send("next")
        assert await asyncio.wait_for(client.recv(), timeout()) == "next"
    assert len(errors) == 1


async def test_send_after_close_raises_connection_closed(start_server: StartServer) -> None:
    raised: asyncio.Future[list[type[BaseException]]] = asyncio.get_running_loop().create_future()

    async def handler(connection: tether.Connection) -> None:
        await connection.close()
        errors: list[type[BaseException]] = []
        for message in ("late", b"late"):
            try:
                connection.send_nowait(message)
            except tether.ConnectionClosed as exc:
                errors.append(type(exc))
            try:
                await connection.send(message)
            except tether.ConnectionClosed as exc:
                errors.append(type(exc))
        raised.set_result(errors)

    server = await start_server(handler, compression=None)
    async with tether.connect(ws_uri(server), compression=None) as client:
        with pytest.raises(tether.ConnectionClosedOK):
            await asyncio.wait_for(client.recv(), timeout())
    assert await asyncio.wait_for(raised, timeout()) == [tether.ConnectionClosedOK] * 4


async def test_subclasses_of_str_and_bytes_are_sent_by_the_core(
    start_server: StartServer,
) -> None:
    class Text(str):
        pass

    class Data(bytes):
        pass

    async def handler(connection: tether.Connection) -> None:
        async for _ in connection:
            await connection.send(Text("sub"))
            connection.send_nowait(Data(b"sub"))

    server = await start_server(handler, compression=None)
    async with tether.connect(ws_uri(server), compression=None) as client:
        await client.send("go")
        assert await asyncio.wait_for(client.recv(), timeout()) == "sub"
        assert await asyncio.wait_for(client.recv(), timeout()) == b"sub"


async def test_a_client_connection_masks_what_it_sends(
    raw_client: OpenRaw, start_server: StartServer
) -> None:
    # The C send is for the server's unmasked frames only (§5.3): a client's
    # frames must stay masked, which the server checks (1002 otherwise).
    server = await start_server(compression=None)
    async with tether.connect(ws_uri(server), compression=None) as client:
        for message in ("text", b"bytes", "x" * 200):
            await client.send(message)
            assert await asyncio.wait_for(client.recv(), timeout()) == message
        client.send_nowait("nowait")
        assert await asyncio.wait_for(client.recv(), timeout()) == "nowait"
