"""The realtime layer (Socket.IO over WebSocket) with permessage-deflate in several modes.

    .venv/bin/python bench/realtime_compression.py            # defaults: about 3 minutes
    .venv/bin/python bench/realtime_compression.py --quick --conns 20 --clients 5 --seconds 0.5
    .venv/bin/python bench/realtime_compression.py --modes off threshold

It measures a :class:`tether.realtime.Server` served by :func:`tether.realtime.serve`,
so that the realtime default can be chosen on figures. Every mode passes
``compression=`` to ``realtime.serve`` explicitly, so the results do not depend
on its default:

* ``off``: ``compression=None``;
* ``deflate``: ``DeflateOptions()``: 15-bit windows, contexts kept, ``min_size=0``
  (every message compressed: what ``realtime.serve`` did until the default changed);
* ``threshold``: ``DeflateOptions(min_size=1024)``: messages under 1 KiB go
  uncompressed (socket.io's ``threshold`` when a user turns ``perMessageDeflate`` on);
* ``threshold-small``: the same with 11-bit windows both ways and zlib ``mem_level=4``.

The client always offers deflate as a browser does (``tether.connect(uri,
compression="deflate")``: it compresses every message it sends when the server
agrees); each row says whether it was negotiated. The client speaks the wire
protocol itself over ``tether.connect`` with pre-encoded packets (Engine.IO
``0{...}`` open, ``40`` connect, ``42`` events, ``43`` acks, pings ``2``
answered with ``3``) so that it costs far less than a Socket.IO client; its CPU%
is in every table anyway.

**What decides whether a threshold saves memory** (``src/tether/protocol/deflate.py``):
``PerMessageDeflate`` creates its zlib compressor on the first message it
compresses and its decompressor on the first compressed message it receives
(both start as ``None``; with no context takeover they are dropped again after
each message). So with ``min_size=1024`` a connection to which the server has
only sent messages under 1 KiB has no compressor at all: no 15-bit window, hash
table and pending buffer (about 256 KiB of zlib state at ``mem_level=8``, part
of it touched). The decompressor still exists as soon as the client sends one
compressed message, since a client compresses whatever it sends (browsers do).
Room broadcasts (``server.to(room).emit``) never compress in any mode:
``Session.send_outgoing`` shares one uncompressed frame between all the
WebSocket sessions (``tether.broadcast``'s rule; RFC 7692 lets any message go
uncompressed), so the fan-out workload shows the cost of the negotiated
extension without any deflate work on the server's side.

Workloads, each with a fresh server process (uvloop when installed) per mode,
pinned to one CPU while this process (the clients) is pinned to another
(``taskset``/affinity, as ``bench/run.py`` does):

1. **memory**: ``--conns`` Socket.IO connections (default 1,000), each connects to
   ``/``, emits a ~150 B chat message and a ~2 KiB one, both acked with a small
   ``true``, then stays idle. *KiB/conn*: the server's RSS growth per
   connection. *KiB/conn after 2 KiB sent*: the same after each client then
   emits the 2 KiB message once more to an ``echo`` handler whose ack carries
   it back, i.e. after the server has sent every connection one message above
   the threshold (so the threshold modes hold a compressor too).
2. **echo**: ``--clients`` concurrent clients (default 50), each doing sequential
   acked emits (the handler returns its arguments as the ack) for ``--seconds``
   (default 5) with a ~150 B message, then a ~4 KiB compressible one. *acks/s*;
   *server CPU ms / 1000 acks* (user + system from ``/proc/<pid>/stat``): the
   figure to compare, since it does not depend on how busy the machine was.
3. **fanout**: ``--receivers`` clients (default 200) in one room and one more
   client emitting ``fanout`` events, each of which the server sends to the room
   (``server.to("room").emit``); at most 4 rounds are in flight. *deliveries/s*
   and *server CPU ms / 1000 deliveries*, for a ~150 B and a ~4 KiB message.

The memory workload first opens and closes 5 connections, so that what the
first connection costs once (imports, caches) is not counted per connection.
The rate workloads measure after a warm-up of a fifth of ``--seconds`` (at
most 1 s); acks and deliveries are counted between two readings of the
server's CPU time.

Every table has the ratio of each mode against ``off`` measured in the same run
(``x off``; above 1 means more memory, more acks, more CPU). Results go to
``bench/results/realtime_compression-<date>.json`` and ``.md`` (``quick-`` and
git-ignored with ``--quick``), with the environment: Python, tether, uvloop,
pinning, the load average before and after (the machine is shared). A benchmark,
not a test: tests/test_bench_realtime_compression.py only checks a tiny run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import raise_fd_limit, rss_of
from run import environment, pinning

import tether

BENCH = Path(__file__).resolve().parent
PATH = "/socket.io/?EIO=4&transport=websocket"
BATCH = 50  # connections opened at once
IN_FLIGHT_ROUNDS = 4  # fan-out rounds the trigger may have outstanding
ACK = "431"  # every acked emit uses id 1: each client has one in flight at a time

MODES: dict[str, dict[str, Any] | None] = {
    "off": None,
    "deflate": {},
    "threshold": {"min_size": 1024},
    "threshold-small": {
        "min_size": 1024,
        "server_max_window_bits": 11,
        "client_max_window_bits": 11,
        "mem_level": 4,
    },
}
WORKLOADS = ("memory", "echo", "fanout")

SERVER = """
import asyncio, json, sys
import tether
from tether import realtime
try:
    import uvloop
