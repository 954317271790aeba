"""Emit-echo with each Socket.IO parser: JSON (stdlib), JSON with orjson, msgpack.

    .venv/bin/python bench/parsers.py                  # defaults: about a minute
    .venv/bin/python bench/parsers.py --quick --clients 2 --seconds 0.5 --packets 200

Two workloads per parser (orjson and msgpack are skipped when not installed):

1. **codec**: in this process, encode then decode ``--packets`` event packets
   with :meth:`Parser.encode` and a decoder from :meth:`Parser.decoder`, for a
   text event (a ~200 B chat message: strings, numbers, a list, a nested dict)
   and a binary one (the same plus 4 KiB of bytes). *us/packet*.
2. **echo**: a :class:`tether.realtime.Server` with the parser in a child
   process (uvloop when installed), and ``--clients`` tether realtime clients
   with the same parser here, each doing sequential ``emit_with_ack("echo", ...)``
   (the handler returns its arguments) for ``--seconds``, for the text and the
   binary event. *acks/s*, and *server CPU ms / 1000 acks* (user + system from
   ``/proc/<pid>/stat``): the figure to compare, less sensitive to how busy the
   machine was.

Results go to ``bench/results/parsers-<date>.json`` and ``.md`` (``quick-``
prefixed with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tether import realtime  # noqa: E402
from tether.realtime.client import Client  # noqa: E402
from tether.realtime.protocol.parsers import make_parser  # noqa: E402
from tether.realtime.protocol.socketio import Packet  # noqa: E402

TEXT_EVENT: list[Any] = [
    {
        "room": "general",
        "user": {"id": 1234, "name": "Ada Lovelace", "roles": ["admin", "author"]},
        "text": "The analytical engine weaves algebraic patterns just as the loom weaves.",
        "at": 1764745200.25,
        "tags": ["history", "computing", "engines"],
    },
]
BINARY_EVENT: list[Any] = [*TEXT_EVENT, {"blob": bytes(range(256)) * 16}]
EVENTS = {"text": TEXT_EVENT, "binary": BINARY_EVENT}


def parser_options() -> dict[str, dict[str, Any]]:
    """The parsers to compare, as SerializerOptions (orjson/msgpack when installed)."""
    options: dict[str, dict[str, Any]] = {"json": {}}
    if importlib.util.find_spec("orjson"):
        options["orjson"] = {"json": "orjson"}
    if importlib.util.find_spec("msgpack"):
        options["msgpack"] = {"parser": "msgpack"}
    return options


def resolved(options: dict[str, Any]) -> dict[str, Any]:
    """Options with the json module imported (it travels by name to the child)."""
    if "json" in options:
        return {**options, "json": importlib.import_module(options["json"])}
    return options


# -- codec ---------------------------------------------------------------------------


def codec(options: dict[str, Any], packets: int) -> dict[str, float]:
    parser = make_parser(**resolved(options))
    results = {}
    for name, event in EVENTS.items():
        packet = Packet.event("echo", *event, id=1)
        decoder = parser.decoder(max_payload=10**7, max_attachments=10)
        start = time.perf_counter()
        for _ in range(packets):
            decoded = None
            for payload in parser.encode(packet):
                decoded = decoder.feed(payload)
            assert decoded is not None
        results[name] = (time.perf_counter() - start) / packets * 1e6
    return results


# -- echo ----------------------------------------------------------------------------


def serve(options: dict[str, Any]) -> None:
    """The child: a server with the parser; prints its port, runs until stdin closes."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        server = realtime.Server(**resolved(options), max_payload=10**7)

        @server.on("echo")
        async def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
            return args

        async with realtime.serve(server, "127.0.0.1", 0) as http:
            print(http.port, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def echoes(client: Client, args: list[Any], deadline: float) -> int:
    """Sequential acked echoes until ``deadline``; how many."""
    count = 0
    while time.monotonic() < deadline:
        reply = await client.emit_with_ack("echo", *args, timeout=30)
        # One value acked comes back as itself, several as a tuple.
        assert (reply if len(args) == 1 else reply[0]) == args[0]
        count += 1
    return count


async def echo(options: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, Any] = {}
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        connected = [Client(reconnection=False, **resolved(options)) for _ in range(clients)]
        await asyncio.gather(*(client.connect(url) for client in connected))
        for name, event in EVENTS.items():
            cpu, start = cpu_ms(child.pid), time.monotonic()
            counts = await asyncio.gather(
                *(echoes(client, event, start + seconds) for client in connected)
            )
            elapsed, used = time.monotonic() - start, cpu_ms(child.pid) - cpu
            acks = sum(counts)
            results[name] = {
                "acks": acks,
                "acks_per_s": acks / elapsed,
                "server_cpu_ms_per_1000": used * 1000 / acks if acks else None,
            }
        await asyncio.gather(*(client.disconnect() for client in connected))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()  # by PID: the child this run started
            child.wait()
    return results


# -- report --------------------------------------------------------------------------


def report(runs: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"# Parsers: emit-echo ({time.strftime('%Y-%m-%d %H:%M:%S')} UTC)",
        "",
        f"`python bench/parsers.py --clients {args.clients} --seconds {args.seconds} "
        f"--packets {args.packets}`; load average {os.getloadavg()[0]:.1f}, "
        f"{os.cpu_count()} CPUs.",
        "",
        "| parser | event | codec us/packet | acks/s | server CPU ms / 1000 acks |",
        "|---|---|---|---|---|",
    ]
    for parser, run in runs.items():
        for event in EVENTS:
            echo_run = run["echo"][event]
            cpu = echo_run["server_cpu_ms_per_1000"]
            lines.append(
                f"| {parser} | {event} | {run['codec'][event]:.1f} | "
                f"{echo_run['acks_per_s']:.0f} | {cpu:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: files prefixed quick-")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(json.loads(args.serve))
        return
    runs: dict[str, Any] = {}
    for name, options in parser_options().items():
        runs[name] = {
            "options": options,
            "codec": codec(options, args.packets),
            "echo": asyncio.run(echo(options, args.clients, args.seconds)),
        }
        print(name, json.dumps(runs[name]), flush=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    stem = f"{'quick-' if args.quick else ''}parsers-{stamp}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stem}.json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    text = report(runs, args)
    (args.results_dir / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
