"""``realtime.serve``: the Engine.IO endpoint, static files on the same port,
other paths, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

import tether
from helpers import timeout
from realtime.conftest import StartSio
from realtime.sio_helpers import (
    eventually,
    http_request,
    open_polling,
    open_websocket,
    poll,
    post,
    running,
    sio_connect,
)
from tether import realtime
from tether.realtime import Socket


@pytest.fixture
def public(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>chat</h1>")
    (root / "js" / "app.js").write_text("console.log(1)")
    (root / "js" / "index.html").write_text("js index")
    (tmp_path / "secret.txt").write_text("do not serve")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    return root


async def test_static_files(start_sio: StartSio, public: Path) -> None:
    sio = await start_sio(static_files={"/": str(public)})
    index = await http_request(sio.port, "GET", "/")
    assert (index.status, index.body) == (200, b"<h1>chat</h1>")
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    script = await http_request(sio.port, "GET", "/js/app.js?v=1")
    assert (script.status, script.body) == (200, b"console.log(1)")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await http_request(sio.port, "GET", "/js/")).body == b"js index"
    head = await http_request(sio.port, "HEAD", "/index.html")
    assert head.status == 200
    # The Engine.IO endpoint is still there, on the same port.
    sid, _ = await open_polling(sio.port)
    assert sid in sio.server.engine.sessions


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/missing.html"),
        ("GET", "/../secret.txt"),
        ("GET", "/js/../../secret.txt"),
        ("GET", "/%2e%2e/secret.txt"),
        ("GET", "/js/%2E%2E/%2E%2E/secret.txt"),
        ("GET", "/link.txt"),  # a symlink out of the directory
        ("GET", "/index.html%00.js"),
        ("POST", "/index.html"),
    ],
)
async def test_static_files_refusals(
    start_sio: StartSio, public: Path, method: str, path: str
) -> None:
    sio = await start_sio(static_files={"/": str(public)})
    response = await http_request(sio.port, method, path)
    assert response.status == 404
    assert b"do not serve" not in response.body


async def test_static_files_under_a_prefix(start_sio: StartSio, public: Path) -> None:
    sio = await start_sio(static_files={"/static": str(public / "js")})
    assert (await http_request(sio.port, "GET", "/static/app.js")).status == 200
    assert (await http_request(sio.port, "GET", "/static")).body == b"js index"
    assert (await http_request(sio.port, "GET", "/app.js")).status == 404
    assert (await http_request(sio.port, "GET", "/staticapp.js")).status == 404


async def test_other_paths_are_not_found(start_sio: StartSio) -> None:
    sio = await start_sio()
    assert (await http_request(sio.port, "GET", "/")).status == 404
    assert (
        await http_request(sio.port, "GET", "/engine.io/?EIO=4&transport=polling")
    ).status == 404
    with pytest.raises(tether.InvalidStatus) as caught:
        await open_websocket(sio.port, path="/elsewhere/")
    assert caught.value.response.status == 404
    assert not sio.server.engine.sessions


async def test_custom_path(start_sio: StartSio) -> None:
    sio = await start_sio(path="/rt/")
    sid, _ = await open_polling(sio.port, path="/rt/")
    assert sid in sio.server.engine.sessions
    ws = await open_websocket(sio.port, path="/rt")
    assert (await ws.recv_text()).startswith("0{")
    await ws.close()
    assert (
        await http_request(sio.port, "GET", "/socket.io/?EIO=4&transport=polling")
    ).status == 404


@pytest.mark.parametrize(
    ("compression", "negotiated"),
    [({}, False), ({"compression": "deflate"}, True)],
    ids=["default-off", "deflate"],
)
async def test_compression_is_off_unless_asked(
    compression: dict[str, str], negotiated: bool
) -> None:
    # A browser always offers permessage-deflate; the realtime server takes it
    # only when asked (socket.io's perMessageDeflate defaults to false, too).
    async with running(realtime.Server(), **compression) as sio:
        ws = await open_websocket(sio.port, compression="deflate")
        response = ws.connection.response
        assert response is not None
        header = "sec-websocket-extensions"
        extensions = [value for name, value in response.headers if name.lower() == header]
        assert bool(extensions) is negotiated, extensions
        assert (await ws.recv_text()).startswith("0{")
        await ws.close()


async def test_graceful_shutdown(start_sio: StartSio) -> None:
    server = realtime.Server()
    reasons: asyncio.Queue[str] = asyncio.Queue()

    @server.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        reasons.put_nowait(reason)

    async with running(server) as sio:
        port = sio.port
        ws, _ = await sio_connect(port)
        sid, _ = await open_polling(port)
        await post(port, sid, "40")
        await poll(port, sid)
        get = asyncio.create_task(poll(port, sid))
        session = server.engine.sessions[sid]
        await eventually(lambda: session.writable)
    # Both clients were told the session closed; the handlers heard why.
    assert await ws.closed() == ["1"]
    assert await get == ["1"]
    got = [await asyncio.wait_for(reasons.get(), timeout(1)) for _ in range(2)]
    assert got == ["server shutting down"] * 2
    assert not server.engine.sessions
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout(1))


async def test_serve_as_a_coroutine_until_cancelled() -> None:
    server = realtime.Server()
    stopped: asyncio.Queue[str] = asyncio.Queue()
    server.on("disconnect", lambda socket, reason: stopped.put_nowait(reason))
    # Bound and listening before serving starts: connections wait in the backlog.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    task = asyncio.create_task(realtime.serve(server, sock=sock))
    ws, _ = await sio_connect(port)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancelling is a graceful shutdown too.
    assert await ws.closed() == ["1"]
    assert await asyncio.wait_for(stopped.get(), timeout(1)) == "server shutting down"
