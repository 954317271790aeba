"""Instructions per echoed message, counted by callgrind: a before/after
comparison that a noisy machine cannot blur.

Wall-clock figures on a shared machine move by 15 % or more from one run to
the next (see bench/README.md), too much to see a change of a few percent.
Instruction counts are deterministic to a fraction of a percent. This runs a
tether client and a tether server in one process, echoing N messages of SIZE
bytes over loopback, under ``valgrind --tool=callgrind``, once with N and once
with 2N messages; the difference divided by N is the cost of one message
through both sides (client send, server receive and send, client receive),
with start-up and shutdown cancelled out.

    .venv/bin/python bench/echo_instructions.py SRC_DIR [SRC_DIR ...]
        [--sizes 16 1024 65536] [--messages 1000] [--pure] [--results-dir DIR]

Each SRC_DIR is a tether ``src/`` directory (for example of a ``git worktree``
of an older commit, with its C extension built by ``python setup.py build_ext
--inplace``); the first one is the baseline of the ratios. ``--pure`` runs the
pure-Python fallback (``TETHER_NO_SPEEDUPS=1``). Results go to
``bench/results/echo_instructions-<date>.md``. Needs valgrind (Debian:
``valgrind``). A diagnostic, not a benchmark: instructions are not time (cache
misses and system calls count as one instruction or not at all).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# The echo itself, run by the interpreter under callgrind with the tether of
# one SRC_DIR first on sys.path.
ECHO = textwrap.dedent(
    """
    import asyncio, sys
    import tether

    N, SIZE = int(sys.argv[1]), int(sys.argv[2])

    async def handler(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        async with tether.serve(handler, "127.0.0.1", 0, compression=None) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with tether.connect(url, compression=None) as client:
                message = b"x" * SIZE

                async def send_all():
                    for _ in range(N):
                        await client.send(message)

                sender = asyncio.create_task(send_all())
                for _ in range(N):
                    await client.recv()
                await sender

    asyncio.run(main())
    """
)


def callgrind(src: Path, pure: bool, script: str, *argv: str) -> int:
    """Instructions callgrind counted for one whole run of ``python -c script
    *argv`` with the tether of ``src`` (``pure``: its pure-Python fallback)."""
    # A fixed hash seed: the same dict and set layouts in every run.
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    env.pop("TETHER_NO_SPEEDUPS", None)
    if pure:
        env["TETHER_NO_SPEEDUPS"] = "1"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        script,
        *argv,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{src} {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def write_table(results_dir: Path, name: str, lines: list[str]) -> Path:
    """Write ``lines`` to ``results_dir/<name>-<date>.md`` and say so."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}-{time.strftime('%Y-%m-%d-%H%M%S')}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path


def instructions(src: Path, messages: int, size: int, pure: bool) -> int:
    """Instructions callgrind counted for one whole run of ECHO."""
    return callgrind(src, pure, ECHO, str(messages), str(size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="tether src/ directories")
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 1024, 65536])
    parser.add_argument("--messages", type=int, default=1000, help="N (default 1000)")
    parser.add_argument("--pure", action="store_true", help="the pure-Python fallback")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    n = args.messages
    mode = "pure-Python fallback" if args.pure else "C speedups"
    lines = [
        f"# Instructions per echoed message ({mode})",
        "",
        f"`{' '.join(sys.argv)}`: callgrind, (instructions with {2 * n} messages"
        f" - with {n}) / {n}; client and server in one process, both sides counted.",
        "",
        "| size | " + " | ".join(str(src) for src in args.sources) + " |",
        "|---|" + "---|" * len(args.sources),
    ]
    for size in args.sizes:
        costs = [
            (instructions(src, 2 * n, size, args.pure) - instructions(src, n, size, args.pure)) / n
            for src in args.sources
        ]
        cells = [f"{cost:,.0f} ({cost / costs[0]:.3f}x)" for cost in costs]
        lines.append(f"| {size} B | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    write_table(args.results_dir, "echo_instructions", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
