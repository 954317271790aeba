"""docs/deployment.md, "Behind a load balancer", run as written: its
haproxy.cfg (ports substituted) in a real HAProxy, in front of three of its
node.py processes on a private redis-server, all on 127.0.0.1, and 200
official socket.io-client clients in Node with default transports
(haproxy_clients.mjs), connecting from 127.0.0.2 so that the address each
process logs can only have come from HAProxy's X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from realtime.redis_helpers import redis_server
from realtime.server.deployment_doc import LoggedProcess, doc_block

pytestmark = pytest.mark.redis

CLIENTS = 200
CLIENT_ADDRESS = "127.0.0.2"  # Linux routes all of 127.0.0.0/8 to loopback
SCRIPT = Path(__file__).with_name("haproxy_clients.mjs")
_SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
_CONNECTED = re.compile(r"connected (\S+) from \('([^']+)', (\d+)\)")
_NODES = "python node.py 8001 & python node.py 8002 & python node.py 8003 &"
# The page's commands: the test runs each node with port 0 (then writes its
# ports into the config), and haproxy with -db (foreground, logs to stderr).
_COMMANDS = _NODES + "\nhaproxy -f haproxy.cfg\n"


def haproxy_bin() -> str:
    executable = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if executable is None:
        pytest.skip("haproxy is not installed (scripts/test installs it)")
    return executable


async def stop(process: asyncio.subprocess.Process, wait: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``wait`` units."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout(wait))
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def documented_nodes(redis_url: str, tmp_path: Path) -> AsyncIterator[list[LoggedProcess]]:
    """The page's node.py, three times (port 0 in place of 8001-8003), on ``redis_url``."""
    module = doc_block("python", "# node.py")
    assert module.count("redis://127.0.0.1:6379/0") == 1
    (tmp_path / "node.py").write_text(module.replace("redis://127.0.0.1:6379/0", redis_url))
    assert doc_block("sh", _NODES) == _COMMANDS
    nodes: list[LoggedProcess] = []
    try:
        for _ in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "node.py", "0", cwd=tmp_path, stderr=asyncio.subprocess.PIPE
            )
            nodes.append(LoggedProcess(process, _SERVING))
        for node in nodes:
            await asyncio.wait_for(asyncio.shield(node.listening), timeout(20))
        yield nodes
    finally:
        for node in nodes:
            await stop(node.process)
            node.reader.cancel()


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
            await stop(process)
            haproxy.reader.cancel()


async def run_clients(url: str, tmp_path: Path) -> dict[str, Any]:
    config = {
        "url": url,
        "count": CLIENTS,
        "room": "lobby",
        "localAddress": CLIENT_ADDRESS,
        "timeout": round(timeout(15) * 1000),
    }
    process = await asyncio.create_subprocess_exec(
        node_bin() or "node",
        str(SCRIPT),
        json.dumps(config),
        cwd=repo_root(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout(30))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    summary: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return summary


async def test_haproxy_recipe_200_default_clients(tmp_path: Path) -> None:
    if node_bin() is None or not (repo_root() / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("node or socket.io-client missing (scripts/test installs them)")
    haproxy_bin()
    with redis_server() as redis:
        async with documented_nodes(redis.url, tmp_path) as nodes:
            ports = [node.listening.result() for node in nodes]
            async with documented_haproxy(ports, tmp_path) as (front, haproxy):
                summary = await run_clients(f"http://127.0.0.1:{front}", tmp_path)
            assert "ALERT" not in haproxy.log, haproxy.log
            assert "failed" not in summary, summary
            assert summary["errors"] == [], summary["errors"]
            # 200 connected, and every one upgraded to WebSocket.
            ids = summary["ids"]
            assert len(set(ids)) == CLIENTS
            assert summary["transports"] == ["websocket"] * CLIENTS
            members = list(range(0, CLIENTS, 2))
            assert summary["joined"] == ["lobby"] * len(members)
            # One broadcast from client 0's process: each member once, no one else.
            assert summary["heard"] == [1 if i % 2 == 0 else 0 for i in range(CLIENTS)]
            # An emit with acks from client 1's process: every member's answer.
            assert sorted(summary["answers"]) == members
            # Every client was logged once, by one process, at the address
            # HAProxy's X-Forwarded-For gave (its TCP peer was 127.0.0.1).
            logged: dict[str, tuple[int, str, int]] = {}
            for index, node in enumerate(nodes):
                for line in node.lines:
                    match = _CONNECTED.search(line)
                    if match:
                        sid, host, port = match.groups()
                        assert sid not in logged
                        logged[sid] = (index, host, int(port))
            assert sorted(logged) == sorted(ids)
            assert {(host, port) for _, host, port in logged.values()} == {(CLIENT_ADDRESS, 0)}
            spread = Counter(index for index, _, _ in logged.values())
            assert sorted(spread) == [0, 1, 2] and min(spread.values()) >= CLIENTS // 6, spread
