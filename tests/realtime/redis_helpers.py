"""Helpers for the scale-out tests: a private redis-server, node processes,
recording clients, and a TCP proxy that routes to live nodes.

Import with ``from realtime.redis_helpers import ...`` (``tests/`` is on
``sys.path``). Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import repo_root, timeout
from tether.realtime.client import Client

__all__ = ["NodeProcess", "Peer", "Proxy", "RedisServer", "free_port", "redis_server"]

NODE_SCRIPT = Path(__file__).with_name("redis_node.py")


def free_port() -> int:
    """A port nothing listens on now (redis-server cannot take port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(repo_root() / "src"), str(repo_root() / "tests")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return env


class RedisServer:
    """``redis-server`` on a free port, no persistence; stopped by PID."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed (scripts/test installs it)")
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen(
            [executable, *options, "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import redis  # the sync client, for setup only

        client = redis.Redis(port=self.port, socket_connect_timeout=timeout(1))
        deadline = timeout(10)
        step = 0.02
        waited = 0.0
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if waited > deadline:
                        raise
                # Polling a process we just started: there is no event to await.
                select.select([], [], [], step)
                waited += step
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout(10))
            self.process = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class NodeProcess:
    """``redis_node.py`` in a subprocess; exits when its stdin closes."""

    def __init__(self, redis_url: str, prefix: str, *, recovery: bool = False) -> None:
        args = [sys.executable, str(NODE_SCRIPT), redis_url, prefix]
        if recovery:
            args.append("--recovery")
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=repo_root(), env=_env()
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout(15))
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.process.kill()
            raise AssertionError(f"node did not start (exit code {self.process.poll()})")
        info = json.loads(line)
        self.port: int = info["port"]
        self.node: str = info["node"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the node cannot save or say anything."""
        self.process.kill()
        self.process.wait(timeout(10))

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout(5))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout(5))


@dataclass
class Peer:
    """A tether client recording every event it gets."""

    name: str
    client: Client
    events: defaultdict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, url: str, name: str, *, user: str | None = None, **options: Any) -> Peer:
        options.setdefault("reconnection", False)
        peer = cls(name, Client(**options))

        def record(event: str, *args: Any) -> None:
            peer.events[event].append(args)
            peer.changed.set()

        peer.client.on("*", record)
        peer.client.on("disconnect", lambda reason: record("disconnect", reason))
        peer.client.on("question", lambda: peer.name)
        auth = {"user": user} if user is not None else None
        await asyncio.wait_for(peer.client.connect(url, auth=auth), timeout(5))
        return peer

    @property
    def sid(self) -> str:
        sid = self.client.sid()
        assert sid is not None
        return sid

    async def call(self, event: str, *args: Any, wait: float = 5) -> Any:
        return await self.client.emit_with_ack(event, *args, timeout=timeout(wait))

    def count(self, event: str, *args: Any) -> int:
        return sum(1 for got in self.events[event] if got == args)

    async def wait_for(self, event: str, count: int = 1, wait: float = 5) -> None:
        async def check() -> None:
            while len(self.events[event]) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(check(), timeout(wait))

    async def close(self) -> None:
        await self.client.disconnect()


class Proxy:
    """A TCP proxy sending each new connection to the next live upstream
    (round robin, skipping ports that refuse); closing both sides together."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = list(ports)
        self._next = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            with contextlib.suppress(OSError):
                return await asyncio.open_connection("127.0.0.1", port)
        raise OSError("no live upstream")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._upstream()
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
