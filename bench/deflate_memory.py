"""Server memory per connection with permessage-deflate, in each context mode.

    .venv/bin/python bench/deflate_memory.py                 # 2,000 connections per mode
    .venv/bin/python bench/deflate_memory.py --conns 20 --quick

For each mode a fresh tether server process (uvloop when installed) takes
``--conns`` client connections from this process. Every client sends one 1 KiB
text message and reads its echo, so both of the server's compression contexts
(the inflater for the client's messages, the compressor for its own) have been
used; then every connection stays open and idle. The server's RSS before the
connections and after the echoes, divided by the connections, is the figure.

Modes:

* ``off``: ``compression=None``, the baseline;
* ``default``: ``DeflateOptions()``, 15-bit windows, contexts kept between
  messages (the best ratio; RFC 7692's default);
* ``small``: 11-bit windows both ways and zlib ``mem_level=4``, contexts
  kept (the window is the smaller part of a compressor: its hash tables,
  ``2**(mem_level + 9)`` bytes, are 128 KiB at the default level 8);
* ``no-context``: ``server_no_context_takeover`` and
  ``client_no_context_takeover``: both contexts are freed after each message,
  so an idle connection holds none (the limited-context mode).

Results go to ``bench/results/deflate_memory-<date>.json`` and ``.md``
(``quick-`` and git-ignored with ``--quick``). A benchmark, not a test: the
smoke test only checks that a tiny run completes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from load import raise_fd_limit, rss_of

import tether

BENCH = Path(__file__).resolve().parent
MESSAGE = "tether " * 146  # ~1 KiB of compressible text

MODES: dict[str, dict[str, Any] | None] = {
    "off": None,
    "default": {},
    "small": {"server_max_window_bits": 11, "client_max_window_bits": 11, "mem_level": 4},
    "no-context": {"server_no_context_takeover": True, "client_no_context_takeover": True},
}

SERVER = """
import asyncio, json, sys
import tether
try:
    import uvloop
except ImportError:
    uvloop = None

async def main(options):
    async def echo(connection):
        async for message in connection:
            await connection.send(message)
    compression = None if options is None else tether.DeflateOptions(**options)
    async with tether.serve(echo, "127.0.0.1", 0, compression=compression) as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().create_future()

options = json.loads(sys.argv[1])
(uvloop.run if uvloop else asyncio.run)(main(options))
"""


async def measure(mode: str, conns: int) -> dict[str, Any]:
    options = MODES[mode]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: raise_fd_limit(conns + 100),
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.to_thread(proc.stdout.readline))
        before = rss_of(proc.pid)
        compression = None if options is None else tether.DeflateOptions(**options)
        uri = f"ws://127.0.0.1:{port}/"
        clients = []
        started = time.perf_counter()
        for _ in range(conns):
            client = await tether.connect(uri, compression=compression)
            await client.send(MESSAGE)
            if await client.recv() != MESSAGE:
                raise RuntimeError("wrong echo")
            clients.append(client)
        negotiated = clients[0].response is not None and any(
            name.lower() == "sec-websocket-extensions" for name, _ in clients[0].response.headers
        )
        after = rss_of(proc.pid)
        elapsed = time.perf_counter() - started
        for client in clients:
            client.transport.abort()  # type: ignore[union-attr]
        return {
            "mode": mode,
            "options": options,
            "conns": conns,
            "negotiated": negotiated,
            "rss_before": before,
            "rss_after": after,
            "kib_per_conn": (after - before) / conns / 1024,
            "open_s": elapsed,
        }
    finally:
        proc.kill()
        proc.wait()


def markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        f"# permessage-deflate memory per connection — {env['date']}",
        "",
        f"{env['conns']} connections per mode, each after one 1 KiB echo; server RSS growth "
        f"per connection. Python {env['python']}, tether {env['tether']}.",
        "",
        "| mode | negotiated | KiB/conn | RSS before MiB | RSS after MiB |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {'yes' if row['negotiated'] else 'no'} "
            f"| {row['kib_per_conn']:.1f} | {row['rss_before'] / 2**20:.1f} "
            f"| {row['rss_after'] / 2**20:.1f} |"
        )
    return "\n".join(lines) + "\n"


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--quick", action="store_true", help="results named quick-*, not kept")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    raise_fd_limit(args.conns + 100)
    rows = []
    for mode in args.modes:
        row = await measure(mode, args.conns)
        print(f"{mode}: {row['kib_per_conn']:.1f} KiB/conn", flush=True)
        rows.append(row)
    env = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "conns": args.conns,
        "python": platform.python_version(),
        "tether": tether.__version__,
    }
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    prefix = "quick-deflate_memory" if args.quick else "deflate_memory"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{prefix}-{stamp}"
    out.with_suffix(".json").write_text(json.dumps({"environment": env, "runs": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(rows, env))
    print(f"wrote {out}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
