"""Node scripts of official socket.io-client sockets, run by the tests.

``redis_sio_clients.mjs`` as an async context manager: ``async with
NodeClients(config) as node:`` then ``await node.line()`` for each JSON line
it prints; and :func:`run_script`, for a script that runs to its end and
prints one JSON summary. Import with
``from realtime.node_clients import NodeClients, run_script``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout

SCRIPT = repo_root() / "tests" / "realtime" / "redis_sio_clients.mjs"


async def run_script(script: Path, *args: str, wait: float) -> tuple[int, dict[str, Any]]:
    """Run ``node script *args`` from the repository root, for at most
    ``wait`` units (then killed by its PID); its exit status and the JSON
    object on the last line it printed. Skips the test when node is absent."""
    executable = node_bin()
    if executable is None:
        pytest.skip("node is not installed")
    process = await asyncio.create_subprocess_exec(
        executable, str(script), *args, cwd=repo_root(), stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout(wait))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode().splitlines()
    assert lines, f"{script.name} printed nothing (exit status {process.returncode})"
    parsed: dict[str, Any] = json.loads(lines[-1])
    assert process.returncode is not None
    return process.returncode, parsed


class NodeClients:
    """One node process (skips the test when node is absent), stopped by its
    PID on exit: stdin closed first, killed if it does not exit in time."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> NodeClients:
        executable = node_bin()
        if executable is None:
            pytest.skip("node is not installed")
        self.process = await asyncio.create_subprocess_exec(
            executable,
            str(SCRIPT),
            json.dumps(self.config),
            cwd=repo_root(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def line(self, wait: float = 10) -> dict[str, Any]:
        """The next JSON line the clients print (fails if they exited)."""
        assert self.process is not None and self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout(wait))
        assert raw, "the node clients exited"
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process = self.process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the script exits when stdin closes
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), timeout(5))
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
