"""docs/deployment.md, run as written: its FastAPI and Starlette modules
served by its uvicorn command (a real uvicorn process on 127.0.0.1, port 0),
with a private redis-server for the FastAPI one, and its clients (tether's,
python-socketio's, the official socket.io-client's) reaching them on the
sub-path. The lifespan helper is wired, so no warning may be logged; the
unwired mount is tested in test_asgi.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from realtime.redis_helpers import redis_server
from realtime.server.deployment_doc import BLOCK, DOC, LoggedProcess, doc_block
from tether.realtime.adapters.redis import Emitter

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("starlette")
aiohttp = pytest.importorskip("aiohttp")
socketio = pytest.importorskip("socketio")

_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
_UNWIRED = "started by its first request"  # the warning of an app without lifespan


def at_port(source: str, port: int) -> str:
    """A documented block with its port 8000 replaced."""
    assert ":8000" in source or "--port 8000" in source
    return source.replace(":8000", f":{port}").replace("--port 8000", f"--port {port}")


@contextlib.asynccontextmanager
async def documented_uvicorn(module: str, command: str, tmp_path: Path) -> AsyncIterator[str]:
    """Write ``module`` (a documented app) to ``tmp_path`` and serve it with
    the documented uvicorn ``command`` on port 0; yield its base URL. On the
    way out, SIGTERM: the lifespan shutdown must complete cleanly."""
    name = module.splitlines()[0].removeprefix("# ")
    (tmp_path / name).write_text(module)
    args = shlex.split(command.replace("--port 8000", "--port 0"))
    assert args[0] == "uvicorn"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,  # the access log
        stderr=asyncio.subprocess.PIPE,
    )
    server = LoggedProcess(process, _LISTENING)
    try:
        port = await asyncio.wait_for(asyncio.shield(server.listening), timeout(20))
        yield f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout(10))
        await asyncio.wait_for(server.reader, timeout(5))
        # uvicorn ends by re-raising the SIGTERM it handled.
        assert process.returncode in (0, -signal.SIGTERM), server.log
        assert "Application shutdown complete" in server.log
        assert "Traceback" not in server.log, server.log
        assert _UNWIRED not in server.log  # the lifespan is wired: no warning
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        server.reader.cancel()


async def run_python_client(url: str, tmp_path: Path) -> str:
    """The documented tether client, as a program, against ``url``; its output."""
    port = int(url.rsplit(":", 1)[1])
    source = doc_block("python", "import asyncio")
    (tmp_path / "client.py").write_text(at_port(source, port))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "client.py", cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout(20))
    assert process.returncode == 0
    return out.decode()


async def python_socketio_client(url: str) -> Any:
    """python-socketio's client, default transports, on the documented path."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, socketio_path="/rt/socket.io", wait_timeout=timeout(5))
    return client


def official_client_script(url: str, tmp_path: Path) -> Path | None:
    """The documented socket.io-client block, with a line that prints the
    ``news`` events it gets, as an ES module next to node_modules; None
    without node or the client."""
    modules = repo_root() / "node_modules"
    if node_bin() is None or not (modules / "socket.io-client").is_dir():
        return None
    port = int(url.rsplit(":", 1)[1])
    source = at_port(doc_block("js", 'import { io } from "socket.io-client";'), port)
    source += 'socket.on("news", (value) => console.log("news", value));\n'
    script = tmp_path / "client.mjs"
    script.write_text(source)
    (tmp_path / "node_modules").symlink_to(modules)
    return script


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), timeout(10))
    assert line, "the client exited"
    return line.decode().strip()


@pytest.mark.redis
async def test_fastapi_mount_with_redis(tmp_path: Path) -> None:
    with redis_server() as redis:
        module = doc_block("python", "# main.py").replace("redis://127.0.0.1:6379/0", redis.url)
        command = doc_block("sh", "uvicorn main:app --host 127.0.0.1 --port 8000").strip()
        async with documented_uvicorn(module, command, tmp_path) as url:
            async with aiohttp.ClientSession() as http, http.get(url + "/health") as response:
                assert await response.json() == {"realtime": True}  # the lifespan started it
            # tether's client, as documented (polling, then the upgrade).
            assert (await run_python_client(url, tmp_path)).splitlines() == ["lobby"]
            # python-socketio's, and an Emitter reaching it through Redis.
            client = await python_socketio_client(url)
            news: asyncio.Queue[Any] = asyncio.Queue()
            client.on("news", news.put_nowait)
            try:
                assert await client.call("join", "lobby", timeout=timeout(3)) == "lobby"
                async with Emitter(redis.url) as emitter:
                    assert await emitter.to("lobby").emit("news", 1) == 1  # one node
                assert await asyncio.wait_for(news.get(), timeout(3)) == 1
            finally:
                await client.disconnect()
            await official_client_joins_and_hears(url, redis.url, tmp_path)


async def official_client_joins_and_hears(url: str, redis_url: str, tmp_path: Path) -> None:
    script = official_client_script(url, tmp_path)
    if script is None:
        return  # node or socket.io-client missing: scripts/test installs them
    process = await asyncio.create_subprocess_exec(
        node_bin() or "node", str(script), cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await read_line(process.stdout) == "joined lobby"
        async with Emitter(redis_url) as emitter:
            assert await emitter.to("lobby").emit("news", 2) == 1
        assert await read_line(process.stdout) == "news 2"
    finally:
        process.kill()
        await process.wait()


async def test_starlette_mount_in_memory(tmp_path: Path) -> None:
    module = doc_block("python", "# app.py")
    command = doc_block("sh", "uvicorn app:app --host 127.0.0.1 --port 8000").strip()
    async with documented_uvicorn(module, command, tmp_path) as url:
        async with aiohttp.ClientSession() as http, http.get(url + "/") as response:
            assert await response.text() == "hello"
        assert (await run_python_client(url, tmp_path)).splitlines() == ["lobby"]
        clients = [await python_socketio_client(url) for _ in range(2)]
        try:
            for client in clients:
                assert await client.call("join", "lobby", timeout=timeout(3)) == "lobby"
        finally:
            for client in clients:
                await client.disconnect()


def test_the_doc_blocks_are_the_ones_tested() -> None:
    # Every block of the page is run above, or in test_haproxy.py or
    # test_nginx.py, or is a command run there.
    blocks = BLOCK.findall(DOC.read_text())
    firsts = [(lang, source.splitlines()[0]) for lang, source in blocks]
    assert sorted(firsts) == sorted(
        [
            ("python", "# main.py"),
            ("sh", "uvicorn main:app --host 127.0.0.1 --port 8000"),
            ("js", 'import { io } from "socket.io-client";'),
            ("python", "import asyncio"),
            ("python", "# app.py"),
            ("sh", "uvicorn app:app --host 127.0.0.1 --port 8000"),
            ("python", "# node.py"),
            ("text", "# haproxy.cfg"),
            ("sh", "python node.py 8001 & python node.py 8002 & python node.py 8003 &"),
            ("sh", ".venv/bin/python -m pytest tests/realtime/server/test_haproxy.py"),
            ("text", "# nginx.conf (the http block)"),
        ]
    ), json.dumps(firsts)
