"""The README's chat server works as written, with a Socket.IO client nobody here wrote."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import socketio  # python-socketio, the client side

from helpers import repo_root, timeout
from tether import realtime

pytestmark = pytest.mark.interop


def _chat_server() -> realtime.Server:
    readme = (repo_root() / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    source = next(block for block in blocks if "realtime.Server(" in block)
    # Everything but the last line, which would serve forever on port 8000.
    body, last = source.rstrip().rsplit("\n", 1)
    assert last == 'asyncio.run(realtime.serve(server, "127.0.0.1", 8000))'
    namespace: dict[str, Any] = {}
    exec(compile(body, "README.md", "exec"), namespace)
    server = namespace["server"]
    assert isinstance(server, realtime.Server)
    return server


async def test_readme_chat_rooms() -> None:
    server = _chat_server()
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        url = f"http://127.0.0.1:{http.port}"
        said: dict[str, asyncio.Queue[tuple[Any, ...]]] = {}
        clients = {}
        for name in ("ann", "bob", "cid"):
            client = socketio.AsyncClient(reconnection=False)
            said[name] = queue = asyncio.Queue()
            client.on("said", lambda *args, q=queue: q.put_nowait(args))
            await client.connect(url, wait_timeout=timeout(5))
            clients[name] = client
        try:
            assert await clients["ann"].call("join", "lobby", timeout=timeout(5)) == "lobby"
            assert await clients["bob"].call("join", "lobby", timeout=timeout(5)) == "lobby"
            assert await clients["cid"].call("join", "attic", timeout=timeout(5)) == "attic"
            await clients["ann"].emit("say", "hello")
            for name in ("ann", "bob"):
                who, text, *_offset = await asyncio.wait_for(said[name].get(), timeout(5))
                assert (who, text) == (clients["ann"].get_sid(), "hello")
            # cid is in another room: a message there arrives, the lobby's did not.
            await clients["cid"].emit("say", "up here")
            who, text, *_ = await asyncio.wait_for(said["cid"].get(), timeout(5))
            assert text == "up here"
            assert said["ann"].empty() and said["bob"].empty()
        finally:
            for client in clients.values():
                await client.disconnect()
