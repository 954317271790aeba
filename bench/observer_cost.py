"""What an observer (tether.realtime.server.observe) costs the realtime server.

    .venv/bin/python bench/observer_cost.py --clients 20 --receivers 100 --seconds 2 --rounds 3

Runs bench/realtime_compression.py's echo and fan-out workloads (its wire-level
clients, compression off) against a server child process in up to five modes, each
``--rounds`` times, interleaved (none, noop, count..., none, noop...) so that the
load of the shared machine spreads over all three:

* ``none``: no observer installed (each hook site is one ``is not None`` check);
* ``noop``: one :class:`~tether.realtime.server.observe.Observer` that overrides no
  hook (the server skips every hook it does not override: as ``none`` since 86d0ec9);
* ``count``: one observer counting every hook call in a dict;
* ``admin-prod``, ``admin-dev``: ``tether.realtime.admin.instrument(server,
  auth=False)`` in production mode (aggregated counts and stats only) and in
  development mode (every socket event also emitted to the admin namespace,
  which nobody is connected to here).

Prints the median server CPU ms per 1000 acks (echo) or deliveries (fan-out)
per mode and message size, with the ratio to ``none``. Nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from typing import Any

import realtime_compression as rc
from load import raise_fd_limit

SERVER = rc.SERVER.replace(
    "    server = realtime.Server()\n",
    """    server = realtime.Server()
    from tether.realtime.server.observe import HOOKS, Observer
    if options == "noop":
        server.observe(Observer())
    elif options == "count":
        class Count(Observer):
            counts = {}
        counter = Count()
        for hook in HOOKS:
            def count(*args, hook=hook, **kwargs):
                counter.counts[hook] = counter.counts.get(hook, 0) + 1
            setattr(counter, hook, count)
        server.observe(counter)
    elif options.startswith("admin-"):
        from tether.realtime.admin import instrument
        mode = "development" if options == "admin-dev" else "production"
        instrument(server, auth=False, mode=mode)
    options = None
""",
)
MODES = ("none", "noop", "count", "admin-prod", "admin-dev")


def server_process(mode: str, conns: int) -> Any:
    """realtime_compression's server process, running this module's SERVER
    with ``mode`` as its one argument."""
    rc.SERVER = SERVER
    rc.MODES = {name: name for name in MODES}  # type: ignore[misc]
    return rc.server_process(mode, [], conns)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    raise_fd_limit(max(args.clients, args.receivers) + 100)
    figures: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for mode in args.modes:
            for workload in ("echo", "fanout"):
                async with server_process(mode, args.receivers + 1) as (port, pid, _):
                    uri = f"ws://127.0.0.1:{port}{rc.PATH}"
                    row: dict[str, Any] = await rc.RUNS[workload](uri, pid, args)
                for size, measured in row["sizes"].items():
                    key = (workload, size, mode)
                    figures.setdefault(key, []).append(measured["server_cpu_ms_per_1000"])
    print("| workload | size | mode | server CPU ms / 1000 (median) | x none |")
    print("|---|---|---|---|---|")
    for workload, size, mode in sorted(figures, key=lambda k: (k[0], k[1], MODES.index(k[2]))):
        median = statistics.median(figures[workload, size, mode])
        base = statistics.median(figures[workload, size, "none"])
        print(f"| {workload} | {size} | {mode} | {median:.2f} | {median / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
