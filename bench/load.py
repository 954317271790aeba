"""Load and soak: many concurrent connections, messages and broadcasts flowing.

::

    python bench/load.py --connections 10000 --duration 600   # the soak
    python bench/load.py --connections 200 --duration 3       # a smoke run

A tether echo server runs in a child process (so that its memory is measured
alone); this process opens ``--connections`` client connections to it, then
for ``--duration`` seconds sends ``--rate`` messages per second in all
(spread round-robin over the connections), while the server broadcasts a
message to every connection every ``--broadcast-every`` seconds.

Reported (and written to ``bench/results/load-<time>.json`` with every sample):

* the server's RSS idle, with every connection open, and per connection;
* the server's RSS every ``--sample-every`` seconds during the traffic, and
  whether it is flat: the growth from the first to the last third of the
  samples, and a least-squares slope in MiB per minute;
* messages echoed and broadcasts received, and any connection lost.

Both processes raise their open-file limit (RLIMIT_NOFILE) to the hard limit.
Not a test: ``tests/test_load_smoke.py`` runs a few seconds of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import tether  # noqa: E402

MiB = 1024 * 1024


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_of(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the server (child process) ----------------------------------------------------------


async def serve(port: int, broadcast_every: float, compression: str) -> None:
    async def handler(connection: tether.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    server = await tether.serve(
        handler,
        "127.0.0.1",
        port,
        compression="deflate" if compression == "deflate" else None,
        backlog=4096,
        ping_interval=None,  # keepalive would add pings; traffic is the point here
    )
    print(server.port, flush=True)
    n = 0
    while True:
        await asyncio.sleep(broadcast_every)
        n += 1
        tether.broadcast(server.connections, f"broadcast {n}")


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--serve", "--broadcast-every", str(args.broadcast_every)]
    command += ["--compression", args.compression, "--connections", str(args.connections)]
    if args.uvloop:
        command.append("--uvloop")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, port


# -- the load (this process) ----------------------------------------------------------------


class Load:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args = args
        self.uri = f"ws://127.0.0.1:{port}/"
        self.connections: list[tether.Connection] = []
        self.echoed = 0
        self.broadcasts = 0
        self.lost = 0
        self.readers: list[asyncio.Task[None]] = []

    async def open_all(self) -> None:
        batch = 200
        compression: Literal["deflate"] | None = (
            "deflate" if self.args.compression == "deflate" else None
        )
        for start in range(0, self.args.connections, batch):
            count = min(batch, self.args.connections - start)
            opened = await asyncio.gather(
                *(
                    tether.connect(
                        self.uri, compression=compression, ping_interval=None, open_timeout=60
                    )
                    for _ in range(count)
                )
            )
            self.connections += opened
        for connection in self.connections:
            self.readers.append(asyncio.ensure_future(self.read(connection)))

    async def read(self, connection: tether.Connection) -> None:
        try:
            async for message in connection:
                if isinstance(message, str) and message.startswith("broadcast"):
                    self.broadcasts += 1
                else:
                    self.echoed += 1
        except tether.ConnectionClosed:
            pass
        if not self.closing:
            self.lost += 1

    closing = False

    async def traffic(self, seconds: float) -> int:
        """Send ``rate`` messages a second, round-robin; return how many were sent."""
        tick = 0.05
        per_tick = max(1, round(self.args.rate * tick))
        payload = "m" * self.args.size
        sent = 0
        index = 0
        count = len(self.connections)
        deadline = time.monotonic() + seconds
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            for _ in range(per_tick):
                connection = self.connections[index % count]
                index += 1
                if connection.open:
                    connection.send_nowait(payload)
                    sent += 1
            next_tick += tick
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        return sent

    async def close_all(self) -> None:
        self.closing = True
        await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fds = raise_fd_limit(args.connections * 2 + 1000)
    child, port = start_server(args)
    load = Load(args, port)
    result: dict[str, Any] = {"params": vars(args), "fd_limit": fds, "cpus": os.cpu_count()}
    try:
        await asyncio.sleep(0.5)
        idle = rss_of(child.pid)
        started = time.monotonic()
        await load.open_all()
        opened_in = time.monotonic() - started
        await asyncio.sleep(1)
        connected = rss_of(child.pid)
        result.update(
            connections=len(load.connections),
            open_seconds=round(opened_in, 2),
            server_rss_idle=idle,
            server_rss_connected=connected,
            server_bytes_per_connection=round((connected - idle) / max(1, len(load.connections))),
            client_rss=rss_of(os.getpid()),
        )
        print(
            f"{len(load.connections)} connections open in {opened_in:.1f} s; server RSS "
            f"{idle / MiB:.1f} MiB idle, {connected / MiB:.1f} MiB connected, "
            f"{result['server_bytes_per_connection'] / 1024:.1f} KiB per connection",
            flush=True,
        )
        samples: list[dict[str, float]] = []
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.duration:
            step = min(args.sample_every, args.duration - (time.monotonic() - t0))
            sent += await load.traffic(step)
            sample = {
                "t": round(time.monotonic() - t0, 2),
                "server_rss": rss_of(child.pid),
                "sent": sent,
                "echoed": load.echoed,
                "broadcasts": load.broadcasts,
                "lost": load.lost,
            }
            samples.append(sample)
            print(
                f"t={sample['t']:7.1f} s  server RSS {sample['server_rss'] / MiB:8.1f} MiB  "
                f"sent {sent}  echoed {load.echoed}  broadcasts {load.broadcasts}  "
                f"lost {load.lost}",
                flush=True,
            )
        # Let the last echoes arrive.
        for _ in range(50):
            if load.echoed >= sent:
                break
            await asyncio.sleep(0.1)
        result.update(
            samples=samples,
            sent=sent,
            echoed=load.echoed,
            broadcasts=load.broadcasts,
            lost=load.lost,
        )
        result.update(flatness(samples, args.duration))
        await load.close_all()
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
        if child.poll() is None:
            child.kill()
    return result


def flatness(samples: list[dict[str, float]], duration: float) -> dict[str, Any]:
    """Growth between the first and last thirds of the samples, and the slope."""
    if len(samples) < 3:
        return {"flat": None}
    third = len(samples) // 3
    first = sum(s["server_rss"] for s in samples[:third]) / third
    last = sum(s["server_rss"] for s in samples[-third:]) / third
    ts = [s["t"] for s in samples]
    ys = [s["server_rss"] for s in samples]
    mean_t, mean_y = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mean_t) ** 2 for t in ts) or 1.0
    slope = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys, strict=False)) / var
    growth = (last - first) / first
    return {
        "rss_first_third": round(first),
        "rss_last_third": round(last),
        "growth_percent": round(100 * growth, 2),
        "slope_mib_per_minute": round(slope * 60 / MiB, 3),
        # Flat: under 5% growth between the thirds (allocator noise, buffers).
        "flat": abs(growth) < 0.05,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=2000.0, help="messages per second, in all")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--broadcast-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--compression", choices=["none", "deflate"], default="none")
    parser.add_argument("--uvloop", action="store_true", help="run both sides on uvloop")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    if args.serve:
        raise_fd_limit(args.connections * 2 + 1000)
        asyncio.run(serve(0, args.broadcast_every, args.compression))
        return 0
    result = asyncio.run(run(args))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.results_dir / f"load-{args.connections}-{stamp}.json"
    result["params"] = {k: str(v) for k, v in result["params"].items()}
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"flat: {result.get('flat')} (growth {result.get('growth_percent')} %, slope "
        f"{result.get('slope_mib_per_minute')} MiB/min); lost {result.get('lost')}; "
        f"results in {path}"
    )
    ok = result.get("lost") == 0 and result["connections"] == args.connections
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
