"""The README's scale-out section runs as written (against a private redis-server)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from helpers import repo_root, timeout
from realtime.redis_helpers import RedisServer
from tether import realtime
from tether.realtime.client import Client

pytestmark = pytest.mark.redis

README_URL = "redis://127.0.0.1:6379/0"


def _section_blocks() -> list[str]:
    readme = (repo_root() / "README.md").read_text()
    section = readme.split("\n## Scale-out\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2 and all(README_URL in block for block in blocks)
    return blocks


async def test_readme_scale_out_section() -> None:
    server_code, emitter_code = _section_blocks()
    redis = RedisServer()
    redis.start()
    try:
        servers: list[realtime.Server] = []
        for _ in range(2):  # two processes' worth of servers sharing one Redis
            namespace: dict[str, Any] = {}
            exec(server_code.replace(README_URL, redis.url), namespace)
            servers.append(namespace["server"])
        async with (
            realtime.serve(servers[0], "127.0.0.1", 0) as one,
            realtime.serve(servers[1], "127.0.0.1", 0) as two,
        ):
            got: list[asyncio.Queue[str]] = []
            clients = []
            for port in (one.port, two.port):
                client = Client(reconnection=False)
                queue: asyncio.Queue[str] = asyncio.Queue()
                client.on("news", queue.put_nowait)
                await asyncio.wait_for(client.connect(f"http://127.0.0.1:{port}"), timeout(3))
                clients.append(client)
                got.append(queue)
            for server in servers:
                for socket in list(server.sockets.values()):
                    await socket.join("lobby")
            # The README's emitter, from a "process" that serves nothing.
            wrapped = "async def main():\n" + "".join(
                "    " + line + "\n"
                for line in emitter_code.replace(README_URL, redis.url).splitlines()
            )
            namespace = {}
            exec(wrapped, namespace)
            await asyncio.wait_for(namespace["main"](), timeout(3))
            for queue in got:
                assert await asyncio.wait_for(queue.get(), timeout(3)) == "hello"
            for client in clients:
                await client.disconnect()
    finally:
        redis.stop()
