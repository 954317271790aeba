"""Fan-out across 3 server processes through Redis, against 1 process in memory.

Not a test: a measurement. For each client count and each setup it starts a
private ``redis-server`` (free port, no persistence), the server processes,
and two load processes holding the WebSocket clients (raw Engine.IO v4 /
Socket.IO v5 over tether's WebSocket client, spread evenly over the servers).
One server then emits ``--messages`` events to everyone at ``--rate`` per
second, each carrying its send time; every client records its latency. It
reports deliveries per second (all events received by all clients, over the
time from the first send to the last receipt) and latency percentiles::

    .venv/bin/python bench/redis_fanout.py                  # 1,000 and 10,000 clients
    .venv/bin/python bench/redis_fanout.py --clients 1000 --messages 100
    .venv/bin/python bench/redis_fanout.py --quick          # smoke run, seconds

Results go to ``bench/results/redis_fanout-<date>.json`` and ``.md``
(``--results-dir`` elsewhere; ``--quick`` writes ``redis_fanout-quick.*``).
Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import tether  # noqa: E402
from tether import realtime  # noqa: E402

# -- the server process ---------------------------------------------------------------


async def serve_node(redis_url: str | None, prefix: str) -> None:
    if redis_url:
        from tether.realtime.adapters.redis import RedisAdapter

        adapter: realtime.Adapter = RedisAdapter(redis_url, prefix=prefix, presence=False)
    else:
        adapter = realtime.Adapter()
    server = realtime.Server(adapter=adapter, ping_interval=60, ping_timeout=60)

    @server.on("fire")
    async def fire(socket: realtime.Socket, count: int, rate: float) -> bool:
        start = time.monotonic()
        for seq in range(count):
            delay = start + seq / rate - time.monotonic() if rate else 0
            if delay > 0:
                await asyncio.sleep(delay)
            await server.emit("tick", seq, time.time())
        return True

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        print(json.dumps({"port": http.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# -- the load process --------------------------------------------------------------------


async def open_client(port: int) -> tether.Connection:
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    connection = await tether.connect(url, open_timeout=60)
    opened = await connection.recv()
    assert isinstance(opened, str) and opened.startswith("0"), opened
    await connection.send("40")
    while True:
        reply = await connection.recv()
        if isinstance(reply, str) and reply.startswith("40"):
            return connection
        if reply == "2":
            await connection.send("3")


async def run_client(
    connection: tether.Connection,
    count: int,
    latencies: list[float],
    done: list[float],
    started: asyncio.Event,
) -> None:
    seen = 0
    while seen < count:
        message = await connection.recv()
        if message == "2":
            await connection.send("3")
            continue
        if isinstance(message, str) and message.startswith('42["tick"'):
            _, _, sent = json.loads(message[2:])
            latencies.append(time.time() - sent)
            started.set()
            seen += 1
    done.append(time.time())


async def load(ports: list[int], clients: int, count: int, wait: float) -> None:
    connections = []
    for index in range(clients):
        connections.append(await open_client(ports[index % len(ports)]))
    print(json.dumps({"ready": clients}), flush=True)
    latencies: list[float] = []
    done: list[float] = []
    started = asyncio.Event()
    tasks = [
        asyncio.ensure_future(run_client(c, count, latencies, done, started)) for c in connections
    ]
    # The clock starts with the first event: the other load process may
    # still be connecting its clients until then.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(started.wait(), 600)
    _, pending = await asyncio.wait(tasks, timeout=wait)
    for task in pending:
        task.cancel()
    print(
        json.dumps(
            {"received": len(latencies), "complete": len(done), "last": max(done, default=0)}
        ),
        flush=True,
    )
    # Latencies in ms, as one line (sampled to keep the output bounded).
    step = max(1, len(latencies) // 200_000)
    print(json.dumps([round(x * 1000, 3) for x in latencies[::step]]), flush=True)
    # The orchestrator kills this process: no need to close each connection.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# -- orchestration -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Children:
    """Processes started by this run, stopped by PID whatever happens."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.processes.clear()