except ImportError:
    uvloop = None

async def main(options):
    server = realtime.Server()

    @server.on("chat")
    def chat(socket, message):
        return True

    @server.on("echo")
    def echo(socket, *args):
        return args

    @server.on("join")
    async def join(socket):
        await socket.join("room")
        return True

    @server.on("fanout")
    async def fanout(socket, *args):
        await server.to("room").emit("msg", *args)

    compression = None if options is None else tether.DeflateOptions(**options)
    async with realtime.serve(server, "127.0.0.1", 0, compression=compression) as http:
        print(http.port, uvloop is not None, flush=True)
        await asyncio.get_running_loop().create_future()

options = json.loads(sys.argv[1])
(uvloop.run if uvloop else asyncio.run)(main(options))
"""

# -- messages ------------------------------------------------------------------------------

TEXT = (
    "the meeting moved to thursday afternoon, can you bring the slides and the notes from "
    "last week? I pushed a fix for the login page and the build is green again; lunch at "
    "noon near the station sounds good, see you there"
)
WORDS = TEXT.split(" ")


def chat_message(index: int) -> dict[str, Any]:
    """One chat-like message (~150 B as JSON), varied so it compresses like real text."""
    start = (index * 7) % len(WORDS)
    text = " ".join((WORDS + WORDS)[start : start + 9 + index % 5])
    return {
        "room": "lobby",
        "user": f"user{index % 11}",
        "text": text,
        "ts": 1764680000 + index * 37,
        "id": f"m{index:06d}",
    }


def history(size: int) -> list[dict[str, Any]]:
    """Chat messages adding up to at least ``size`` bytes of JSON (compressible text)."""
    messages: list[dict[str, Any]] = []
    while len(json.dumps(messages, separators=(",", ":"))) < size:
        messages.append(chat_message(len(messages)))
    return messages


def emit(event: str, *args: Any, ack: bool = True) -> str:
    """A Socket.IO EVENT packet for the default namespace (with ack id 1 if ``ack``)."""
    return ("421" if ack else "42") + json.dumps([event, *args], separators=(",", ":"))


def echoed(packet: str) -> str:
    """The ack the ``echo`` handler sends for ``packet`` (its arguments)."""
    return ACK + "[" + packet[len('421["echo",') :]


SMALL = chat_message(3)
MEDIUM = history(2048)  # the memory workload's larger message
LARGE = history(4096)  # echo and fan-out's compressible message
SIZES = {"small": SMALL, "4 KiB": LARGE}


# -- the client side ---------------------------------------------------------------------


class Client:
    """One Socket.IO session over tether's WebSocket client, driven packet by packet."""

    __slots__ = ("ws",)

    def __init__(self, ws: tether.Connection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, uri: str) -> Client:
        client = cls(await tether.connect(uri, compression="deflate"))
        opened = await client.recv()
        if not opened.startswith("0{"):
            raise RuntimeError(f"expected an Engine.IO open packet, got {opened[:40]!r}")
        await client.ws.send("40")
        connected = await client.recv()
        if not connected.startswith("40{"):
            raise RuntimeError(f"expected a Socket.IO CONNECT, got {connected[:40]!r}")
        return client

    @property
    def negotiated(self) -> bool:
        return self.ws.protocol.deflate is not None

    async def recv(self) -> str:
        """The next packet that is not an Engine.IO ping (pings are answered)."""
        while True:
            message = await self.ws.recv()
            if message == "2":
                await self.ws.send("3")
                continue
            if not isinstance(message, str):
                raise RuntimeError("unexpected binary message")
            return message

    async def call(self, packet: str, expected: str = ACK) -> None:
        """Send an acked emit and wait for its ack, which must start with ``expected``."""
        await self.ws.send(packet)
        reply = await self.recv()
        if not reply.startswith(expected):
            raise RuntimeError(f"expected {expected[:40]!r}..., got {reply[:40]!r}")

    def abort(self) -> None:
        self.ws.transport.abort()  # type: ignore[union-attr]


