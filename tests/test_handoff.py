"""The ``route`` hook of tether.serve, Connection.detach and
Server.handle_socket(initial=): a connection handed, head already read, to a
server in another process is answered as if it had come there directly.

Server A (this process) hands every request whose path starts with ``/b`` to
server B (tests/handoff_peer.py, its own process) over a Unix datagram
socketpair; both answer with tests/handoff_app.py's handlers, under their
names. Runs with the C speedups and, under TETHER_NO_SPEEDUPS=1, without.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tether
from handoff_app import make_handlers
from helpers import repo_root, timeout
from tether.protocol.http import Request

PEER = Path(__file__).with_name("handoff_peer.py")


@dataclass
class Pair:
    """Server A (here) and the process of server B, and what A handed over."""

    a: tether.Server
    peer: subprocess.Popen[str]
    handed: list[int] = field(default_factory=list)  # len(initial) of each

    def peer_line(self) -> str:
        assert self.peer.stdout is not None
        return self.peer.stdout.readline().strip()


async def _peer_line(pair: Pair) -> str:
    return await asyncio.wait_for(asyncio.to_thread(pair.peer_line), timeout(5))


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(repo_root() / "src"), str(repo_root() / "tests"), env.get("PYTHONPATH", "")]
    )
    peer = subprocess.Popen(
        [sys.executable, str(PEER), str(theirs.fileno()), "B"],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    theirs.close()
    handed: list[int] = []

    async def route(connection: tether.Connection, request: Request) -> bool:
        if not request.path.startswith("/b"):
            return False
        sock, data = await connection.detach()
        handed.append(len(data))
        socket.send_fds(ours, [data], [sock.fileno()])
        sock.close()
        return True

    handler, http_handler = make_handlers("A")
    server = await tether.serve(
        handler, "127.0.0.1", 0, http_handler=http_handler, route=route, close_timeout=timeout(1)
    )
    result = Pair(server, peer, handed)
    try:
        assert await _peer_line(result) == "ready"
        yield result
    finally:
        server.close()
        await server.wait_closed()
        assert peer.stdin is not None
        peer.stdin.close()
        try:
            peer.wait(timeout(5))
        finally:
            if peer.poll() is None:
                os.kill(peer.pid, 9)
                peer.wait()
        ours.close()


async def _exchange(port: int, data: bytes, answers: int) -> list[bytes]:
    """Send ``data`` on one connection; read ``answers`` HTTP responses
    (each with a Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        responses = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(5))
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await asyncio.wait_for(reader.readexactly(length), timeout(5))
            responses.append(head + body)
        return responses
    finally:
        writer.close()


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _without_server(response: bytes) -> bytes:
    """The response with its X-Served-By line blanked (the one difference)."""
    lines = [
        b"X-Served-By: ?" if line.startswith(b"X-Served-By") else line
        for line in response.split(b"\r\n")
    ]
    return b"\r\n".join(lines)


async def test_post_with_body_is_answered_by_the_other_process(pair: Pair) -> None:
    body = b"x" * 3000
    [direct] = await _exchange(pair.a.port, _request("POST", "/a", body), 1)
    [handed] = await _exchange(pair.a.port, _request("POST", "/b", body), 1)
    assert b"X-Served-By: A" in direct
    assert b"X-Served-By: B" in handed
    assert handed.endswith(b"POST /b 3000 " + body)
    assert _without_server(handed).replace(b"/b", b"/a") == _without_server(direct)
    assert await _peer_line(pair) == f"initial {pair.handed[0]}"


async def test_keep_alive_second_request_is_handed_on(pair: Pair) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.a.port)
    try:
        answers = []
        for path in ("/a/1", "/b/2", "/b/3"):  # one connection, one request at a time
            writer.write(_request("GET", path))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(5))
            answers.append(head + await reader.readexactly(len(f"GET {path} 0 ")))
    finally:
        writer.close()
    assert [b"X-Served-By: A" in answers[0], b"X-Served-By: B" in answers[1]] == [True, True]
    assert answers[2].endswith(b"GET /b/3 0 ") and b"X-Served-By: B" in answers[2]
    assert len(pair.handed) == 1  # B kept it: it has no route of its own


async def test_pipelined_requests_travel_with_the_head(pair: Pair) -> None:
    # Both requests in one write: the second is read-ahead, and goes along.
    data = _request("POST", "/b/1", b"one") + _request("GET", "/b/2")
    first, second = await _exchange(pair.a.port, data, 2)
    assert first.endswith(b"POST /b/1 3 one") and second.endswith(b"GET /b/2 0 ")
    assert b"X-Served-By: B" in first and b"X-Served-By: B" in second
    assert pair.handed[0] <= pair.a.limits.max_header_bytes


