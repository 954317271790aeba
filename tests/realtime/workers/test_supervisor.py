"""``tether run``: N workers on one port, default socket.io clients, restarts, stop.

Real processes only: the supervisor (``python -m tether run``), its workers,
redis-server, and official socket.io-client sockets (node, default transports:
long-polling first, then the upgrade to WebSocket).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from helpers import timeout
from realtime.redis_helpers import RedisServer, redis_server
from realtime.workers.workers_helpers import APP, STREAM, Crowd, Run, alive

CLIENTS = 200
#: What ``--loop auto`` (the default) picks here.
AUTO_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def _cluster_available() -> bool:
    try:
        from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub  # noqa: F401
    except ImportError:
        return False
    return True


def _crowd_scenario(run: Run, count: int) -> None:
    """``count`` clients connect, upgrade, join a room; a broadcast reaches each
    exactly once; acks work both ways."""
    crowd = Crowd(run.url, count)
    try:
        ready = crowd.read("ready", timeout(120))
        assert ready["ready"] == count and ready["upgraded"] == count
        # Sessions on several workers: requests were routed to their owners.
        assert len(ready["pids"]) > 1, ready
        assert set(map(int, ready["pids"])) <= set(run.pids.values())
        crowd.send({"transports": True})
        assert crowd.read("transports")["transports"] == ["websocket"] * count
        for n in (1, 2):  # the second, sent after the first arrived everywhere...
            crowd.send({"shout": n})
            got = crowd.read("got", timeout(30))
            assert got["got"] == n
        # ...comes after any duplicate of the first would have.
        counts = got["counts"]
        assert [c.get("1") for c in counts] == [1] * count
        crowd.send({"ask": True})
        asked = crowd.read("asked", timeout(30))["asked"]
        assert asked == [f"answer-{i}" for i in range(count)]
    finally:
        crowd.close()


def _serve_the_crowd(directory: Path, *args: str, loop: str = AUTO_LOOP) -> list[str]:
    """``tether run`` with 4 workers and ``args``: the crowd scenario on
    workers that run ``loop``, then SIGTERM (exit 0); the supervisor's log."""
    run = Run(directory, 4, *args)
    try:
        run.start()
        assert run.loops == dict.fromkeys(range(4), loop)
        _crowd_scenario(run, CLIENTS)
        assert run.terminate() == 0
    finally:
        run.stop()
    handed = [int(n) for n in re.findall(r"handed (\d+) connections", "\n".join(run.log.seen))]
    assert len(handed) == 4 and sum(handed) > 0  # requests did reach their owners
    return run.log.seen


@pytest.mark.redis
def test_200_default_clients_on_4_workers_with_redis(tmp_path: Path, redis: RedisServer) -> None:
    log = _serve_the_crowd(tmp_path, "--redis", redis.url)
    assert not any("cluster" in line for line in log)


@pytest.mark.skipif(not _cluster_available(), reason="the cluster adapter is not there yet")
def test_200_default_clients_on_4_workers_with_the_cluster_hub(tmp_path: Path) -> None:
    log = _serve_the_crowd(tmp_path)
    assert any("cluster" in line for line in log)


@pytest.mark.skipif(not _cluster_available(), reason="the cluster adapter is not there yet")
@pytest.mark.skipif(AUTO_LOOP != "uvloop", reason="uvloop (tether[uvloop]) is not installed")
def test_loop_asyncio_on_4_workers_with_the_cluster_hub(tmp_path: Path) -> None:
    """With uvloop installed the workers run on it by default (the test above);
    ``--loop asyncio`` keeps asyncio's own loop, and everything works the same."""
    _serve_the_crowd(tmp_path, "--loop", "asyncio", loop="asyncio")


def test_one_worker(tmp_path: Path) -> None:
    run = Run(tmp_path, 1)
    try:
        run.start()
        assert run.loops == {0: AUTO_LOOP}
        crowd = Crowd(run.url, 5)
        try:
            ready = crowd.read("ready", timeout(60))
            assert ready["upgraded"] == 5 and list(map(int, ready["pids"])) == [run.pids[0]]
        finally:
            crowd.close()
        assert run.terminate() == 0
    finally:
        run.stop()


