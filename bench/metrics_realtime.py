"""What a realtime server's metrics cost: instructions per event, counted by
valgrind, with and without ``realtime.serve(..., metrics=MetricsEndpoint())``.

    .venv/bin/python bench/metrics_realtime.py [--events 2000]

The server below (``realtime.serve`` on uvloop, its defaults otherwise) runs
under ``valgrind --tool=cachegrind --cache-sim=no``, once with a metrics
endpoint (which installs :class:`tether.metrics.realtime.RealtimeMetrics` as
the server's observer) and once without. tether's realtime client, in this
process and not counted, drives it over a WebSocket:

* echo: ``--events`` events with an ack (the handler returns its argument),
  one at a time;
* fan-out: 50 clients in a room; ``--events`` / 50 broadcasts to it.

Each is run for N and 2N events, so that start-up cancels out:
(I(2N) - I(N)) / N per event (per delivery for the fan-out). Writes
``bench/results/metrics-realtime-<date>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import metrics_instructions
import run

from tether import realtime

SERVER = """
import asyncio, sys
import uvloop
from tether import realtime
from tether.metrics import MetricsEndpoint

server = realtime.Server()

@server.on("echo")
async def echo(socket, data):
    return data

@server.on("join")
async def join(socket):
    await socket.join("room")

@server.on("fanout")
async def fanout(socket, data):
    await server.to("room").emit("msg", data)

async def main():
    options = {"metrics": MetricsEndpoint()} if sys.argv[1] == "on" else {}
    async with realtime.serve(server, "127.0.0.1", 0, **options) as http:
        print("ready", http.port, flush=True)
        await asyncio.get_running_loop().create_future()

uvloop.run(main())
"""
IN_FLIGHT = 1  # sequential: the same reads every run (32 in flight varied by 15 %)
ROOM = 50
DATA = "0123456789abcdef"


async def client(port: int) -> realtime.Client:
    sio = realtime.Client(transports=["websocket"])
    await sio.connect(f"http://127.0.0.1:{port}")
    return sio


async def echo(port: int, events: int) -> None:
    sio = await client(port)
    for start in range(0, events, IN_FLIGHT):
        batch = min(IN_FLIGHT, events - start)
        await asyncio.gather(*(sio.emit_with_ack("echo", DATA) for _ in range(batch)))
    await sio.disconnect()


async def fanout(port: int, deliveries: int) -> None:
    members = [await client(port) for _ in range(ROOM)]
    got: asyncio.Queue[Any] = asyncio.Queue()
    for member in members:
        member.on("msg", got.put_nowait)
        await member.emit_with_ack("join")
    for _ in range(deliveries // ROOM):
        await members[0].emit("fanout", DATA)
        for _ in range(ROOM):  # in step: one broadcast at a time
            await got.get()
    for member in members:
        await member.disconnect()


def instructions(mode: str, workload: str, count: int) -> int:
    """The server's instruction count for one workload, with metrics ``mode`` on or off."""
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    drive = echo if workload == "echo" else fanout
    return metrics_instructions.count_instructions(["-c", SERVER, mode], env, drive, count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--only", nargs="+", choices=["echo", "fanout"], default=["echo", "fanout"])
    parser.add_argument("--results-dir", type=Path, default=run.BENCH / "results")
    args = parser.parse_args()
    n = args.events
    rows = []
    for workload in args.only:
        per: dict[str, float] = {}
        for mode in ("off", "on"):
            counts = [instructions(mode, workload, m) for m in (n, 2 * n)]
            per[mode] = (counts[1] - counts[0]) / n
            print(f"{workload} metrics {mode}: {counts} -> {per[mode]:,.0f}/event", flush=True)
        cost = per["on"] / per["off"] - 1
        rows.append(f"| {workload} | {per['off']:,.0f} | {per['on']:,.0f} | {cost:+.2%} |")
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    command = "bench/metrics_realtime.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Realtime metrics cost in instructions, {stamp}",
        "",
        f"`.venv/bin/python {command}` (valgrind cachegrind, {n:,} and {2 * n:,} events).",
        "",
        "| workload | without metrics: instructions/event | with metrics | cost |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"metrics-realtime-{stamp}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
