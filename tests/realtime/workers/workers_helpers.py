"""Helpers for the ``tether run`` tests: the supervisor in a subprocess, its
log read line by line, and a crowd of official socket.io clients (node).

Every process is started here and stopped by its PID; every wait is on a line
of output, bounded by ``timeout()``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout

__all__ = ["APP", "STREAM", "Crowd", "Run", "alive"]

#: The application the tests serve (written to tmp_path as myapp.py).
APP = """
import os
from tether import realtime

server = realtime.Server(connection_state_recovery=RECOVERY)


@server.on("join")
async def join(socket, room):
    await socket.join(room)
    return {"pid": os.getpid(), "sid": socket.sid}


@server.on("shout")
async def shout(socket, room, n):
    await server.to(room).emit("shouted", n)
    return "ok"


@server.on("tick")
async def tick(socket, room, n):
    await server.to(room).emit("tick", n)
    return "ok"


@server.on("ask")
async def ask(socket):
    return await socket.emit_with_ack("question", timeout=10)
"""

CROWD = Path(__file__).with_name("sio_crowd.mjs")
STREAM = Path(__file__).with_name("sio_stream.mjs")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root() / "src"), env.get("PYTHONPATH", "")])
    return env


class _Lines:
    """The lines of a stream, read by a daemon thread into a queue."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)  # end of stream

    def next(self, wait: float) -> str:
        try:
            line = self._queue.get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"no line in {wait} s; so far: {self.seen[-20:]}") from None
        if line is None:
            self._queue.put(None)  # for the next caller too
            raise AssertionError(f"the stream ended; so far: {self.seen[-20:]}")
        self.seen.append(line)
        return line

    def drain(self, wait: float) -> None:
        """Read every line left, to the end of the stream, into ``seen``."""
        while (line := self._queue.get(timeout=wait)) is not None:
            self.seen.append(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, wait: float) -> re.Match[str]:
        """The next line matching ``pattern`` (other lines are kept in ``seen``)."""
        while True:
            found = re.search(pattern, self.next(wait))
            if found is not None:
                return found


class Run:
    """``python -m tether run myapp:server --port 0 --workers N`` in ``directory``."""

    def __init__(
        self,
        directory: Path,
        workers: int,
        *args: str,
        recovery: bool = False,
        app: str = APP,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        recovery_options = '{"max_disconnection_duration": 30}' if recovery else "None"
        (directory / "myapp.py").write_text(app.replace("RECOVERY", recovery_options))
        if command is None:
            command = [sys.executable, "-m", "tether", "run", "myapp:server", "--port", "0"]
            command += ["--workers", str(workers), *args]
        self.workers = workers
        self.process = subprocess.Popen(
            command,
            cwd=directory,
            env={**_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        self.log = _Lines(self.process.stderr)
        #: The pid of each worker index, as its last "started" line says.
        self.pids: dict[int, int] = {}
        #: The event loop of each worker index ("uvloop" or "asyncio"), as its
        #: last "ready" line says.
        self.loops: dict[int, str] = {}
        self.port = 0
        self.stop_seconds = 0.0

    def start(self) -> None:
        """Wait for the port and for every worker to be ready."""
        found = self.log.wait_for(r"listening on http://127\.0\.0\.1:(\d+)", timeout(30))
        self.port = int(found[1])
        ready: set[int] = set()
        while len(ready) < self.workers:
            line = self.log.next(timeout(30))
            if started := re.search(r"worker (\d+) started \(pid (\d+)\)", line):
                self.pids[int(started[1])] = int(started[2])
            if done := re.search(r"worker (\d+) ready \(pid \d+, (\w+)\)", line):
                ready.add(int(done[1]))
                self.loops[int(done[1])] = done[2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, index: int) -> int:
        """After a restart: the new pid of worker ``index``, once it is ready."""
        pid = 0
        while True:
            line = self.log.next(timeout(30))
            if started := re.search(rf"worker {index} started \(pid (\d+)\)", line):
                pid = int(started[1])
            if pid and (done := re.search(rf"worker {index} ready \(pid {pid}, (\w+)\)", line)):
                self.pids[index] = pid
                self.loops[index] = done[1]
                return pid

    def terminate(self) -> int:
        """SIGTERM; the exit status (killed, with its workers, past ``timeout(30)``)."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout(30))
            #: Seconds from SIGTERM to the supervisor's exit.
            self.stop_seconds = time.monotonic() - start
            self.log.drain(timeout(5))
            return code
        finally:
            self.stop()

    def stop(self) -> None:
        """Make sure nothing is left: the supervisor and the workers, by PID."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Crowd:
    """``sio_crowd.mjs``: ``count`` official socket.io clients, default transports
    (or another script of this folder, given its ``config``)."""

    def __init__(
        self, url: str, count: int, room: str = "r", *, script: Path = CROWD, **config: Any
    ) -> None:
        node = node_bin()
        if node is None:
            pytest.skip("node is not installed")
        config = {"url": url, "count": count, "room": room, **config}
        self.process = subprocess.Popen(
            [node, str(script), json.dumps(config)],
            cwd=repo_root(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = _Lines(self.process.stdout)

    def read(self, key: str, wait: float | None = None) -> dict[str, Any]:
        """The next JSON line holding ``key`` (or ``failed``, which fails the test)."""
        while True:
            value: dict[str, Any] = json.loads(self.lines.next(wait or timeout(60)))
            assert "failed" not in value, value
            if key in value:
                return value

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
            self.process.wait(timeout(10))
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
