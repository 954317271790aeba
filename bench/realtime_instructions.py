"""Instructions per Socket.IO event through tether's realtime server,
counted by callgrind: a before/after comparison a noisy machine cannot blur.

The server is ``bench/servers/realtime_tether.py``'s app (the one
``bench/realtime.py`` measures) on uvloop; the clients are lean Socket.IO
clients written on ``tether.connect`` in the same process (their cost is the
same in every tree: they use no realtime code). Two workloads:

* **echo**: one connection, 32 events of 16 characters in flight, each
  emitted back by the server's ``echo`` handler: a plain function calling
  ``socket.emit_nowait``, or with ``--coroutine`` an ``async def`` awaiting
  ``socket.emit`` (a tree without ``emit_nowait`` runs that one either way);
* **fanout**: ``--members`` connections in the room ``room``, one of them
  sending ``fanout`` events, each one emitted to the room, the next once
  every member has the last (lock-step: each read gets one message, so the
  count does not depend on how the loop batched).

Each workload runs under ``valgrind --tool=callgrind`` with N and with 2N
events; the difference divided by N (echo) or by N x members (fanout,
per delivery) is the cost of one event or delivery, start-up cancelled out.

    .venv/bin/python bench/realtime_instructions.py SRC_DIR [SRC_DIR ...]
        [--workloads echo fanout] [--events 500] [--fanout-events 50]
        [--members 100] [--pure] [--coroutine]

Each SRC_DIR is a tether ``src/`` directory (a ``git worktree`` of another
commit, with the C extension copied or built in); the first is the baseline
of the ratios. ``--pure`` runs the pure-Python fallback
(``TETHER_NO_SPEEDUPS=1``). Results go to
``bench/results/realtime_instructions-<date>.md``. A diagnostic, not a
benchmark: instructions are not time (system calls count as one instruction).
"""

from __future__ import annotations

import argparse
import platform
import sys
import textwrap
from pathlib import Path

from echo_instructions import callgrind, write_table

BENCH = Path(__file__).resolve().parent

# Run under callgrind with one SRC_DIR first on sys.path:
# argv = workload, events, members, path of bench/servers, "coroutine" or "plain".
RUN = textwrap.dedent(
    """
    import asyncio, sys
    import uvloop
    import tether
    from tether import realtime

    WORKLOAD, N, MEMBERS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, sys.argv[4])
    COROUTINE = sys.argv[5] == "coroutine"
    from realtime_tether import app

    async def member(port):
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        client = await tether.connect(url, compression=None)
        assert (await client.recv()).startswith("0{")
        await client.send("40")
        assert (await client.recv()).startswith("40{")
        return client

    async def recv_events(client, count):
        got = 0
        while got < count:
            message = await client.recv()
            if message == "2":
                await client.send("3")
            elif message.startswith("42"):
                got += 1

    async def echo(port):
        client = await member(port)
        event = '42["echo","0123456789abcdef"]'
        for _ in range(min(32, N)):
            await client.send(event)
        sent = min(32, N)
        received = 0
        while received < N:
            message = await client.recv()
            if message == "2":
                await client.send("3")
                continue
            received += 1
            if sent < N:
                await client.send(event)
                sent += 1
        await client.close()

    async def fanout(port):
        # In lock-step (the next emit once every member has the last one), so
        # that each read gets one message whatever the timing: the counts
        # of a run do not depend on how the loop happened to batch.
        clients = [await member(port) for _ in range(MEMBERS)]
        for client in clients:
            await client.send('42["join"]')
            await recv_events(client, 1)
        got = [0]
        round_done = asyncio.Event()

        async def reader(client):
            for _ in range(N):
                await recv_events(client, 1)
                got[0] += 1
                if got[0] == MEMBERS:
                    got[0] = 0
                    round_done.set()

        readers = [asyncio.create_task(reader(c)) for c in clients]
        event = '42["fanout","0123456789abcdef"]'
        for _ in range(N):
            await clients[0].send(event)
            await round_done.wait()
            round_done.clear()
        await asyncio.gather(*readers)
        for client in clients:
            await client.close()

    async def main():
        async with realtime.serve(app(COROUTINE), "127.0.0.1", 0) as http:
            await (echo if WORKLOAD == "echo" else fanout)(http.port)

    uvloop.run(main())
    """
)


def instructions(
    src: Path, workload: str, events: int, members: int, pure: bool, coroutine: bool
) -> int:
    """Instructions callgrind counted for one whole run of RUN."""
    handler = "coroutine" if coroutine else "plain"
    servers = str(BENCH / "servers")
    return callgrind(src, pure, RUN, workload, str(events), str(members), servers, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="tether src/ directories")
    parser.add_argument(
        "--workloads", nargs="+", choices=["echo", "fanout"], default=["echo", "fanout"]
    )
    parser.add_argument("--events", type=int, default=500, help="echo's N (default 500)")
    parser.add_argument("--fanout-events", type=int, default=50, help="fanout's N (default 50)")
    parser.add_argument("--members", type=int, default=100, help="fan-out room size (default 100)")
    parser.add_argument("--pure", action="store_true", help="the pure-Python fallback")
    parser.add_argument(
        "--coroutine",
        action="store_true",
        help="echo with an async def awaiting socket.emit (default: a plain function"
        " calling socket.emit_nowait, which a tree without it cannot)",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    members = args.members
    mode = "pure-Python fallback" if args.pure else "C speedups"
    echo_n, fan_n = args.events, args.fanout_events
    lines = [
        f"# Instructions per Socket.IO event through the realtime server ({mode})",
        "",
        f"`{' '.join(sys.argv)}`: callgrind, (instructions with 2N events - with N) / N;"
        f" echo: N = {echo_n}, per event; fanout: N = {fan_n} emits to a room of {members},"
        " per delivery (/ N x members). Both sides counted (server and clients in one"
        " process), PYTHONHASHSEED=0."
        f" Python {platform.python_version()} ({sys.executable}).",
        "",
        "| workload | " + " | ".join(f"`{src}`" for src in args.sources) + " |",
        "|---|" + "---|" * len(args.sources),
    ]
    for workload in args.workloads:
        n = echo_n if workload == "echo" else fan_n
        per = n if workload == "echo" else n * members
        costs = []
        for src in args.sources:
            once = instructions(src, workload, n, members, args.pure, args.coroutine)
            twice = instructions(src, workload, 2 * n, members, args.pure, args.coroutine)
            costs.append((twice - once) / per)
        cells = [f"{cost:,.0f} ({cost / costs[0]:.3f}x)" for cost in costs]
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    write_table(args.results_dir, "realtime_instructions", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