async def test_websocket_upgrade_is_handed_over(pair: Pair) -> None:
    async with tether.connect(f"ws://127.0.0.1:{pair.a.port}/a") as direct:
        await direct.send("hi")
        assert await asyncio.wait_for(direct.recv(), timeout(5)) == "A:hi"
    async with tether.connect(f"ws://127.0.0.1:{pair.a.port}/b") as handed:
        for n in range(3):
            await handed.send(f"hi {n}")
            assert await asyncio.wait_for(handed.recv(), timeout(5)) == f"B:hi {n}"
    assert len(pair.handed) == 1


async def test_bytes_handed_are_bounded_by_max_header_bytes(pair: Pair) -> None:
    limit = pair.a.limits.max_header_bytes
    # A head just under the limit followed by far more than the limit:
    # reading stops at the limit, so at most that much is handed over.
    padding = "a" * (limit - 200)
    head = f"POST /b HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nContent-Length: 5\r\n\r\n"
    data = head.encode() + b"hello" + _request("GET", "/b/2") * 50
    first, *rest = await _exchange(pair.a.port, data, 51)
    assert first.endswith(b"POST /b 5 hello") and len(rest) == 50
    assert 0 < pair.handed[0] <= limit


async def test_handle_socket_refuses_initial_past_the_head_limit() -> None:
    handler, http_handler = make_handlers("C")
    server = tether.Server(handler, http_handler=http_handler)
    one, two = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="max_header_bytes"):
            await server.handle_socket(one, initial=b"x" * (server.limits.max_header_bytes + 1))
    finally:
        one.close()
        two.close()


async def test_handle_socket_serves_initial_bytes_first() -> None:
    handler, http_handler = make_handlers("C")
    server = tether.Server(handler, http_handler=http_handler)
    one, two = socket.socketpair()
    try:
        request = _request("POST", "/x", b"body")
        # Half of the request arrived "elsewhere", the rest comes on the socket.
        await server.handle_socket(one, initial=request[:20])
        two.sendall(request[20:])
        two.setblocking(False)
        loop = asyncio.get_running_loop()
        answer = b""
        while not answer.endswith(b"POST /x 4 body"):
            chunk = await asyncio.wait_for(loop.sock_recv(two, 4096), timeout(5))
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK")
    finally:
        server.close()
        await server.wait_closed()
        two.close()


async def _detach_and_adopt_in_one_loop() -> list[bytes]:
    """Server A hands /b requests to server B in the same loop; the answers."""
    handler_b, http_b = make_handlers("B")
    b = tether.Server(handler_b, http_handler=http_b)

    async def route(connection: tether.Connection, request: Request) -> bool:
        if not request.path.startswith("/b"):
            return False
        sock, data = await connection.detach()
        await b.handle_socket(sock, initial=data)
        return True

    handler_a, http_a = make_handlers("A")
    try:
        async with tether.serve(handler_a, "127.0.0.1", 0, http_handler=http_a, route=route) as a:
            data = _request("GET", "/a") + _request("POST", "/b", b"hi") + _request("GET", "/b2")
            answers = await _exchange(a.port, data, 3)
            async with tether.connect(f"ws://127.0.0.1:{a.port}/b") as client:
                await client.send("x")
                answers.append(str(await asyncio.wait_for(client.recv(), timeout(5))).encode())
            return answers
    finally:
        b.close()
        await b.wait_closed()


def test_detach_and_handle_socket_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    first, second, third, message = uvloop.run(_detach_and_adopt_in_one_loop())
    assert b"X-Served-By: A" in first and first.endswith(b"GET /a 0 ")
    assert b"X-Served-By: B" in second and second.endswith(b"POST /b 2 hi")
    assert b"X-Served-By: B" in third and third.endswith(b"GET /b2 0 ")
    assert message == b"B:x"


async def test_a_tls_connection_cannot_be_detached(certificate: tuple[Path, Path]) -> None:
    # Its TLS state lives in this process: the socket alone would hand over
    # bytes nobody else can decrypt. detach() refuses, and the request is
    # answered here as usual.
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    refused: list[BaseException] = []

    async def route(connection: tether.Connection, request: Request) -> bool:
        with pytest.raises(RuntimeError, match="TLS") as caught:
            await connection.detach()
        refused.append(caught.value)
        return False

    handler, http_handler = make_handlers("A")
    async with tether.serve(
        handler, "127.0.0.1", 0, http_handler=http_handler, route=route, ssl=server_ctx
    ) as server:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        async with tether.connect(f"wss://localhost:{server.port}/b", ssl=client_ctx) as client:
            await client.send("x")
            assert await asyncio.wait_for(client.recv(), timeout(5)) == "A:x"
    assert len(refused) == 1
