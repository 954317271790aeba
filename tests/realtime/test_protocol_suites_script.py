"""scripts/protocol_suites.py: the servers it runs the official suites against
serve what the suites' READMEs ask for, and it reads mocha's summary right.

The suites themselves are not in this repository (nor on npm), so CI cannot
run them; these tests keep the script from rotting between manual runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator
from types import ModuleType

import pytest

from helpers import repo_root, timeout
from realtime.sio_helpers import open_polling, open_websocket, sio_connect


def load_script() -> ModuleType:
    path = repo_root() / "scripts" / "protocol_suites.py"
    spec = importlib.util.spec_from_file_location("protocol_suites", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def suite_server(code: str, compression: str = "off") -> AsyncIterator[int]:
    """Run one of the script's servers on 127.0.0.1, port 0; yield its port."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, compression, "0", "127.0.0.1", stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout(10))
        word, port = line.decode().split()
        assert word == "ready"
        yield int(port)
    finally:
        process.kill()
        await process.wait()


async def test_the_socketio_server_is_the_one_the_suite_expects() -> None:
    script = load_script()
    async with suite_server(script.SOCKETIO_SERVER) as port:
        ws, _ = await sio_connect(port, auth={"token": "123"})
        assert await ws.recv() == '42["auth",{"token":"123"}]'
        await ws.send('42["message",1,"2",{"3":[true]}]')
        assert await ws.recv() == '42["message-back",1,"2",{"3":[true]}]'
        await ws.send('421["message-with-ack",1,"2"]')
        assert await ws.recv() == '431[1,"2"]'
        await ws.send("40/custom,")
        assert (await ws.recv_text()).startswith('40/custom,{"sid":')
        assert await ws.recv() == '42/custom,["auth",{}]'
        await ws.close()
        _, handshake = await open_polling(port)
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (300, 200)
        assert handshake["maxPayload"] == 1_000_000


@pytest.mark.parametrize("compression", ["off", "deflate"])
async def test_the_engineio_server_echoes_at_the_suites_path(compression: str) -> None:
    script = load_script()
    async with suite_server(script.ENGINEIO_SERVER, compression) as port:
        _, handshake = await open_polling(port, path="/engine.io/")
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (300, 200)
        ws = await open_websocket(port, path="/engine.io/", compression="deflate")
        response = ws.connection.response
        assert response is not None
        negotiated = any(name.lower() == "sec-websocket-extensions" for name, _ in response.headers)
        assert negotiated is (compression == "deflate")
        assert (await ws.recv_text()).startswith("0{")
        await ws.send("4hello")
        assert await ws.recv() == "4hello"
        await ws.close()


def test_mocha_summaries_are_read() -> None:
    script = load_script()
    output = """
  Engine.IO protocol
    ✔ successfully opens a session

  30 passing (8s)
  2 failing

  1) Socket.IO protocol
       connect
         should allow connection to the main namespace:

      AssertionError: expected '2' to deeply equal '42["auth",{}]'

  2) Engine.IO protocol
       upgrade
         should ignore HTTP requests with same sid after upgrade:
     Error: Timeout of 2000ms exceeded.
"""
    passing, failing, titles = script.summary(output)
    assert (passing, failing) == (30, 2)
    assert titles == [
        "Socket.IO protocol / connect / should allow connection to the main namespace",
        "Engine.IO protocol / upgrade / should ignore HTTP requests with same sid after upgrade",
    ]
    assert script.summary("npm ERR! missing script: test") == (0, 0, [])
