"""The demos on one port: routing, static files, the command line."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys

import pytest

import tether
from helpers import repo_root, timeout
from realtime.sio_helpers import http_request
from tether.demo import app
from tether.exceptions import InvalidStatus


async def test_one_port_serves_pages_client_engine_and_websockets() -> None:
    async with app.running("127.0.0.1", 0) as server:
        port = server.port
        index = await http_request(port, "GET", "/")
        assert index.status == 200 and b'href="/chat/"' in index.body
        for page in ("/chat/", "/ticker/", "/game/", "/common.css", "/game/game.js"):
            assert (await http_request(port, "GET", page)).status == 200, page
        moved = await http_request(port, "GET", "/chat")
        assert moved.status == 308 and moved.headers["location"] == "/chat/"
        assert (await http_request(port, "GET", "/nothing")).status == 404
        if app.find_client_dist() is not None:
            client = await http_request(port, "GET", "/vendor/socket.io.esm.min.js")
            assert client.status == 200 and "javascript" in client.headers["content-type"]
        opened = await http_request(port, "GET", "/socket.io/?EIO=4&transport=polling")
        assert opened.status == 200 and opened.text.startswith("0{")
        async with tether.connect(f"ws://127.0.0.1:{port}/ticker/ws") as ticker:
            assert json.loads(await asyncio.wait_for(ticker.recv(), timeout(2)))["type"] == "hello"
        async with tether.connect(f"ws://127.0.0.1:{port}/game/ws") as game:
            assert json.loads(await asyncio.wait_for(game.recv(), timeout(2)))["type"] == "welcome"
        with pytest.raises(InvalidStatus):
            await tether.connect(f"ws://127.0.0.1:{port}/elsewhere")


def test_redis_adapter_is_wired() -> None:
    adapter = app._adapter("redis://127.0.0.1:1/0")  # made, not connected
    assert type(adapter).__name__ == "RedisAdapter"
    assert app._adapter(None) is None


async def test_the_demo_command_serves_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether",
        "demo",
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
        cwd=repo_root(),
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), timeout(10))
        match = re.search(rb"tether demos on http://127\.0\.0\.1:(\d+)/ \((\w+)\)", line)
        assert match is not None, line
        # --loop auto: uvloop when it is installed.
        assert match.group(2) == (b"uvloop" if importlib.util.find_spec("uvloop") else b"asyncio")
        index = await http_request(int(match.group(1)), "GET", "/")
        assert index.status == 200
        process.send_signal(2)  # SIGINT: a clean stop
        assert await asyncio.wait_for(process.wait(), timeout(10)) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
