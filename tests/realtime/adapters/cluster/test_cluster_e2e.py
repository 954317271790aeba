"""The cluster adapter end to end: worker processes (``cluster_node.py``)
on one :class:`ClusterHub` run by the test's event loop, as a supervisor
runs it, and tether clients connected to them.

"Exactly once" is checked behind a barrier: the hub relays one worker's
messages in the order it sent them, and each worker's link delivers in order,
so once every client has the barrier event emitted after the others from the
same worker, nothing earlier is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers import repo_root, timeout
from realtime.redis_helpers import Peer, Proxy, _env
from realtime.sio_helpers import eventually
from tether.realtime.adapters.cluster import ClusterHub

NODE_SCRIPT = Path(__file__).with_name("cluster_node.py")
_tokens = itertools.count()


class Worker:
    """``cluster_node.py`` in a subprocess; it exits when its stdin closes."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.process = process
        self.port: int = info["port"]
        self.node: str = info["node"]

    @classmethod
    async def start(cls, hub_path: str, *, recovery: bool) -> Worker:
        args = [str(NODE_SCRIPT), hub_path, *(["--recovery"] if recovery else [])]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=PIPE, stdout=PIPE, cwd=repo_root(), env=_env()
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout(15))
            return cls(process, json.loads(line))
        except (asyncio.TimeoutError, ValueError):
            process.kill()
            await process.wait()
            raise AssertionError(f"worker did not start (exit {process.returncode})") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def kill(self) -> None:
        """SIGKILL: the worker cannot save or say anything."""
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), timeout(10))

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), timeout(5))
            except asyncio.TimeoutError:
                self.process.kill()
                await asyncio.wait_for(self.process.wait(), timeout(5))


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, count: int, *, recovery: bool) -> AsyncIterator[list[Worker]]:
    """A hub and ``count`` workers on it, each known to the hub once started."""
    hub = ClusterHub(str(tmp_path / "hub.sock"))
    await hub.start()
    workers: list[Worker] = []
    try:
        for _ in range(count):
            workers.append(await Worker.start(hub.path, recovery=recovery))
        nodes = sorted(worker.node for worker in workers)
        await eventually(lambda: sorted(hub.nodes) == nodes)  # each said hello
        yield workers
    finally:
        for worker in workers:
            await worker.stop()
        await asyncio.wait_for(hub.close(), timeout(5))


async def barrier(trigger: Peer, everyone: list[Peer]) -> None:
    token = f"done-{next(_tokens)}"
    assert await trigger.call("do", "emit", [], "done", token)
    for peer in everyone:
        await peer.wait_for("done")


async def test_rooms_acks_fetch_and_server_events_span_the_workers(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2, recovery=False) as workers:
        a = await Peer.connect(workers[0].url, "a")
        b = await Peer.connect(workers[1].url, "b")
        c = await Peer.connect(workers[1].url, "c")
        try:
            assert await b.call("do", "join", "r")
            # A room broadcast from worker 0 reaches the member on worker 1, once.
            assert await a.call("do", "emit", ["r"], "news", 1)
            await barrier(a, [a, b, c])
            assert [p.count("news", 1) for p in (a, b, c)] == [0, 1, 0]
            assert await a.call("do", "fetch") == sorted([a.sid, b.sid, c.sid])
            assert await a.call("do", "ack", timeout(2)) == ["a", "b", "c"]
            assert await b.call("do", "relay", "hi")
            await a.wait_for("relayed")
            await barrier(b, [a, b, c])
            assert [p.count("relayed", "hi") for p in (a, b, c)] == [1, 0, 0]
        finally:
            for peer in (a, b, c):
                await peer.close()


async def test_a_killed_worker_s_clients_recover_on_another(tmp_path: Path) -> None:
    """Worker 0 is SIGKILLed mid-stream: it persists nothing, yet its
    clients reconnect to worker 1 and get every event once, in order."""
    async with cluster(tmp_path, 3, recovery=True) as workers:
        proxy = Proxy([worker.port for worker in workers[:2]])  # worker 2 streams
        await proxy.start()
        count = 150
        options = {"reconnection": True, "reconnection_delay": 0.05, "reconnection_delay_max": 0.2}
        listeners: list[Peer] = []
        try:
            listeners += [await Peer.connect(proxy.url, f"l{i}", **options) for i in range(4)]
            streamer = await Peer.connect(workers[2].url, "s")
            listeners_and_streamer = [*listeners, streamer]
            stream = asyncio.ensure_future(streamer.call("do", "stream", count, 0.01, wait=30))
            await listeners[0].wait_for("seq", count // 3, wait=10)
            await workers[0].kill()  # half of the listeners lose their worker
            assert await stream
            for listener in listeners:
                await listener.wait_for("seq", count, wait=10)
            await barrier(streamer, listeners_and_streamer)
            for listener in listeners:
                assert [args[0] for args in listener.events["seq"]] == list(range(count))
            recovered = [listener.client.recovered() for listener in listeners]
            assert recovered.count(True) == 2, recovered  # the two that were on worker 0
            await streamer.close()
        finally:
            for listener in listeners:
                await listener.close()
            await proxy.close()
