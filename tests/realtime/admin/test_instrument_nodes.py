"""tether.realtime.admin across two nodes: two admin_node.py processes with
the Redis adapter on a real redis-server, or with the cluster adapter on a
ClusterHub (the one ``tether run --workers`` starts); users on both, the UI
(a tether Client in its place) on node A only. It must see both nodes'
sockets and stats, B's live events, and its actions must reach B's sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from helpers import repo_root, timeout
from realtime.admin.admin_helpers import FakeUI
from realtime.admin.admin_node import PASSWORD, USERNAME
from realtime.redis_helpers import redis_server
from realtime.sio_helpers import eventually
from tether.realtime.adapters.cluster import ClusterHub
from tether.realtime.client import Client

NODE = Path(__file__).with_name("admin_node.py")


@contextlib.contextmanager
def admin_node(*args: str) -> Iterator[str]:
    """admin_node.py with ``args``; yields its URL; stopped by PID."""
    env = {"PYTHONPATH": f"{repo_root() / 'src'}:{repo_root() / 'tests'}"}
    process = subprocess.Popen(
        [sys.executable, str(NODE), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=repo_root(),
        env=env,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout(15))
        line = process.stdout.readline() if ready else b""
        assert line, f"admin_node did not start (exit code {process.poll()})"
        yield f"http://127.0.0.1:{json.loads(line)['port']}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout(5))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout(5))


@contextlib.asynccontextmanager
async def two_nodes(kind: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Node A's and node B's URLs, on Redis or on a cluster hub."""
    with contextlib.ExitStack() as stack:
        if kind == "redis":
            if shutil.which("redis-server") is None:
                pytest.skip("redis-server not installed")
            redis = stack.enter_context(redis_server())
            shared = ["--redis", redis.url, "--prefix", f"admin-{uuid.uuid4().hex[:8]}"]
            yield (
                stack.enter_context(admin_node(*shared, "--server-id", "node-a")),
                stack.enter_context(admin_node(*shared, "--server-id", "node-b")),
            )
            return
        hub = ClusterHub(str(tmp_path / "hub.sock"))
        await hub.start()
        try:
            shared = ["--hub", hub.path]
            a = stack.enter_context(admin_node(*shared, "--server-id", "node-a"))
            b = stack.enter_context(admin_node(*shared, "--server-id", "node-b"))
            await eventually(lambda: len(hub.nodes) == 2)  # both said hello
            yield a, b
        finally:
            stack.close()
            await asyncio.wait_for(hub.close(), timeout(5))


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_the_ui_on_one_node_sees_and_acts_on_both(kind: str, tmp_path: Path) -> None:
    async with two_nodes(kind, tmp_path) as (a, b), contextlib.AsyncExitStack() as stack:
        users: dict[str, Client] = {}
        kicked: asyncio.Queue[str] = asyncio.Queue()
        for name, url in (("ann", a), ("bob", b)):
            client = Client(reconnection=False)
            client.on("disconnect", kicked.put_nowait)
            auth = {"name": name, "room": "lobby"}
            await asyncio.wait_for(client.connect(url, auth=auth), timeout(5))
            stack.push_async_callback(client.disconnect)
            users[name] = client
        ui = await FakeUI().connect(a, {"username": USERNAME, "password": PASSWORD})
        stack.push_async_callback(ui.close)

        (sockets,) = await ui.wait("all_sockets")
        by_name = {s["data"].get("name"): s for s in sockets if s["nsp"] == "/"}
        assert set(by_name) == {"ann", "bob"}
        assert by_name["bob"]["id"] == users["bob"].sid()
        assert by_name["bob"]["transport"] == "websocket"  # carried in data from B
        assert "lobby" in by_name["bob"]["rooms"]

        # Both nodes report their stats to the UI connected to A.
        await ui.wait("server_stats", lambda s: s[0]["serverId"] == "node-a")
        (b_stats,) = await ui.wait("server_stats", lambda s: s[0]["serverId"] == "node-b")
        assert {"name": "/", "socketsCount": 1} in b_stats["namespaces"]

        # B's live events reach the UI on A.
        bob = users["bob"].sid()
        answer = await users["bob"].emit_with_ack("chat", "from b", timeout=timeout(5))
        assert answer == "FROM B"
        await ui.wait("event_received", lambda e: e[:3] == ("/", bob, ["chat", "from b"]))
        cid = Client(reconnection=False)
        await asyncio.wait_for(cid.connect(b, auth={"name": "cid"}), timeout(5))
        stack.push_async_callback(cid.disconnect)
        await ui.wait("socket_connected", lambda e: e[0]["id"] == cid.sid())

        # An action from the UI on A reaches a socket of B.
        await ui.act("join", "/", "vip", bob)
        await ui.wait("room_joined", lambda e: e[:3] == ("/", "vip", bob))
        await ui.act("_disconnect", "/", False, bob)
        reason = await asyncio.wait_for(kicked.get(), timeout(5))
        assert reason == "io server disconnect"
        assert not users["bob"].connected and users["ann"].connected
        await ui.wait("socket_disconnected", lambda e: e[:2] == ("/", bob))