@pytest.mark.redis
def test_a_killed_worker_is_replaced_and_takes_new_sessions(
    tmp_path: Path, redis: RedisServer
) -> None:
    run = Run(tmp_path, 2, "--redis", redis.url)
    try:
        run.start()
        old = run.pids[1]
        os.kill(old, signal.SIGKILL)
        run.log.wait_for(rf"worker 1 \(pid {old}\) died: killed by SIGKILL", timeout(30))
        new = run.wait_ready(1)
        assert new != old and not alive(old)
        # New sessions land on it. Which worker accepts is the kernel's choice
        # (one of them may take every accept for a while on a loaded machine):
        # up to 5 crowds of 20 until one of its sessions is on the new worker.
        seen: set[int] = set()
        for _ in range(5):
            crowd = Crowd(run.url, 20)
            try:
                ready = crowd.read("ready", timeout(60))
                assert ready["upgraded"] == 20
                seen |= set(map(int, ready["pids"]))
            finally:
                crowd.close()
            if new in seen:
                break
        assert new in seen and seen <= {run.pids[0], new}
        assert run.terminate() == 0
        assert not any(alive(pid) for pid in run.pids.values())
    finally:
        run.stop()


def test_sigterm_stops_everything_within_the_grace_period(tmp_path: Path) -> None:
    run = Run(tmp_path, 2, "--grace", "5")
    try:
        run.start()
        pids = list(run.pids.values())
        assert all(alive(pid) for pid in pids)
        assert run.terminate() == 0
        assert run.stop_seconds < 5
        assert not any(alive(pid) for pid in pids)
        log = "\n".join(run.log.seen)
        assert "still running: killed" not in log
        assert len(re.findall(r"stopped: exit code 0", log)) == 2, log
    finally:
        run.stop()


@pytest.mark.skipif(not _cluster_available(), reason="the cluster adapter is not there yet")
def test_a_stream_survives_its_worker_s_sigkill(tmp_path: Path) -> None:
    """100 events to one default client; its worker is SIGKILLed after 30: it
    reconnects to another worker, recovers its session through the cluster
    hub, and gets every event exactly once, in order."""
    run = Run(tmp_path, 2, recovery=True)
    try:
        run.start()
        stream = Crowd(run.url, 100, script=STREAM, pause_at=30)
        try:
            pids = stream.read("consumer")
            assert pids["consumer"] != pids["producer"]
            assert stream.read("paused")["paused"] == 30
            os.kill(pids["consumer"], signal.SIGKILL)
            index = next(i for i, pid in run.pids.items() if pid == pids["consumer"])
            died = rf"worker {index} \(pid {pids['consumer']}\) died: killed by SIGKILL"
            run.log.wait_for(died, timeout(30))
            stream.send({"resume": True})
            done = stream.read("done", timeout(60))
            assert done["done"] == list(range(1, 101))
            assert done["recovered"] is True
        finally:
            stream.close()
        assert run.terminate() == 0
    finally:
        run.stop()


CRASHING_APP = """
import os
import sys

from tether import realtime

server = realtime.Server()
if sys.argv[0].endswith("worker.py"):  # in each worker, not in the supervisor
    os._exit(3)
"""


def test_a_crash_loop_gives_up_instead_of_spinning(tmp_path: Path) -> None:
    program = (
        "import logging, sys; from tether.realtime.workers import run; "
        "logging.basicConfig(level=logging.INFO); "
        "sys.exit(run('myapp:server', port=0, workers=2, backoff=0.05, max_failures=3))"
    )
    command = [sys.executable, "-c", program]
    run = Run(tmp_path, 2, app=CRASHING_APP, command=command)
    try:
        assert run.process.wait(timeout(60)) == 1
        run.log.drain(timeout(5))
    finally:
        run.stop()
    log = "\n".join(run.log.seen)
    gave_up = re.findall(r"worker (\d) \(pid \d+\) died: exit code 3; 3 quick failures", log)
    assert gave_up, log
    index = gave_up[0]
    # Restarted twice, after the backoff doubled: 0.05 s, then 0.1 s.
    restarted = rf"worker {index} \(pid \d+\) died: exit code 3; restarting in (\S+) s"
    assert re.findall(restarted, log) == ["0.05", "0.10"], log
    started = re.findall(r"worker \d started \(pid (\d+)\)", log)
    assert not any(alive(int(pid)) for pid in started)