async def open_clients(uri: str, count: int, first: str | None = None) -> list[Client]:
    """``count`` sessions, ``BATCH`` at a time; each sends the acked emit ``first`` if given."""

    async def one() -> Client:
        client = await Client.open(uri)
        if first is not None:
            await client.call(first)
        return client

    clients: list[Client] = []
    for start in range(0, count, BATCH):
        clients += await asyncio.gather(*(one() for _ in range(min(BATCH, count - start))))
    return clients


async def each(clients: list[Client], packet: str, expected: str = ACK) -> None:
    """Every client sends ``packet`` and waits for its ack, ``BATCH`` at a time."""
    for start in range(0, len(clients), BATCH):
        await asyncio.gather(*(c.call(packet, expected) for c in clients[start : start + BATCH]))


def abort_all(clients: list[Client]) -> None:
    for client in clients:
        client.abort()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Counter:
    """What the workload's tasks have completed; the main task reads it in windows."""

    done: int = 0
    stop: bool = False


async def window(pid: int, counter: Counter, seconds: float) -> dict[str, float]:
    """Let the running tasks warm up, then count what they complete in ``seconds``:
    the rate, and the server's and this process's CPU over the same window."""
    await asyncio.sleep(min(1.0, seconds / 5))
    t0, n0, s0, c0 = time.perf_counter(), counter.done, cpu_seconds(pid), time.process_time()
    await asyncio.sleep(seconds)
    t1, n1, s1, c1 = time.perf_counter(), counter.done, cpu_seconds(pid), time.process_time()
    counter.stop = True
    wall, count, server_cpu = t1 - t0, n1 - n0, s1 - s0
    return {
        "count": count,
        "seconds": wall,
        "rate": count / wall,
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_1000": 1e6 * server_cpu / count if count else float("nan"),
        "server_cpu_pct": 100 * server_cpu / wall,
        "client_cpu_pct": 100 * (c1 - c0) / wall,
    }


# -- the workloads -----------------------------------------------------------------------


