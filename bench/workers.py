"""``tether run --workers N`` against one plain process: echo, room fan-out, sticky routing.

    .venv/bin/python bench/workers.py                # the full run: about 4 minutes
    .venv/bin/python bench/workers.py --quick        # smoke run, seconds, figures not meaningful
    .venv/bin/python bench/workers.py --workloads echo polling --setups plain 1 2

One application (``APP`` below: an ``echo`` handler whose ack returns its
arguments, ``join`` to a room, ``fanout`` to that room) is served by each
*setup* in turn, a fresh server per workload and setup:

* ``plain``: one process, ``tether.realtime.serve`` (no supervisor, no handoff,
  the in-memory adapter): the baseline of every ratio;
* ``1``, ``2``, ``4``: ``python -m tether run APP --port 0 --workers N`` (a
  supervisor and N workers on one listening socket; with N > 1 the cluster
  adapter's hub runs in the supervisor);
* ``redis-2``, ``redis-4`` (fan-out only): the same with ``--redis URL``, on a
  private ``redis-server`` (free port, no persistence) stopped by its PID.

Every process runs the loop ``--loop`` names (``auto``, the default, is
uvloop when it is installed, as for ``tether run``): the plain process, the
supervisor and the workers. Server CPU is user + system time
(psutil) of the supervisor and every worker (or the plain process) between
two readings around the measured window; Redis's own CPU is reported apart.

Workloads (the clients are this process: a lean Engine.IO v4 / Socket.IO v5
client over ``tether.connect`` with pre-encoded packets and no compression,
as in ``bench/realtime_compression.py``; its CPU% is in every table):

1. **echo**: ``--clients`` (50) WebSocket clients, each doing sequential acked
   emits of a ~150 B chat message (``421["echo",...]`` answered by
   ``431[...]``). *msgs/s*, *msgs per server CPU-s*, round-trip percentiles.
   After the upgrade a WebSocket connection stays on the worker that accepted
   it, so ``1`` vs ``plain`` is the per-message cost of running under the
   supervisor.
2. **fanout**: ``--receivers`` (1,000) WebSocket clients join one room; one
   more client emits ``fanout`` with its send time and the server emits it to
   the room; at most 4 rounds in flight. *deliveries/s*, *deliveries per
   server CPU-s*, and the delivery latency (receipt minus send time).
3. **polling**: ``--clients`` clients held on long-polling
   (``transports: ["polling"]``), each doing sequential echoes as one POST of
   the packet and one GET of the ack, **every request on a new TCP
   connection** (``Connection: close``): the worst case for the routing,
   since with N workers about (N - 1)/N of the requests are accepted by a
   worker that does not own the session and are handed to its owner (the
   workers' own counts of handed and adopted connections, logged when they
   stop, are in the table). *requests/s*, *requests per server CPU-s*, echo
   (POST + GET) percentiles.
4. **polling-keepalive**: the same, each client keeping two connections
   alive, one for its GETs and one for its POSTs, as a browser or Node's
   keep-alive agent would: a connection is handed over at most once, on its
   first request, and stays with the owner after that.

The WebSocket clients offer permessage-deflate (``realtime_compression.Client``)
and ``realtime.serve``'s default turns it down, in every setup alike (the
*deflate* field of each echo row in the JSON says so).

Pinning (as ``bench/run.py``): the server processes on the first CPU, this
process on the second (``taskset``). **On this 2-core machine that is the
point**: with the load on one core, N workers share the other, so 2 and 4
workers measure the cost of the supervisor, the handoff and the cluster hub
per message, not scaling; compare the per-CPU-second columns. ``--no-pin``
lets the workers use both cores, shared with the load.

Results: ``bench/results/workers-<date>.json`` and ``.md`` (``--quick``:
``quick-workers.*``, which bench/.gitignore ignores, so a smoke run never
replaces a full one). A benchmark, not a test: ``tests/test_bench_workers.py``
only checks a tiny run. Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from load import raise_fd_limit
from realtime_compression import (
    BATCH,
    IN_FLIGHT_ROUNDS,
    SMALL,
    Client,
    Counter,
    abort_all,
    echoed,
    emit,
    open_clients,
)
from redis_fanout import start_redis
from run import environment, pinning

from tether import _loops

BENCH = Path(__file__).resolve().parent
WS_PATH = "/socket.io/?EIO=4&transport=websocket"
POLL_PATH = "/socket.io/?EIO=4&transport=polling"
APP_MODULE = "bench_workers_app"

APP = """
from tether import realtime

