"""docs/deployment.md, "Behind a load balancer", run as written: its
haproxy.cfg (ports substituted) in a real HAProxy, in front of three of its
node.py processes on a private redis-server, all on 127.0.0.1, and 200
official socket.io-client clients in Node with default transports
(balancer_clients.mjs), connecting from 127.0.0.2 so that the address each
process logs can only have come from HAProxy's X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import timeout
from realtime.redis_helpers import redis_server
from realtime.server import balancer
from realtime.server.deployment_doc import LoggedProcess, doc_block

pytestmark = pytest.mark.redis

_NODES = "python node.py 8001 & python node.py 8002 & python node.py 8003 &"
# The page's commands: the test runs each node with port 0 (then writes its
# ports into the config), and haproxy with -db (foreground, logs to stderr).
_COMMANDS = _NODES + "\nhaproxy -f haproxy.cfg\n"


def haproxy_bin() -> str:
    return balancer.executable("haproxy", "scripts/test installs it")


def documented_config(listening: socket.socket, ports: list[int]) -> str:
    """The page's haproxy.cfg with these ports in place of 8001-8003, and
    ``listening`` (bound to port 0 and listening already, so clients never
    race HAProxy's startup) passed to it in place of 127.0.0.1:8000."""
    config = doc_block("text", "# haproxy.cfg")
    for documented, port in zip(("8001", "8002", "8003"), ports, strict=True):
        assert config.count(f"127.0.0.1:{documented}") == 1
        config = config.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{port}")
    assert config.count("bind 127.0.0.1:8000") == 1
    return config.replace("bind 127.0.0.1:8000", f"bind fd@{listening.fileno()}")


@contextlib.asynccontextmanager
async def documented_haproxy(
    ports: list[int], tmp_path: Path
) -> AsyncIterator[tuple[int, LoggedProcess]]:
    """HAProxy with the page's config; yields its port and its process."""
    executable = haproxy_bin()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(512)
        listening.set_inheritable(True)
        path = tmp_path / "haproxy.cfg"
        path.write_text(documented_config(listening, ports))
        fds = [listening.fileno()]
        check = await asyncio.create_subprocess_exec(
            executable,
            "-c",
            "-f",
            str(path),
            pass_fds=fds,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(check.communicate(), timeout(10))
        assert check.returncode == 0, out.decode()
        assert b"WARNING" not in out and b"ALERT" not in out, out.decode()  # a clean config
        process = await asyncio.create_subprocess_exec(
            executable, "-db", "-f", str(path), pass_fds=fds, stderr=asyncio.subprocess.PIPE
        )
        haproxy = LoggedProcess(process)
        try:
            yield listening.getsockname()[1], haproxy
        finally:
            await balancer.stop(process)
            haproxy.reader.cancel()


async def test_haproxy_recipe_200_default_clients(tmp_path: Path) -> None:
    haproxy_bin()
    assert doc_block("sh", _NODES) == _COMMANDS
    with redis_server() as redis:
        async with balancer.documented_nodes(redis.url, tmp_path) as nodes:
            ports = [node.listening.result() for node in nodes]
            async with documented_haproxy(ports, tmp_path) as (front, haproxy):
                summary = await balancer.run_clients(f"http://127.0.0.1:{front}")
            assert "ALERT" not in haproxy.log, haproxy.log
            placed = balancer.check_clients(summary, nodes)
            # roundrobin: the sessions are spread over the three processes, and
            # so are the room's members (the even-numbered clients), whose
            # answers came back to client 1's process.
            spread = Counter(placed)
            assert sorted(spread) == [0, 1, 2] and min(spread.values()) >= len(placed) // 6, spread
            assert {placed[i] for i in range(0, len(placed), 2)} == {0, 1, 2}