async def memory(uri: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    warm = await open_clients(uri, 5, emit("chat", SMALL))  # first-use costs, not per connection
    abort_all(warm)
    await asyncio.sleep(0.3)
    before = rss_of(pid)
    clients = await open_clients(uri, args.conns, emit("chat", SMALL))
    try:
        await each(clients, emit("chat", MEDIUM))
        await asyncio.sleep(0.3)
        after = rss_of(pid)
        packet = emit("echo", MEDIUM)
        await each(clients, packet, echoed(packet))
        await asyncio.sleep(0.3)
        after_sent = rss_of(pid)
        return {
            "negotiated": clients[0].negotiated,
            "conns": args.conns,
            "rss_before": before,
            "rss_after": after,
            "rss_after_sent": after_sent,
            "kib_per_conn": (after - before) / args.conns / 1024,
            "kib_per_conn_after_sent": (after_sent - before) / args.conns / 1024,
        }
    finally:
        abort_all(clients)


async def echo_one(
    clients: list[Client], pid: int, payload: Any, seconds: float
) -> dict[str, float]:
    packet = emit("echo", payload)
    expected = echoed(packet)
    counter = Counter()

    async def loop(client: Client) -> None:
        while not counter.stop:
            await client.call(packet, expected)
            counter.done += 1

    tasks = [asyncio.ensure_future(loop(client)) for client in clients]
    try:
        return await window(pid, counter, seconds)
    finally:
        counter.stop = True
        await asyncio.gather(*tasks)


async def echo(uri: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    clients = await open_clients(uri, args.clients)
    try:
        sizes = {name: await echo_one(clients, pid, p, args.seconds) for name, p in SIZES.items()}
        return {"negotiated": clients[0].negotiated, "clients": args.clients, "sizes": sizes}
    finally:
        abort_all(clients)


async def fanout_one(
    trigger: Client, receivers: list[Client], pid: int, payload: Any, seconds: float
) -> dict[str, float]:
    packet = emit("fanout", payload, ack=False)
    counter = Counter()
    progress = asyncio.Event()
    target = [0]  # deliveries the trigger waits for

    async def receive(client: Client) -> None:
        while True:
            await client.recv()
            counter.done += 1
            if counter.done >= target[0]:
                progress.set()

    async def until(count: int) -> None:
        target[0] = count
        while counter.done < count:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 10)

    async def rounds() -> None:
        sent = 0
        while not counter.stop:
            await trigger.ws.send(packet)
            sent += 1
            await until((sent - IN_FLIGHT_ROUNDS) * len(receivers))
        await until(sent * len(receivers))  # the rounds in flight, so the next size starts clean

    tasks = [asyncio.ensure_future(receive(client)) for client in receivers]
    sender = asyncio.ensure_future(rounds())
    try:
        return await window(pid, counter, seconds)
    finally:
        counter.stop = True
        await sender
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def fanout(uri: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    receivers = await open_clients(uri, args.receivers, emit("join"))
    trigger = await Client.open(uri)
    try:
        sizes = {
            name: await fanout_one(trigger, receivers, pid, payload, args.seconds)
            for name, payload in SIZES.items()
        }
        return {"negotiated": trigger.negotiated, "receivers": args.receivers, "sizes": sizes}
    finally:
        abort_all([*receivers, trigger])


Workload = Callable[[str, int, argparse.Namespace], Awaitable[dict[str, Any]]]
RUNS: dict[str, Workload] = {"memory": memory, "echo": echo, "fanout": fanout}


# -- one mode, the whole run -------------------------------------------------------------


@asynccontextmanager
async def server_process(
    mode: str, prefix: list[str], conns: int
) -> AsyncIterator[tuple[int, int, bool]]:
    """A fresh realtime server in ``mode``: its port, its pid and whether it runs uvloop."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", SERVER, json.dumps(MODES[mode])],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: raise_fd_limit(conns + 100),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        if not line:
            raise RuntimeError(f"the {mode} server did not start")
        port, uvloop = line.split()
        yield int(port), proc.pid, uvloop == "True"
    finally:
        proc.kill()
        proc.wait()


async def run_mode(workload: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    conns = max(args.conns, args.clients, args.receivers)
    async with server_process(mode, args.server_prefix, conns) as (port, pid, uvloop):
        row = await RUNS[workload](f"ws://127.0.0.1:{port}{PATH}", pid, args)
    args.uvloop = uvloop
    return {"workload": workload, "mode": mode, "options": MODES[mode], **row}


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    base = next((r for r in rows if r["mode"] == "off"), None)
    lines = [
        "| mode | negotiated | KiB/conn | x off | KiB/conn after 2 KiB sent | x off "
        "| RSS before MiB | RSS after MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        idle, sent = r["kib_per_conn"], r["kib_per_conn_after_sent"]
        lines.append(
            f"| {r['mode']} | {'yes' if r['negotiated'] else 'no'} | {idle:.1f} "
            f"| {ratio(idle, base['kib_per_conn']) if base else '-'} | {sent:.1f} "
            f"| {ratio(sent, base['kib_per_conn_after_sent']) if base else '-'} "
            f"| {r['rss_before'] / 2**20:.1f} | {r['rss_after_sent'] / 2**20:.1f} |"
        )
    return lines


def rate_table(rows: list[dict[str, Any]], unit: str) -> list[str]:
    base = next((r for r in rows if r["mode"] == "off"), None)
    lines = [
        f"| message | mode | negotiated | {unit}/s | x off | server CPU ms / 1000 {unit} "
        "| x off | server CPU% | client CPU% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        for r in rows:
            m = r["sizes"][size]
            b = base["sizes"][size] if base else None
            cpu = m["server_cpu_ms_per_1000"]
            lines.append(
                f"| {size} | {r['mode']} | {'yes' if r['negotiated'] else 'no'} "
                f"| {m['rate']:,.0f} | {ratio(m['rate'], b['rate']) if b else '-'} "
                f"| {cpu:.1f} | {ratio(cpu, b['server_cpu_ms_per_1000']) if b else '-'} "
                f"| {m['server_cpu_pct']:.0f} | {m['client_cpu_pct']:.0f} |"
            )
    return lines


def markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    versions = env["versions"]
    lines = [
        f"# Realtime layer with permessage-deflate — {env['date']}",
        "",
        "`.venv/bin/python bench/realtime_compression.py` (bench/realtime_compression.py's "
        "docstring says what each figure means). "
        f"Python {versions['python']}, tether {versions['tether']} ({env['tether_commit']}), "
        f"server loop: {'uvloop ' + str(versions['uvloop']) if env['uvloop'] else 'asyncio'}; "
        f"{env['pinning']}; {env['cpus']} CPUs ({env['cpu']}). Load average (1, 5, 15 min) "
        f"before: {env['loadavg_before']}, after: {env['loadavg_after']}.",
        "",
        "Modes: " + "; ".join(f"`{m}` = {describe(MODES[m])}" for m in env["modes"]) + ".",
    ]
    titles = {
        "memory": f"## memory: {env['conns']} idle connections, server RSS growth per connection",
        "echo": f"## echo: {env['clients']} clients, sequential acked emits, "
        f"{env['seconds']:g} s per message size",
        "fanout": f"## fanout: one emit to a room of {env['receivers']}, "
        f"{IN_FLIGHT_ROUNDS} rounds in flight, {env['seconds']:g} s per message size",
    }
    for workload in env["workloads"]:
        chosen = [r for r in rows if r["workload"] == workload]
        lines += ["", titles[workload], ""]
        if workload == "memory":
            lines += memory_table(chosen)
        else:
            lines += rate_table(chosen, "acks" if workload == "echo" else "deliveries")
    return "\n".join(lines) + "\n"


def describe(options: dict[str, Any] | None) -> str:
    if options is None:
        return "`compression=None`"
    inside = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"`DeflateOptions({inside})`"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--conns", type=int, default=1000, help="memory workload connections")
    parser.add_argument("--clients", type=int, default=50, help="echo workload clients")
    parser.add_argument("--receivers", type=int, default=200, help="fanout room members")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per size")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="results named quick-*, not kept")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    return parser.parse_args(argv)


def summary(row: dict[str, Any]) -> str:
    if row["workload"] == "memory":
        return f"{row['kib_per_conn']:.1f} KiB/conn, {row['kib_per_conn_after_sent']:.1f} after"
    return ", ".join(
        f"{size} {m['rate']:,.0f}/s {m['server_cpu_ms_per_1000']:.1f} ms/1000"
        for size, m in row["sizes"].items()
    )


def write_results(args: argparse.Namespace, results: dict[str, Any], table: str) -> Path:
    """Write ``<results-dir>/[quick-]realtime_compression-<date>.json`` and ``.md``;
    return the path without its suffix."""
    name = ("quick-" if args.quick else "") + "realtime_compression"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{name}-{time.strftime('%Y-%m-%d-%H%M%S')}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(table)
    return out


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.server_prefix, client_prefix, pin_note = pinning()
    if client_prefix:
        os.sched_setaffinity(0, {int(client_prefix[-1])})
    raise_fd_limit(max(args.conns, args.clients, args.receivers) + 100)
    loadavg_before = os.getloadavg()
    rows = []
    for workload in args.workloads:
        for mode in args.modes:
            row = await run_mode(workload, mode, args)
            print(f"{workload} {mode}: {summary(row)}", flush=True)
            rows.append(row)
    env = environment(pin_note)
    env.update(
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        uvloop=args.uvloop,
        loadavg_before=[round(x, 2) for x in loadavg_before],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        modes=args.modes,
        workloads=args.workloads,
        **{name: getattr(args, name) for name in ("conns", "clients", "receivers", "seconds")},
        message_bytes={
            name: len(json.dumps(message, separators=(",", ":")))
            for name, message in (("small", SMALL), ("2 KiB", MEDIUM), ("4 KiB", LARGE))
        },
    )
    out = write_results(args, {"environment": env, "runs": rows}, markdown(rows, env))
    print(f"wrote {out}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
