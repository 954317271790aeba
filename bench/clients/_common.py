"""What the benchmark clients share: arguments, the measured window, the JSON line.

Each client keeps ``--inflight`` messages of ``--size`` bytes in flight on one
connection to an echo server for ``--warmup`` + ``--duration`` seconds. Like
the C loadgen, it prints ``start`` and ``stop`` around the measured window (the
harness samples the server's CPU time there), then one JSON line with the
same keys as the loadgen: ``count``, ``elapsed``, ``rate``, ``cpu_s`` (this
process's own CPU time over the window, from getrusage) and ``cpu_pct``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

MAX_SIZE = 4 * 1024 * 1024


class Counter:
    """Messages received so far; the pump increments ``value``."""

    value = 0


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("uri")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    return parser.parse_args()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(counter: Counter, args: argparse.Namespace) -> None:
    """Sleep through the warm-up, then count messages over the window and report."""
    await asyncio.sleep(args.warmup)
    count0, cpu0, t0 = counter.value, _cpu(), time.perf_counter()
    print("start", flush=True)
    await asyncio.sleep(args.duration)
    count1, cpu1, t1 = counter.value, _cpu(), time.perf_counter()
    print("stop", flush=True)
    elapsed, cpu, count = t1 - t0, cpu1 - cpu0, count1 - count0
    result = {
        "mode": "client",
        "size": args.size,
        "inflight": args.inflight,
        "elapsed": elapsed,
        "count": count,
        "rate": count / elapsed,
        "mb_per_s": count * args.size / elapsed / 1e6,
        "errors": 0,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / elapsed,
    }
    print(json.dumps(result), flush=True)


class EchoConnection(Protocol):
    """What the tether and websockets clients have in common."""

    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> Any: ...


async def echo_and_measure(connection: EchoConnection, args: argparse.Namespace) -> None:
    """Keep ``args.inflight`` messages of ``args.size`` bytes in flight through
    ``connection`` while :func:`measure` counts the echoes."""
    payload = b"x" * args.size
    counter = Counter()

    async def pump() -> None:
        for _ in range(args.inflight):
            await connection.send(payload)
        while True:
            await connection.recv()
            counter.value += 1
            await connection.send(payload)

    task = asyncio.create_task(pump())
    await measure(counter, args)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(main: Callable[[], Awaitable[None]], use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