server = realtime.Server(ping_interval=60, ping_timeout=60)
server.on("echo")(lambda socket, *args: args)  # the ack carries the arguments back


@server.on("join")
async def join(socket, room):
    await socket.join(room)
    return True


@server.on("fanout")
async def fanout(socket, room, seq, sent):
    await server.to(room).emit("msg", seq, sent)
"""

PLAIN = f"""
import asyncio
import sys
from tether import _loops, realtime
from {APP_MODULE} import server

async def main():
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        print(http.port, flush=True)
        await asyncio.get_running_loop().create_future()

_loops.run(main(), sys.argv[1])
"""

SETUPS: dict[str, dict[str, Any]] = {
    "plain": {"workers": None, "redis": False},
    "1": {"workers": 1, "redis": False},
    "2": {"workers": 2, "redis": False},
    "4": {"workers": 4, "redis": False},
    "redis-2": {"workers": 2, "redis": True},
    "redis-4": {"workers": 4, "redis": True},
}
WORKLOADS = ("echo", "fanout", "polling", "polling-keepalive")
LATENCY_SAMPLES = 200_000
ROUND_TIMEOUT = 10.0  # seconds a fan-out round may take before it counts as lost

# -- the servers ---------------------------------------------------------------------------


@dataclass
class Running:
    """A started setup: its port, its root process and what its log said."""

    port: int
    root: psutil.Process
    workers: list[int] = field(default_factory=list)
    handed: int = 0
    adopted: int = 0
    tail: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the root process and its children (the workers)."""
        total = 0.0
        processes = [self.root]
        with contextlib.suppress(psutil.Error):
            processes += self.root.children(recursive=True)
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total


class SupervisorLog:
    """Reads the supervisor's stderr on a thread: the port, the workers' start and
    their handoff counts when they stop; the last lines for error messages."""

    LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
    READY = re.compile(r"worker \d+ ready \(pid (\d+),")
    STOPPED = re.compile(r"handed (\d+) connections, adopted (\d+)")

    def __init__(self, stream: Any, running: Running, workers: int) -> None:
        self.running, self.workers = running, workers
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.read, args=(stream,), daemon=True)
        self.thread.start()

    def read(self, stream: Any) -> None:
        running = self.running
        for line in stream:
            running.tail = [*running.tail[-19:], line.rstrip()]
            if match := self.LISTENING.search(line):
                running.port = int(match[1])
            elif match := self.READY.search(line):
                running.workers.append(int(match[1]))
                if len(running.workers) >= self.workers and running.port:
                    self.ready.set()
            elif match := self.STOPPED.search(line):
                running.handed += int(match[1])
                running.adopted += int(match[2])
        self.ready.set()  # EOF: the supervisor exited (the caller checks the port)