def read_json(process: subprocess.Popen[str]) -> Any:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"a child exited early (code {process.poll()})")
    return json.loads(line)


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [executable, *options, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                break
        time.sleep(0.01)
    client.close()
    return process, f"redis://127.0.0.1:{port}/0"


async def trigger(port: int, count: int, rate: float) -> float:
    connection = await open_client(port)
    started = time.time()
    await connection.send("421" + json.dumps(["fire", count, rate]))  # EVENT, ack id 1
    while True:
        message = await connection.recv()
        if message == "2":
            await connection.send("3")
        elif isinstance(message, str) and message.startswith("431"):
            break
    await connection.close()
    return started


def run_case(setup: str, clients: int, count: int, rate: float, redis_url: str) -> dict[str, Any]:
    children = Children()
    try:
        nodes = 3 if setup == "redis" else 1
        prefix = f"bench-{time.time_ns()}"
        ports = []
        for _ in range(nodes):
            node = children.start("--node", redis_url if setup == "redis" else "", prefix)
            ports.append(read_json(node)["port"])
        loaders = []
        per = [clients // 2, clients - clients // 2]
        wait = 60 + (count / rate * 3 if rate else 0)
        for share in per:
            loaders.append(
                children.start(
                    "--load", ",".join(map(str, ports)), str(share), str(count), str(wait)
                )
            )
        for loader in loaders:
            read_json(loader)
        started = asyncio.run(trigger(ports[0], count, rate))
        summaries = [read_json(loader) for loader in loaders]
        latencies = sorted(x for loader in loaders for x in read_json(loader))
        received = sum(s["received"] for s in summaries)
        last = max(s["last"] for s in summaries)
        elapsed = max(last - started, 1e-9)
        quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
        return {
            "setup": setup,
            "processes": nodes,
            "clients": clients,
            "messages": count,
            "rate": rate,
            "expected": clients * count,
            "received": received,
            "deliveries_per_s": round(received / elapsed),
            "p50_ms": round(quantiles[49], 2),
            "p99_ms": round(quantiles[98], 2),
            "max_ms": round(latencies[-1], 2) if latencies else None,
        }
    finally:
        children.stop()


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Fan-out: 3 processes through Redis vs 1 process in memory",
        "",
        f"{results['machine']}; redis-server {results['redis']}; {results['date']}",
        "",
        "| setup | processes | clients | messages @ rate | delivered | deliveries/s "
        "| p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        pace = f"{r['rate']:g}/s" if r["rate"] else "burst"
        lines.append(
            f"| {r['setup']} | {r['processes']} | {r['clients']:,} | {r['messages']} @ "
            f"{pace} | "
            f"{r['received']:,}/{r['expected']:,} | "
            f"{r['deliveries_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="events per second of the latency run (a burst run, unpaced, measures throughput)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 clients, 5 events")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--node", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        asyncio.run(serve_node(args.node[0] or None, args.node[1]))
        return
    if args.load:
        ports, clients, count, wait = args.load
        asyncio.run(load([int(p) for p in ports.split(",")], int(clients), int(count), float(wait)))
        return
    if args.quick:
        args.clients, args.messages, args.rate = [50], 5, 50.0
    redis_process, redis_url = start_redis()
    try:
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split()[2]
        runs = []
        for clients in args.clients:
            for rate in (0.0, args.rate):  # a burst for throughput, paced for latency
                for setup in ("single", "redis"):
                    run = run_case(setup, clients, args.messages, rate, redis_url)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    finally:
        redis_process.kill()
        redis_process.wait()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "redis": version,
        "runs": runs,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = (
        "redis_fanout-quick" if args.quick else f"redis_fanout-{time.strftime('%Y-%m-%d-%H%M%S')}"
    )
    (args.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.results_dir / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