HANGING_APP = (
    APP
    + """
import sys
import threading

if sys.argv[0].endswith("worker.py"):
    # A thread that never ends: the worker cannot exit once its loop is done.
    threading.Thread(target=threading.Event().wait).start()
"""
)


def test_workers_still_running_after_the_grace_period_are_killed(tmp_path: Path) -> None:
    run = Run(tmp_path, 2, "--grace", "1", app=HANGING_APP)
    try:
        run.start()
        pids = list(run.pids.values())
        assert run.terminate() == 0
        assert 1 <= run.stop_seconds < 1 + timeout(10)
        assert not any(alive(pid) for pid in pids)
        log = "\n".join(run.log.seen)
        assert len(re.findall(r"still running: killed", log)) == 2, log
        assert len(re.findall(r"stopped: killed by SIGKILL", log)) == 2, log
    finally:
        run.stop()


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    run = Run(tmp_path, 2)
    runtime: Path | None = None
    try:
        run.start()
        # The runtime folder the supervisor can no longer remove: ours to.
        with open(f"/proc/{run.pids[0]}/cmdline") as cmdline:
            arguments = cmdline.read().split("\0")
        runtime = Path(arguments[arguments.index("--runtime") + 1])
        run.process.kill()  # SIGKILL: the supervisor cannot tell anyone
        run.process.wait(timeout(10))
        # Its pipe reads EOF in each worker, which stops gracefully.
        for _ in run.pids:
            run.log.wait_for(r"the supervisor is gone: stopping", timeout(30))
        run.log.drain(timeout(30))
        stopped = re.findall(r"worker (\d) stopped \(pid (\d+);", "\n".join(run.log.seen))
        assert sorted(int(index) for index, _ in stopped) == [0, 1]
        assert {int(pid) for _, pid in stopped} == set(run.pids.values())
    finally:
        run.stop()
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)


def _workers_open(found: dict[str, float]) -> dict[str, float]:
    """tether_connections_open by worker, from a scrape's samples."""
    prefix = 'tether_connections_open{worker="'
    return {key[len(prefix) : -2]: value for key, value in found.items() if key.startswith(prefix)}


async def _scrape_until(port: int, token: str, done: Callable[[dict[str, float]], bool]) -> Any:
    """Scrape (a new connection each time: any worker answers) until ``done``."""
    from metrics.scrape import scrape

    deadline = time.monotonic() + timeout(10)
    while True:
        found = await scrape(port, token=token)
        if done(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)  # the workers publish every PUBLISH_INTERVAL


@pytest.mark.skipif(
    importlib.util.find_spec("prometheus_client") is None, reason="tether[metrics] missing"
)
async def test_metrics_of_every_worker_from_any_worker(tmp_path: Path) -> None:
    from metrics.scrape import http_get

    run = Run(tmp_path, 2, "--metrics", "/metrics", env={"TETHER_METRICS_TOKEN": "s3cret"})
    clients: list[tether.Connection] = []
    try:
        run.start()
        assert (await http_get(run.port, "/metrics"))[0] == 401  # the token is required
        found = await _scrape_until(run.port, "s3cret", lambda f: len(_workers_open(f)) == 2)
        assert _workers_open(found) == {"0": 0, "1": 0}
        # Engine.IO WebSocket sessions, spread over the workers by the kernel:
        # every scrape, whichever worker answers, counts them all.
        uri = f"ws://127.0.0.1:{run.port}/socket.io/?EIO=4&transport=websocket"
        clients = [await tether.connect(uri) for _ in range(6)]
        for _ in range(3):
            found = await _scrape_until(
                run.port, "s3cret", lambda f: sum(_workers_open(f).values()) == 6
            )
            assert sum(_workers_open(found).values()) == 6, found
        for client in clients:
            await client.close()
        assert run.terminate() == 0
    finally:
        for client in clients:
            await client.close()
        run.stop()


def test_a_wrong_metrics_path_fails_before_any_worker_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tether.cli import main

    assert main(["run", "nowhere:server", "--metrics", "metrics"]) == 1
    assert "path must start with '/'" in capsys.readouterr().err
