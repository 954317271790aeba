"""The cost of tether.Server's metrics in instructions per message, counted by
valgrind: steady on a shared machine, where messages per CPU-second are not.

    .venv/bin/python bench/metrics_instructions.py [--messages 20000] [--base REV]

bench/servers/tether_server.py (uvloop, compression off) runs under
``valgrind --tool=cachegrind --cache-sim=no``, once from this tree ("on") and
once from a copy of src/ whose hot-path files are as they were at ``--base``,
before the counting came in ("off"; built by bench/metrics_overhead.py). A
tether client in another process (not counted) drives it:

* echo: one connection, ``--messages`` messages of 16 bytes, 32 in flight;
* fan-out: 100 receivers; a sender asks for ``--messages`` / 100 broadcasts
  of 64 bytes, each to the 100 others (bench/servers' ``fanout`` message).

and once more from this tree with ``server.metrics.count_sends`` on (the
per-message send counters, off by default).

Each server is run for N and for 2N messages, so the start-up cancels out:
the instructions per message are (I(2N) - I(N)) / N. Instructions are not
time (an allocation or a cache miss costs more than its count says), but they
compare the two trees without the noise of other processes. Writes
``bench/results/metrics-instructions-<date>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import metrics_overhead
import run

import tether

SERVER = run.BENCH / "servers" / "tether_server.py"
PAYLOAD = b"0123456789abcdef"
IN_FLIGHT = 32
RECEIVERS = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def echo(port: int, messages: int) -> None:
    async with tether.connect(f"ws://127.0.0.1:{port}/", compression=None) as client:
        for start in range(0, messages, IN_FLIGHT):
            batch = min(IN_FLIGHT, messages - start)
            for _ in range(batch):
                await client.send(PAYLOAD)
            for _ in range(batch):
                await client.recv()


async def fanout(port: int, messages: int) -> None:
    uri = f"ws://127.0.0.1:{port}/"
    receivers = [await tether.connect(uri, compression=None) for _ in range(RECEIVERS)]
    broadcasts = messages // RECEIVERS
    async with tether.connect(uri, compression=None) as sender:
        for _ in range(broadcasts):
            await sender.send("fanout")
            for receiver in receivers:  # in step: one broadcast at a time
                await receiver.recv()
    for receiver in receivers:
        await receiver.close()


# The server with server.metrics.count_sends on (a tree without it: unchanged).
COUNTING_SENDS = f"""
import functools, runpy, sys
sys.path.insert(0, {str(SERVER.parent)!r})
import tether.server
made = getattr(tether.server, "WebSocketMetrics", None)
if made is not None:
    tether.server.WebSocketMetrics = functools.partial(made, count_sends=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


Drive = Callable[[int, int], Coroutine[Any, Any, None]]


def count_instructions(
    program: list[str], env: dict[str, str], drive: Drive, count: int, port: int = 0
) -> int:
    """Run ``python *program`` under cachegrind; once it prints ``ready`` (and
    its port, or it listens on ``port``), ``drive(port, count)`` from this
    process (not counted); then stop it and return its instruction count."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            f"--cachegrind-out-file={tmp}/out",
            sys.executable,
            *program,
        ]
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            words = server.stdout.readline().split()
            assert words[:1] == ["ready"], words
            port = int(words[1]) if len(words) > 1 else port
            asyncio.run(asyncio.wait_for(drive(port, count), 900))
        finally:
            server.send_signal(signal.SIGTERM)  # valgrind still reports on it
            try:
                _, stderr = server.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()  # by its PID, ours
                server.communicate()
                raise
    found = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    assert found, stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def instructions(pythonpath: Path | None, sends: bool, workload: str, messages: int) -> int:
    """The server's instruction count for one workload of ``messages``."""
    port = free_port()
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    script = ["-c", COUNTING_SENDS] if sends else []
    program = [*script, str(SERVER), str(port), "--uvloop"]
    return count_instructions(program, env, echo if workload == "echo" else fanout, messages, port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--base", default=metrics_overhead.BASE)
    parser.add_argument("--only", nargs="+", choices=["echo", "fanout"], default=["echo", "fanout"])
    parser.add_argument("--results-dir", type=Path, default=run.BENCH / "results")
    args = parser.parse_args()
    n = args.messages
    rows = []
    with tempfile.TemporaryDirectory(prefix="tether-metrics-off-") as tmp:
        off = metrics_overhead.off_tree(args.base, Path(tmp))
        trees = (("off", off, False), ("on", None, False), ("on, count_sends", None, True))
        for workload in args.only:
            per: dict[str, float] = {}
            for name, path, sends in trees:
                counts = [instructions(path, sends, workload, m) for m in (n, 2 * n)]
                per[name] = (counts[1] - counts[0]) / n
                print(f"{workload} {name}: {counts} -> {per[name]:,.0f}/message", flush=True)
            base = per["off"]
            cells = [f"{per[name]:,.0f} ({per[name] / base - 1:+.2%})" for name, _, _ in trees[1:]]
            rows.append(f"| {workload} | {base:,.0f} | {' | '.join(cells)} |")
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    command = "bench/metrics_instructions.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Metrics cost in instructions, {stamp}",
        "",
        f"`.venv/bin/python {command}` (valgrind cachegrind, {n:,} and {2 * n:,} messages;",
        f"on: this tree; off: the hot path at `{args.base}`).",
        "",
        "| workload | off: instructions/message | on (cost) | on, count_sends (cost) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"metrics-instructions-{stamp}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
