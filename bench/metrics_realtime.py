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

``--callgrind DIR`` profiles instead: the server under ``valgrind
--tool=callgrind``, collecting only over ``--events`` (after a warm-up of
WARM_UP, switched on and off with ``callgrind_control -i``), once per mode;
it prints the instructions per event and leaves ``DIR/<workload>-<mode>.out``
for ``callgrind_annotate`` (compare the two modes' functions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
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
WARM_UP = 100  # events before a --callgrind collection starts

# Called with True before the events that count, False after (--callgrind).
Collect = Callable[[bool], None]


def _no_collect(on: bool) -> None:
    pass


async def client(port: int) -> realtime.Client:
    sio = realtime.Client(transports=["websocket"])
    await sio.connect(f"http://127.0.0.1:{port}")
    return sio


async def echo(port: int, events: int, collect: Collect | None = None) -> None:
    sio = await client(port)

    async def run(count: int) -> None:
        for start in range(0, count, IN_FLIGHT):
            batch = min(IN_FLIGHT, count - start)
            await asyncio.gather(*(sio.emit_with_ack("echo", DATA) for _ in range(batch)))

    if collect is not None:
        await run(WARM_UP)
    (collect or _no_collect)(True)
    await run(events)
    (collect or _no_collect)(False)
    await sio.disconnect()


async def fanout(port: int, deliveries: int, collect: Collect | None = None) -> None:
    members = [await client(port) for _ in range(ROOM)]
    got: asyncio.Queue[Any] = asyncio.Queue()
    for member in members:
        member.on("msg", got.put_nowait)
        await member.emit_with_ack("join")

    async def run(count: int) -> None:
        for _ in range(count // ROOM):
            await members[0].emit("fanout", DATA)
            for _ in range(ROOM):  # in step: one broadcast at a time
                await got.get()

    if collect is not None:
        await run(WARM_UP)
    (collect or _no_collect)(True)
    await run(deliveries)
    (collect or _no_collect)(False)
    for member in members:
        await member.disconnect()


def instructions(mode: str, workload: str, count: int) -> int:
    """The server's instruction count for one workload, with metrics ``mode`` on or off."""
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    drive = echo if workload == "echo" else fanout
    return metrics_instructions.count_instructions(["-c", SERVER, mode], env, drive, count)


def callgrind(mode: str, workload: str, count: int, out: Path) -> int:
    """Instructions callgrind collected in the server over ``count`` events
    of ``workload`` (metrics ``mode`` on or off), its output left in ``out``."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += [f"--callgrind-out-file={out}", sys.executable, "-c", SERVER, mode]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def collect(on: bool) -> None:
        switch = ["callgrind_control", "-i", "on" if on else "off", str(server.pid)]
        subprocess.run(switch, check=True, capture_output=True)

    drive = echo if workload == "echo" else fanout
    try:
        assert server.stdout is not None
        words = server.stdout.readline().split()
        assert words[:1] == ["ready"], words
        asyncio.run(asyncio.wait_for(drive(int(words[1]), count, collect), 900))
    finally:
        server.send_signal(signal.SIGTERM)  # valgrind still writes its file
        _, stderr = server.communicate(timeout=300)
    found = re.search(r"Collected : (\d+)", stderr)
    assert found, stderr[-2000:]
    return int(found.group(1))


def profile(workloads: list[str], n: int, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for workload in workloads:
        per = {}
        for mode in ("off", "on"):
            out = directory / f"{workload}-{mode}.out"
            per[mode] = callgrind(mode, workload, n, out) / n
            print(f"{workload} metrics {mode}: {per[mode]:,.0f}/event ({out})", flush=True)
        print(f"{workload}: {per['on'] - per['off']:+,.0f} ({per['on'] / per['off'] - 1:+.2%})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--only", nargs="+", choices=["echo", "fanout"], default=["echo", "fanout"])
    parser.add_argument("--results-dir", type=Path, default=run.BENCH / "results")
    parser.add_argument("--callgrind", type=Path, metavar="DIR", help="profile instead")
    args = parser.parse_args()
    n = args.events
    if args.callgrind is not None:
        return profile(args.only, n, args.callgrind)
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
