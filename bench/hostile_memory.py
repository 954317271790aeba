"""What one hostile client costs a tether realtime server, per connection, measured.

::

    python bench/hostile_memory.py                      # every attack, 20 attackers, 4 s each
    python bench/hostile_memory.py --attackers 2 --seconds 1 --only ws-acks-unread   # smoke

A realtime server shaped like the README's chat (connection state recovery
on, static files, an ``echo`` event that acknowledges its arguments, a
``slow`` event whose handler takes 0.5 s, a namespace ``/slow-auth`` whose
middleware takes 2 s) runs in a child process, with a raw WebSocket server
whose handler never reads (permessage-deflate on) beside it. For each attack,
``--attackers`` clients in this process attack at once for ``--seconds``; the
child's resident memory (VmRSS) is sampled every 20 ms, and the growth over
the idle figure, divided by the number of attackers, is the cost of one
attacking connection. Nothing is freed in between: each attack starts from
the memory the previous one left, which is its own idle figure.

Results go to ``bench/results/hostile-memory-<time>.json`` and ``.md``;
docs/security.md quotes them. Not a test: ``tests/test_bench_smoke.py`` runs a
short pass of one attack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from load import raise_fd_limit, rss_of  # noqa: E402

import tether  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
RS = "\x1e"  # Engine.IO v4 payload record separator


# -- the server (child process) ------------------------------------------------------------


async def serve(static_dir: str) -> None:
    from tether import realtime

    server = realtime.Server(connection_state_recovery=True, static_files={"/": static_dir})

    @server.on("join")
    async def join(socket: realtime.Socket, room: str) -> str:
        for old in socket.rooms - {socket.sid}:
            await socket.leave(old)
        await socket.join(room)
        return room

    @server.on("echo")
    def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("slow")
    async def slow(socket: realtime.Socket, *args: Any) -> None:
        await asyncio.sleep(0.5)  # like a database call

    async def slow_auth(socket: realtime.Socket, auth: Any) -> None:
        await asyncio.sleep(2)  # like a token check against another service

    server.of("/slow-auth").use(slow_auth)

    async def never_reads(connection: tether.Connection) -> None:
        await connection.wait_closed()

    async with (
        realtime.serve(server, "127.0.0.1", 0) as http,
        tether.serve(never_reads, "127.0.0.1", 0, compression="deflate") as raw,
    ):
        print(http.port, raw.port, flush=True)
        await asyncio.get_running_loop().create_future()


# -- the attacks (this process) ------------------------------------------------------------


class Target:
    def __init__(self, port: int, raw_port: int) -> None:
        self.port = port
        self.raw_port = raw_port

    def ws_url(self, sid: str | None = None) -> str:
        query = "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
        return f"ws://127.0.0.1:{self.port}/socket.io/?{query}"


async def _sio_websocket(target: Target, namespace: str = "/") -> tether.Connection:
    """A WebSocket session that sent CONNECT for ``namespace`` (answer not awaited)."""
    ws = await tether.connect(target.ws_url(), compression=None, open_timeout=10)
    await ws.recv()  # the open packet
    await ws.send("40" if namespace == "/" else f"40{namespace},")
    return ws


async def _flood(ws: tether.Connection, packet: str | bytes) -> None:
    """Send ``packet`` until the server stops reading us (send() then waits) or closes."""
    with contextlib.suppress(tether.ConnectionClosed):
        while True:
            await ws.send(packet)
            # send() only waits when the server stops reading; let the other
            # attackers (and the sampling) run meanwhile.
            await asyncio.sleep(0)


async def ws_acks_unread(target: Target) -> None:
    """Events that ask for an ack, 1 KiB each, and never read the replies."""
    ws = await _sio_websocket(target)
    await _flood(ws, '421["echo","' + "x" * 1024 + '"]')


async def slow_handler_flood(target: Target) -> None:
    """Events for a handler that takes 0.5 s, as fast as the server reads them."""
    ws = await _sio_websocket(target)
    reader = asyncio.ensure_future(_drain_reader(ws))
    try:
        await _flood(ws, '42["slow","' + "x" * 100 + '"]')
    finally:
        reader.cancel()


async def _drain_reader(ws: tether.Connection) -> None:
    with contextlib.suppress(tether.ConnectionClosed):
        async for message in ws:
            if message == "2":
                await ws.send("3")


async def events_while_connecting(target: Target) -> None:
    """Events for a namespace whose middleware is still running."""
    ws = await _sio_websocket(target, "/slow-auth")
    await _flood(ws, '42/slow-auth,["echo","' + "x" * 100 + '"]')


async def _http(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", target.port)


def _request(method: str, path: str, body: str = "") -> bytes:
    data = body.encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def _response(reader: asyncio.StreamReader, status: int = 200) -> bytes:
    """The body of the next answer; ConnectionError unless it has ``status``."""
    head = await reader.readuntil(b"\r\n\r\n")
    size = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":", 1)[1])
    body = await reader.readexactly(size)
    if int(head.split(b" ", 2)[1]) != status:
        raise ConnectionError(f"answered {head.split(b' ', 2)[1].decode()}")
    return body


async def polling_acks_no_get(target: Target) -> None:
    """A long-polling session that POSTs events asking for acks and never GETs."""
    reader, writer = await _http(target)
    try:
        writer.write(_request("GET", "/socket.io/?EIO=4&transport=polling"))
        sid = json.loads((await _response(reader)).decode()[1:])["sid"]
        path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        writer.write(_request("POST", path, "40"))
        await _response(reader)
        batch = RS.join(f'42{n}["echo","' + "x" * 1024 + '"]' for n in range(64))
        while True:
            writer.write(_request("POST", path, batch))
            await _response(reader)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the session was closed (400 "Session ID unknown"), or the connection
    finally:
        writer.close()


async def _pipeline(target: Target, request: bytes, *, read: bool) -> None:
    """Write ``request`` over and over on one keep-alive connection, as fast as
    the server takes it; read the answers or not."""
    reader, writer = await _http(target)

    async def discard() -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                pass

    task = asyncio.ensure_future(discard()) if read else None
    try:
        while True:
            writer.write(request * 64)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if task is not None:
            task.cancel()
        writer.close()


async def http_pipelined_static_unread(target: Target) -> None:
    """Pipelined GETs of a 64 KiB static file; the answers are never read."""
    await _pipeline(target, _request("GET", "/big.bin"), read=False)


async def http_pipelined_tiny(target: Target) -> None:
    """Tiny pipelined requests written at line rate while the answers are read."""
    await _pipeline(target, _request("GET", "/missing"), read=True)


async def raw_deflate_queue(target: Target) -> None:
    """Raw WebSocket, permessage-deflate: 1 MiB messages of zeros (about 1 KiB
    compressed) to a handler that never reads."""
    ws = await tether.connect(
        f"ws://127.0.0.1:{target.raw_port}/", compression="deflate", max_message_size=2 * MiB
    )
    await _flood(ws, bytes(MiB - 64))


ATTACKS: dict[str, Callable[[Target], Awaitable[None]]] = {
    "ws-acks-unread": ws_acks_unread,
    "polling-acks-no-get": polling_acks_no_get,
    "slow-handler-flood": slow_handler_flood,
    "events-while-connecting": events_while_connecting,
    "http-pipelined-static-unread": http_pipelined_static_unread,
    "http-pipelined-tiny": http_pipelined_tiny,
    "raw-deflate-queue": raw_deflate_queue,
}


async def measure(
    name: str, target: Target, pid: int, attackers: int, seconds: float
) -> dict[str, Any]:
    attack = ATTACKS[name]
    idle = rss_of(pid)
    peak = idle
    tasks = [asyncio.ensure_future(attack(target)) for _ in range(attackers)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_of(pid))
        await asyncio.sleep(0.02)
    ended = sum(task.done() for task in tasks)  # the server closed them (or they failed)
    errors = [repr(t.exception()) for t in tasks if t.done() and t.exception() is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "attack": name,
        "attackers": attackers,
        "seconds": seconds,
        "rss_idle": idle,
        "rss_peak": peak,
        "bytes_per_attacker": max(0, peak - idle) // attackers,
        "ended_by_server": ended,
        "errors": sorted(set(errors))[:3],
    }


def markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        f"# Hostile clients: server memory per attacking connection ({env['time']})",
        "",
        f"`{env['command']}` on {env['cpus']} CPUs, Python {env['python']}.",
        "",
        "| attack | attackers | seconds | server RSS idle | peak | per attacker "
        "| ended by server |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['attack']} | {row['attackers']} | {row['seconds']} "
            f"| {row['rss_idle'] / MiB:.1f} MiB | {row['rss_peak'] / MiB:.1f} MiB "
            f"| {row['bytes_per_attacker'] / KiB:.0f} KiB | {row['ended_by_server']} |"
        )
    return "\n".join(lines) + "\n"


def start_server(static_dir: Path) -> tuple[subprocess.Popen[str], Target]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(static_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port, raw_port = map(int, child.stdout.readline().split())
    return child, Target(port, raw_port)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    raise_fd_limit(4096)
    with tempfile.TemporaryDirectory() as static:
        return await run_attacks(args, Path(static))


async def run_attacks(args: argparse.Namespace, static_dir: Path) -> list[dict[str, Any]]:
    (static_dir / "big.bin").write_bytes(os.urandom(64 * KiB))
    rows = []
    for name in args.only or list(ATTACKS):
        # A new server per attack: memory freed after one attack stays in the
        # allocator, where the next could reuse it without the RSS showing it.
        child, target = start_server(static_dir)
        try:
            row = await measure(name, target, child.pid, args.attackers, args.seconds)
        finally:
            child.terminate()
            child.wait(10)
        rows.append(row)
        print(
            f"{name}: {row['bytes_per_attacker'] / KiB:.0f} KiB per attacker "
            f"(peak {row['rss_peak'] / MiB:.1f} MiB, idle {row['rss_idle'] / MiB:.1f} MiB, "
            f"{row['ended_by_server']}/{args.attackers} ended by the server)",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--serve", metavar="STATIC_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--attackers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--only", nargs="*", choices=list(ATTACKS))
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    rows = asyncio.run(run(args))
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    env = {
        "time": stamp,
        "command": "python bench/hostile_memory.py " + " ".join(argv or sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"hostile-memory-{stamp}.json").write_text(
        json.dumps({"env": env, "rows": rows}, indent=1)
    )
    (out / f"hostile-memory-{stamp}.md").write_text(markdown(rows, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
