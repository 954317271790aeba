"""tether.sync.connect against tether's server and the websockets package's.

Every test runs against both servers (``start_peer``), each in a thread of its
own; the client is used as a script would use it, from the test's thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tether
import tether.sync
from helpers import timeout
from sync.conftest import StartPeer
from tether.sync import loop as sync_loop


def test_echo_text_and_binary(start_peer: StartPeer) -> None:
    peer = start_peer()
    with tether.sync.connect(peer.uri("/echo")) as ws:
        assert ws.open
        ws.send("hello")
        assert ws.recv(timeout=timeout(2)) == "hello"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=timeout(2)) == b"\x00\xff"
        assert 0 <= ws.ping(timeout=timeout(2)) < timeout(2)
    assert ws.closed
    assert ws.close_code == 1000
    assert peer.close_code() == 1000


def test_large_message_both_ways(start_peer: StartPeer) -> None:
    size = 3 * 2**20
    # Random bytes do not compress: a deflated frame is a little larger.
    limit = size + 2**16
    peer = start_peer(max_size=limit)
    payload = os.urandom(size)
    uri = peer.uri("/echo")
    with tether.sync.connect(uri, max_message_size=limit, max_frame_size=limit) as ws:
        ws.send(payload)
        assert ws.recv(timeout=timeout(10)) == payload


def test_fragments_both_ways_and_iteration(start_peer: StartPeer) -> None:
    peer = start_peer()
    # The server sends "abc" in three frames, then "d", then closes cleanly:
    # iteration yields whole messages and ends without an exception.
    with tether.sync.connect(peer.uri("/fragments")) as ws:
        assert list(ws) == ["abc", "d"]
    assert ws.close_code == 1000
    # An iterable is sent as one fragmented message, read in the calling thread.
    with tether.sync.connect(peer.uri("/echo")) as ws:
        ws.send(part for part in ["x", "y", "z"])
        assert ws.recv(timeout=timeout(2)) == "xyz"
        ws.send([b"\x01", b"\x02"])
        assert ws.recv(timeout=timeout(2)) == b"\x01\x02"


def test_close_code_from_the_client(start_peer: StartPeer) -> None:
    peer = start_peer()
    ws = tether.sync.connect(peer.uri("/echo"))
    ws.close(4002, "done")
    assert ws.closed
    assert peer.close_code() == 4002
    with pytest.raises(tether.ConnectionClosed):
        ws.send("too late")


def test_close_code_from_the_server(start_peer: StartPeer) -> None:
    peer = start_peer()
    with tether.sync.connect(peer.uri("/close/4001")) as ws:
        with pytest.raises(tether.ConnectionClosedError) as caught:
            ws.recv(timeout=timeout(2))
        assert caught.value.code == 4001
        assert (ws.close_code, ws.close_reason) == (4001, "bye")
        # Iterating a connection closed with an error code raises too.
        with pytest.raises(tether.ConnectionClosedError):
            next(iter(ws))


def test_recv_timeout_keeps_the_message(start_peer: StartPeer) -> None:
    peer = start_peer()
    with tether.sync.connect(peer.uri("/echo")) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=timeout(0.05))
        ws.send("after the timeout")
        assert ws.recv(timeout=timeout(2)) == "after the timeout"


def test_recv_timeouts_racing_arrivals_lose_nothing(start_peer: StartPeer) -> None:
    # Each message is asked for, then polled for with recv(timeout=0) until it
    # comes: timeouts expire as it arrives, and each must leave it queued (a
    # timeout applied by the waiting thread, which abandons a call that may
    # have taken the message, fails this test).
    count = 1000
    peer = start_peer()
    timeouts = 0
    with tether.sync.connect(peer.uri("/echo")) as ws:
        for n in range(count):
            ws.send(str(n))
            deadline = time.monotonic() + timeout(5)
            while True:
                try:
                    message = ws.recv(timeout=0)
                except TimeoutError:
                    timeouts += 1
                    assert time.monotonic() < deadline, f"message {n} lost"
                    continue
                assert message == str(n)
                break
    assert timeouts > 0  # the race was run


@pytest.mark.parametrize("given_as", ["keyword", "limits"])
def test_message_over_the_limit_closes_with_1009(start_peer: StartPeer, given_as: str) -> None:
    # The limit as the asyncio client takes it: a keyword option, or limits=.
    options: dict[str, Any] = (
        {"max_message_size": 1000}
        if given_as == "keyword"
        else {"limits": tether.Limits(max_message_size=1000)}
    )
    peer = start_peer()
    uri = peer.uri("/big/5000")
    with (
        tether.sync.connect(uri, **options) as ws,
        pytest.raises(tether.ConnectionClosedError) as caught,
    ):
        ws.recv(timeout=timeout(2))
    assert caught.value.sent is not None and caught.value.sent.code == 1009
    assert peer.close_code() == 1009


def test_compression_is_negotiated(start_peer: StartPeer) -> None:
    peer = start_peer()
    text = "compressible " * 10_000
    with tether.sync.connect(peer.uri("/echo")) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        ws.send(text)
        assert ws.recv(timeout=timeout(2)) == text
    with tether.sync.connect(peer.uri("/echo"), compression=None) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


def test_tls(start_peer: StartPeer, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    peer = start_peer(tls=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    with tether.sync.connect(peer.uri("/echo"), ssl=client_context) as ws:
        ws.send("over TLS")
        assert ws.recv(timeout=timeout(2)) == "over TLS"
    # The same exception as the asyncio client's when the certificate is not trusted.
    with pytest.raises(ssl.SSLCertVerificationError):
        tether.sync.connect(peer.uri("/echo"), open_timeout=timeout(2))


def test_subprotocols_and_headers_are_passed_on(start_tether: StartPeer) -> None:
    peer = start_tether()
    uri = peer.uri("/echo")
    with tether.sync.connect(uri, extra_headers=[("X-Test", "1")], user_agent="sync") as ws:
        assert ws.request is not None
        assert ws.request.headers.get("X-Test") == "1"
        assert ws.request.headers.get("User-Agent") == "sync"
        assert ws.subprotocol is None
        assert ws.remote_address[1] == peer.port
        assert ws.local_address is not None
        assert "tether.sync.Connection" in repr(ws)


def test_one_thread_receives_while_another_sends(start_peer: StartPeer) -> None:
    peer = start_peer()
    count = 200
    received: list[object] = []
    with tether.sync.connect(peer.uri("/echo")) as ws:

        def receive() -> None:
            for _ in range(count):
                received.append(ws.recv(timeout=timeout(5)))

        reader = threading.Thread(target=receive)
        reader.start()
        for n in range(count):
            ws.send(str(n))
        reader.join(timeout(10))
        assert not reader.is_alive()
    assert received == [str(n) for n in range(count)]


def test_errors_are_the_asyncio_clients() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        tether.sync.connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(tether.InvalidURI):
        tether.sync.connect(f"http://127.0.0.1:{port}/")


def test_inside_a_running_loop_raises_instead_of_blocking(start_tether: StartPeer) -> None:
    uri = start_tether().uri("/echo")
    ws = tether.sync.connect(uri)

    async def misuse() -> None:
        with pytest.raises(tether.InvalidState, match="running event loop"):
            tether.sync.connect(uri)
        with pytest.raises(tether.InvalidState, match="running event loop"):
            ws.recv(timeout=timeout(1))

    asyncio.run(misuse())
    ws.close()


def test_the_loop_is_one_daemon_thread_shared_by_clients(start_tether: StartPeer) -> None:
    peer = start_tether()
    with (
        tether.sync.connect(peer.uri("/echo")) as first,
        tether.sync.connect(peer.uri("/echo")) as second,
    ):
        first.send("1")
        second.send("2")
        assert (first.recv(timeout=timeout(2)), second.recv(timeout=timeout(2))) == ("1", "2")
        thread = sync_loop.shared.thread
        assert thread is not None and thread.daemon and thread.is_alive()
        names = [t.name for t in threading.enumerate()].count("tether.sync")
        assert names == 1


def test_close_from_another_thread_ends_a_blocked_iteration(start_peer: StartPeer) -> None:
    peer = start_peer()
    ws = tether.sync.connect(peer.uri("/echo"))
    received: list[object] = []
    iterating = threading.Event()

    def read_all() -> None:
        iterating.set()
        received.extend(ws)  # blocked in recv() until the close

    reader = threading.Thread(target=read_all)
    reader.start()
    assert iterating.wait(timeout(2))
    ws.send("one")
    ws.close()
    reader.join(timeout(5))
    assert not reader.is_alive()
    assert received in ([], ["one"])  # the echo may come before the close frame or not
    assert ws.close_code == 1000 and peer.close_code() == 1000