def app_dir() -> Path:
    """A temporary directory holding the application module (``tether run`` imports
    ``APP_MODULE:server`` from its working directory)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    (directory / f"{APP_MODULE}.py").write_text(APP)
    return directory


@asynccontextmanager
async def serving(setup: str, args: argparse.Namespace, conns: int) -> AsyncIterator[Running]:
    """Start ``setup`` (pinned as asked); stop every process of it by PID afterwards."""
    spec = SETUPS[setup]
    limit = conns + 200
    if spec["workers"] is None:
        command = [sys.executable, "-c", PLAIN, args.loop]
    else:
        command = [sys.executable, "-m", "tether", "run", f"{APP_MODULE}:server"]
        command += ["--port", "0", "--workers", str(spec["workers"]), "--grace", "5"]
        command += ["--loop", args.loop]
        if spec["redis"]:
            command += ["--redis", args.redis_url]
    proc = subprocess.Popen(
        [*args.server_prefix, *command],
        cwd=args.app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: raise_fd_limit(limit),
    )
    running = Running(port=0, root=psutil.Process(proc.pid))
    log = None
    try:
        if spec["workers"] is None:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            running.port = int(line) if line.strip() else 0
            running.workers = [proc.pid]
        else:
            log = SupervisorLog(proc.stderr, running, spec["workers"])
            await asyncio.to_thread(log.ready.wait, 60)
        if not running.port or proc.poll() is not None:
            raise RuntimeError(f"setup {setup} did not start: {running.tail}")
        yield running
    finally:
        await stop(proc, log)


async def stop(proc: subprocess.Popen[str], log: SupervisorLog | None) -> None:
    """SIGTERM (the supervisor then stops its workers and they log their handoff
    counts), SIGKILL after 15 s; the plain process is killed at once."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if log is not None else signal.SIGKILL)
    try:
        await asyncio.to_thread(proc.wait, 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        await asyncio.to_thread(log.thread.join, 5)


# -- measuring ----------------------------------------------------------------------------

Loop = Callable[[Counter, list[float]], Awaitable[None]]


@dataclass(frozen=True)
class Reading:
    """The clock, the count of completed operations and the CPU times, at one instant."""

    wall: float
    done: int
    server_cpu: float
    client_cpu: float

    @classmethod
    def take(cls, running: Running, counter: Counter) -> Reading:
        cpu = running.cpu_seconds()
        return cls(time.perf_counter(), counter.done, cpu, time.process_time())

    def since(self, start: Reading) -> dict[str, float]:
        """Rates over the window from ``start`` to this reading."""
        wall, count = self.wall - start.wall, self.done - start.done
        server_cpu = self.server_cpu - start.server_cpu
        return {
            "count": count,
            "seconds": wall,
            "rate": count / wall,
            "server_cpu_s": server_cpu,
            "per_server_cpu_s": count / server_cpu if server_cpu else float("nan"),
            "server_cpu_pct": 100 * server_cpu / wall,
            "client_cpu_pct": 100 * (self.client_cpu - start.client_cpu) / wall,
        }


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in ms of latencies given in seconds (the last LATENCY_SAMPLES)."""
    samples = samples[-LATENCY_SAMPLES:]
    if len(samples) < 2:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": 1e3 * cuts[49], "p99_ms": 1e3 * cuts[98], "max_ms": 1e3 * max(samples)}


async def measured(running: Running, seconds: float, loops: list[Loop]) -> dict[str, float]:
    """Run ``loops`` (each counts into one Counter and appends latencies) through a
    warm-up of a fifth of ``seconds`` (at most 1 s), then measure ``seconds``."""
    counter, latencies = Counter(), list[float]()
    tasks = [asyncio.ensure_future(loop(counter, latencies)) for loop in loops]
    try:
        await asyncio.sleep(min(1.0, seconds / 5))
        start = Reading.take(running, counter)
        await asyncio.sleep(seconds)
        result = Reading.take(running, counter).since(start)
    finally:
        counter.stop = True
        await asyncio.gather(*tasks)
    return {**result, **percentiles(latencies)}


def timed(operation: Callable[[], Awaitable[None]], weight: int = 1) -> Loop:
    """A loop repeating ``operation`` until stopped; each counts ``weight`` and its latency."""

    async def loop(counter: Counter, latencies: list[float]) -> None:
        while not counter.stop:
            start = time.perf_counter()
            await operation()
            latencies.append(time.perf_counter() - start)
            counter.done += weight

    return loop


# -- the workloads -------------------------------------------------------------------------


def ws_uri(running: Running) -> str:
    return f"ws://127.0.0.1:{running.port}{WS_PATH}"


async def echo(running: Running, args: argparse.Namespace) -> dict[str, Any]:
    clients = await open_clients(ws_uri(running), args.clients)
    packet = emit("echo", SMALL)
    operations = [functools.partial(c.call, packet, echoed(packet)) for c in clients]
    try:
        result = await measured(running, args.seconds, [timed(op) for op in operations])
    finally:
        abort_all(clients)
    return {"clients": args.clients, "deflate": clients[0].negotiated, **result}


async def fanout(running: Running, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of one emit to the room; a semaphore keeps IN_FLIGHT_ROUNDS of them
    in flight: a slot comes back when the last member received its round."""
    receivers = await open_clients(ws_uri(running), args.receivers, emit("join", "room"))
    trigger = (await open_clients(ws_uri(running), 1))[0]
    slots = asyncio.Semaphore(IN_FLIGHT_ROUNDS)
    arrived: dict[int, int] = collections.defaultdict(int)
    members = len(receivers)

    async def receive(client: Client, counter: Counter, latencies: list[float]) -> None:
        while True:
            seq, sent = json.loads(client_payload(await client.recv()))
            latencies.append(time.time() - sent)
            counter.done += 1
            arrived[seq] += 1
            if arrived[seq] == members:
                del arrived[seq]
                slots.release()

    sent = [0]
    stalled: dict[str, Any] = {}

    async def rounds(counter: Counter, latencies: list[float]) -> None:
        """Send rounds until stopped, then wait for those in flight; a round still
        incomplete after ROUND_TIMEOUT stops the case and is reported (lost deliveries)."""
        try:
            while not counter.stop:
                await asyncio.wait_for(slots.acquire(), ROUND_TIMEOUT)
                await trigger.ws.send(emit("fanout", "room", sent[0], time.time(), ack=False))
                sent[0] += 1
            for _ in range(IN_FLIGHT_ROUNDS):  # the rounds in flight: nothing left unread
                await asyncio.wait_for(slots.acquire(), ROUND_TIMEOUT)
        except TimeoutError:
            stalled.update(
                incomplete_rounds={seq: members - n for seq, n in sorted(arrived.items())},
                server_log_tail=running.tail[-10:],
            )
            counter.stop = True

    readers: list[asyncio.Future[None]] = []

    async def start_readers(counter: Counter, latencies: list[float]) -> None:
        """The members' readers share the window's counter; then the rounds."""
        readers.extend(asyncio.ensure_future(receive(c, counter, latencies)) for c in receivers)
        await rounds(counter, latencies)

    try:
        result = await measured(running, args.seconds, [start_readers])
    finally:
        for task in readers:
            task.cancel()
        ended = await asyncio.gather(*readers, return_exceptions=True)
        abort_all([*receivers, trigger])
    failures = [repr(e) for e in ended if not isinstance(e, asyncio.CancelledError)]
    if failures:
        stalled.update(reader_failures=len(failures), first_failure=failures[0])
    return {"receivers": members, "rounds": sent[0], "stalled": stalled or None, **result}


def client_payload(message: str) -> str:
    """The arguments of ``42["msg",a,b]`` as the JSON array ``[a,b]``."""
    return "[" + message[len('42["msg",') :]


# -- long-polling ---------------------------------------------------------------------------


class HttpConnection:
    """HTTP/1.1 requests to 127.0.0.1:``port``: on one connection kept alive, or
    (``keep_alive=False``) on a new connection each (``Connection: close``)."""

    def __init__(self, port: int, keep_alive: bool) -> None:
        self.port, self.keep_alive = port, keep_alive
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> bytes:
        """The body of the 200 response to one request."""
        if self.stream is None:
            self.stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.stream
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if not self.keep_alive:
            head += "Connection: close\r\n"
        if method == "POST":
            head += f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
        try:
            writer.write(head.encode() + b"\r\n" + body)
            status = await reader.readline()
            headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = re.search(r"content-length:\s*(\d+)", headers)
            if length is None:
                raise RuntimeError(f"{method}: a response without Content-Length: {headers!r}")
            data = await reader.readexactly(int(length[1]))
        finally:
            if not self.keep_alive:
                self.close()
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{method} {target}: {status!r} {data[:80]!r}")
        return data

    def close(self) -> None:
        """Reset the connection: no TIME_WAIT pile-up over thousands of requests."""
        if self.stream is not None:
            self.stream[1].transport.abort()
            self.stream = None


class Poller:
    """One Socket.IO session held on long-polling: GETs on one connection, POSTs on
    another (as a browser, which polls while it sends)."""

    def __init__(self, port: int, keep_alive: bool) -> None:
        self.gets = HttpConnection(port, keep_alive)
        self.posts = HttpConnection(port, keep_alive)
        self.target = POLL_PATH

    @classmethod
    async def open(cls, port: int, keep_alive: bool) -> Poller:
        poller = cls(port, keep_alive)
        opened = (await poller.gets.request("GET", POLL_PATH)).decode()
        if not opened.startswith("0{"):
            raise RuntimeError(f"expected an Engine.IO open packet, got {opened[:40]!r}")
        poller.target = f"{POLL_PATH}&sid={json.loads(opened[1:])['sid']}"
        await poller.echo("40", "40")
        return poller

    async def echo(self, packet: str, expected: str) -> None:
        """POST ``packet``, then GET what the server answered: it must start with ``expected``."""
        await self.posts.request("POST", self.target, packet.encode())
        reply = (await self.gets.request("GET", self.target)).decode()
        if not reply.startswith(expected):
            raise RuntimeError(f"expected {expected[:40]!r}..., got {reply[:40]!r}")

    def close(self) -> None:
        self.gets.close()
        self.posts.close()


async def polling_run(
    running: Running, args: argparse.Namespace, keep_alive: bool
) -> dict[str, Any]:
    pollers: list[Poller] = []
    try:
        for start in range(0, args.clients, BATCH):
            count = min(BATCH, args.clients - start)
            opening = (Poller.open(running.port, keep_alive) for _ in range(count))
            pollers += await asyncio.gather(*opening)
        packet = emit("echo", SMALL)
        operations = [functools.partial(p.echo, packet, echoed(packet)) for p in pollers]
        result = await measured(running, args.seconds, [timed(op, 2) for op in operations])
    finally:
        for poller in pollers:
            poller.close()
    return {"clients": args.clients, "keep_alive": keep_alive, **result}


async def polling(running: Running, args: argparse.Namespace) -> dict[str, Any]:
    return await polling_run(running, args, keep_alive=False)


async def polling_keepalive(running: Running, args: argparse.Namespace) -> dict[str, Any]:
    return await polling_run(running, args, keep_alive=True)


Workload = Callable[[Running, argparse.Namespace], Awaitable[dict[str, Any]]]
RUNS: dict[str, Workload] = {
    "echo": echo,
    "fanout": fanout,
    "polling": polling,
    "polling-keepalive": polling_keepalive,
}


async def run_case(workload: str, setup: str, args: argparse.Namespace) -> dict[str, Any]:
    conns = max(args.clients, args.receivers) + 10
    row: dict[str, Any] = {"workload": workload, "setup": setup, **SETUPS[setup]}
    redis_cpu0 = args.redis_cpu()
    async with serving(setup, args, conns) as running:
        row.update(await RUNS[workload](running, args))
        row["processes"] = 1 + len(running.workers) if SETUPS[setup]["workers"] else 1
    row.update(handed=running.handed, adopted=running.adopted)
    if SETUPS[setup]["redis"]:
        row["redis_cpu_s_whole_case"] = args.redis_cpu() - redis_cpu0
    return row


# -- the report ----------------------------------------------------------------------------


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


UNITS = {
    "echo": "msgs",
    "fanout": "deliveries",
    "polling": "requests",
    "polling-keepalive": "requests",
}


def table(workload: str, rows: list[dict[str, Any]]) -> list[str]:
    unit = UNITS[workload]
    base = next((r for r in rows if r["setup"] == "plain"), None)
    latency = "echo (POST+GET)" if workload.startswith("polling") else "latency"
    lines = [
        f"| setup | {unit}/s | x plain | {unit}/server-CPU-s | x plain "
        f"| {latency} p50 ms | p99 ms | server CPU% | client CPU% | handed / adopted "
        f"| {unit}/server-CPU-s of each run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["setup"] + (" (stalled)" if r.get("stalled") else "")
        lines.append(
            f"| {name} | {r['rate']:,.0f} | {ratio(r['rate'], base and base['rate'])} "
            f"| {r['per_server_cpu_s']:,.0f} "
            f"| {ratio(r['per_server_cpu_s'], base and base['per_server_cpu_s'])} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['server_cpu_pct']:.0f} "
            f"| {r['client_cpu_pct']:.0f} | {r['handed']:,} / {r['adopted']:,} "
            f"| {', '.join(f'{x:,}' for x in r.get('all_per_server_cpu_s', []))} |"
        )
    return lines


def overhead(rows: list[dict[str, Any]]) -> list[str]:
    """The sticky routing's cost per message or request against the plain process."""

    def per(workload: str, setup: str) -> float | None:
        row = next((r for r in rows if r["workload"] == workload and r["setup"] == setup), None)
        return 1 / row["per_server_cpu_s"] if row and row["per_server_cpu_s"] else None

    lines = []
    for workload in ("echo", "polling", "polling-keepalive"):
        base = per(workload, "plain")
        for setup in ("1", "2", "4"):
            cost = per(workload, setup)
            if base and cost:
                lines.append(
                    f"- {workload}, {setup} worker(s): server CPU per {UNITS[workload][:-1]} "
                    f"{1e6 * cost:.0f} µs vs {1e6 * base:.0f} µs plain: "
                    f"{100 * (cost / base - 1):+.1f} %"
                )
    return lines


def setting(env: dict[str, Any]) -> str:
    """One line on what ran where: versions, loop, pinning, machine, its load."""
    versions = env["versions"]
    return "; ".join(
        [
            f"Python {versions['python']}",
            f"tether {versions['tether']} ({env['tether_commit']})",
            f"{env.get('loop', 'asyncio')}'s loop in every server process",
            env["pinning"],
            f"{env['cpus']} CPUs ({env['cpu']})",
            f"load average (1, 5, 15 min) before {env['loadavg_before']}, "
            f"after {env['loadavg_after']} (a shared machine)",
            f"{env['seconds']:g} s measured per case",
        ]
    )


def markdown(rows: list[dict[str, Any]], env: dict[str, Any], every: list[dict[str, Any]]) -> str:
    lines = [
        f"# tether run --workers N vs one process — {env['date']}",
        "",
        f"`{env['command']}`; bench/workers.py's docstring says what each figure means.",
        "",
        setting(env) + ".",
        "",
        f"Each row is, of {env['repeat']} interleaved run(s) of its case, the one with the "
        "median server CPU per operation (all its figures come from that run); the last "
        "column lists that figure for every run. Redis's own CPU is in the JSON only.",
        "",
        f"**What 2 cores allow**: {env['cores_note']}",
        "",
        "## Cost of the supervisor and the sticky routing (server CPU per message, "
        "against the plain process; target < 10 %)",
        "",
        *overhead(rows),
    ]
    titles = {
        "echo": f"## echo: {env['clients']} WebSocket clients, sequential acked emits (~150 B)",
        "fanout": f"## fanout: one emit to a room of {env['receivers']} WebSocket clients, "
        f"{IN_FLIGHT_ROUNDS} rounds in flight",
        "polling": f"## polling: {env['clients']} long-polling clients, echo as POST + GET, "
        "a new TCP connection per request",
        "polling-keepalive": f"## polling-keepalive: {env['clients']} long-polling clients, "
        "echo as POST + GET, each on its own kept-alive connection",
    }
    for workload in env["workloads"]:
        chosen = [r for r in rows if r["workload"] == workload]
        if chosen:
            lines += ["", titles[workload], "", *table(workload, chosen)]
    stalls = [r for r in every if r.get("stalled")]
    if stalls:
        lines += ["", f"## Stalled fan-out runs (a round incomplete after {ROUND_TIMEOUT:g} s)", ""]
        lines += [f"- {r['setup']}: `{json.dumps(r['stalled'])}`" for r in stalls]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50, help="echo and polling clients")
    parser.add_argument("--receivers", type=int, default=1000, help="fanout room members")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per case")
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case, interleaved; the median is kept"
    )
    parser.add_argument("--no-pin", action="store_true", help="let every process use every CPU")
    parser.add_argument(
        "--loop",
        choices=_loops.LOOPS,
        default="auto",
        help="every server process's event loop (auto: uvloop when installed)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: ~50 clients, 0.5 s")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    args.loop = _loops.resolve(args.loop)
    if args.quick:
        args.clients, args.receivers, args.seconds = 10, 50, 0.5
    return args


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median server CPU per operation, with every run's rate and
    per-CPU-second figure as its spread."""
    ordered = sorted(runs, key=lambda run: run["per_server_cpu_s"])
    return {
        **ordered[(len(ordered) - 1) // 2],
        "all_per_server_cpu_s": [round(run["per_server_cpu_s"]) for run in runs],
        "all_rates": [round(run["rate"]) for run in runs],
    }


def cases(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(workload, setup) pairs: Redis only for the fan-out."""
    return [
        (w, s)
        for w in args.workloads
        for s in args.setups
        if not (SETUPS[s]["redis"] and w != "fanout")
    ]


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.server_prefix, client_prefix, pin_note = pinning()
    if args.no_pin:
        args.server_prefix, client_prefix, pin_note = [], [], "not pinned (--no-pin)"
    if client_prefix:
        os.sched_setaffinity(0, {int(client_prefix[-1])})
    raise_fd_limit(max(args.clients, args.receivers) + 100)
    args.app_dir = app_dir()
    redis_process = None
    args.redis_cpu = lambda: 0.0
    if any(SETUPS[s]["redis"] for s in args.setups) and "fanout" in args.workloads:
        redis_process, args.redis_url = start_redis()
        redis = psutil.Process(redis_process.pid)
        args.redis_cpu = lambda: sum(redis.cpu_times()[:2])
    loadavg_before = os.getloadavg()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases(args)}
    try:
        for repeat in range(args.repeat):  # interleaved: the machine's load drifts
            for (workload, setup), done in runs.items():
                row = await run_case(workload, setup, args)
                print(
                    f"[{repeat + 1}/{args.repeat}] {workload} {setup}: {row['rate']:,.0f}/s, "
                    f"{row['per_server_cpu_s']:,.0f} per server CPU-s, "
                    f"client CPU {row['client_cpu_pct']:.0f}%",
                    flush=True,
                )
                done.append(row)
    finally:
        if redis_process is not None:
            redis_process.kill()
            redis_process.wait()
        for path in args.app_dir.iterdir():
            path.unlink() if path.is_file() else None
        with contextlib.suppress(OSError):
            args.app_dir.rmdir()
    rows = [median(done) for done in runs.values()]
    env = environment(pin_note)
    env.update(
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command="python bench/workers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        loadavg_before=[round(x, 2) for x in loadavg_before],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        loop=args.loop,
        workloads=args.workloads,
        setups=args.setups,
        clients=args.clients,
        receivers=args.receivers,
        seconds=args.seconds,
        repeat=args.repeat,
        cores_note=NO_PIN_NOTE if args.no_pin else CORES_NOTE,
    )
    name = "quick-workers" if args.quick else f"workers-{time.strftime('%Y-%m-%d-%H%M%S')}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / name
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "environment": env,
                "runs": rows,
                "every_run": [row for done in runs.values() for row in done],
            },
            indent=1,
        )
    )
    every = [row for done in runs.values() for row in done]
    out.with_suffix(".md").write_text(markdown(rows, env, every))
    print(f"wrote {out}.json and .md")
    return 0


CORES_NOTE = (
    "the load (this process) takes one core, so every server setup gets the other one: "
    "2 and 4 workers on it measure what the supervisor, the handoff and the cluster hub "
    "cost per message, not scaling (more workers than free cores cannot go faster). "
    "Compare the per-server-CPU-second columns; the rates say how fast one core went."
)

NO_PIN_NOTE = (
    "nothing pinned: the workers may use both cores, which the load (this process) "
    "shares; with more workers than the core the load leaves, rates show contention, "
    "not scaling. Compare the per-server-CPU-second columns."
)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
