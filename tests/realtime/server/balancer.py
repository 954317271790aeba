"""The load balancer tests' common part (test_haproxy.py, test_nginx.py):
docs/deployment.md's node.py, three times on one Redis, and 200 official
socket.io-client clients with default transports in Node
(balancer_clients.mjs) connecting from 127.0.0.2 through the balancer,
and what every balancer must give them.

Every process is started here and stopped by its PID.
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from realtime.node_clients import run_script
from realtime.server.deployment_doc import LoggedProcess, doc_block

__all__ = [
    "CLIENTS",
    "CLIENT_ADDRESS",
    "check_clients",
    "documented_nodes",
    "executable",
    "run_clients",
    "stop",
]

CLIENTS = 200
CLIENT_ADDRESS = "127.0.0.2"  # Linux routes all of 127.0.0.0/8 to loopback
SCRIPT = Path(__file__).with_name("balancer_clients.mjs")
_SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
_CONNECTED = re.compile(r"connected (\S+) from \('([^']+)', (\d+)\)")


def executable(name: str, hint: str) -> str:
    """The path of ``name`` (on PATH, or in /usr/sbin where Debian puts
    daemons); skips the test with ``hint`` when it is not installed."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


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


async def run_clients(url: str) -> dict[str, Any]:
    """Run the clients against ``url``; their summary (see balancer_clients.mjs)."""
    if node_bin() is None or not (repo_root() / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("node or socket.io-client missing (scripts/test installs them)")
    try:
        with socket.socket() as probe:
            probe.bind((CLIENT_ADDRESS, 0))
    except OSError:  # Linux routes 127.0.0.0/8 to loopback; other systems may not
        pytest.skip(f"cannot bind {CLIENT_ADDRESS}")
    config = {
        "url": url,
        "count": CLIENTS,
        "room": "lobby",
        "localAddress": CLIENT_ADDRESS,
        "timeout": round(timeout(15) * 1000),
    }
    status, summary = await run_script(SCRIPT, json.dumps(config), wait=30)
    assert status == 0, summary
    return summary


def check_clients(summary: dict[str, Any], nodes: list[LoggedProcess]) -> list[int]:
    """Assert what every balancer must give the clients; the process (its
    index in ``nodes``) of each client."""
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
    # Every client was logged once, by one process, at the address the
    # balancer's X-Forwarded-For gave (its TCP peer was 127.0.0.1).
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
    return [logged[sid][0] for sid in ids]
