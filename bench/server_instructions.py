"""User-space instructions per message of one benchmark server, counted by
callgrind while bench/.build/loadgen drives it: a before/after comparison of
the server alone that a noisy machine cannot blur.

    .venv/bin/python bench/server_instructions.py WORKLOAD SERVER [SERVER ...]
        [--src SRC_DIR] [--results-dir DIR]

WORKLOAD is reqresp or echo64k (as bench/perf_split.sh's), echo1m (bench/run.py's
1 MiB echo) or connect (its 50 concurrent connect + close; per connection). Each SERVER is a
script of bench/servers with its flags, quoted, e.g. ``"tether_server.py
--uvloop --callbacks"`` or ``"picows_server.py --uvloop"``. ``--src`` puts a
tether ``src/`` directory first on the server's path (a ``git worktree`` of
an older commit with its C extensions built by ``python setup.py build_ext
--inplace``). Each server runs under ``valgrind --tool=callgrind`` twice,
driven for 3 s and for 7 s; the difference of the instructions callgrind
counted over the difference of the messages loadgen counted is the cost of
one message, with start-up, the handshakes and shutdown cancelled out.
Callgrind slows the server some fifty times, so it finds more connections
ready per loop iteration than at full speed: the per-iteration costs weigh
less than in a real run. Needs valgrind (Debian: ``valgrind``) and loadgen
(built by bench/run.py). Results go to
``bench/results/server_instructions-<date>.md``. A diagnostic, not a
benchmark: instructions are not time (system calls count as one instruction,
and the kernel's work not at all).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / ".build" / "loadgen"
WORKLOADS = {
    "reqresp": ["reqresp", "--conns", "100", "--size", "128"],
    "echo64k": ["echo", "--conns", "1", "--inflight", "32", "--size", "65536"],
    "echo1m": ["echo", "--conns", "1", "--inflight", "32", "--size", str(1 << 20)],
    "connect": ["connect", "--concurrency", "50"],  # per connection: bench/run.py's row
}
DURATIONS = (3, 7)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_run(server: str, workload: list[str], seconds: int, src: Path | None) -> tuple[int, int]:
    """(messages loadgen counted, instructions callgrind counted) for one run."""
    port = free_port()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    script, *flags = shlex.split(server)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(BENCH / "servers" / script),
        str(port),
        *flags,
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        if "ready" not in process.stdout.readline():
            raise RuntimeError(f"{server} did not start")
        load = [str(LOADGEN), workload[0], "--port", str(port), "--duration", str(seconds)]
        done = subprocess.run(
            [*load, "--warmup", "0", *workload[1:]],
            capture_output=True,
            text=True,
            check=True,
        )
        count = int(json.loads(done.stdout.strip().splitlines()[-1])["count"])
    finally:
        process.terminate()  # callgrind writes its totals on the way out
        _, err = process.communicate(timeout=120)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise RuntimeError(f"no callgrind total in:\n{err[-2000:]}")
    return count, int(found.group(1))


def per_message(server: str, workload: list[str], src: Path | None) -> tuple[float, int]:
    (c1, i1), (c2, i2) = (one_run(server, workload, s, src) for s in DURATIONS)
    return (i2 - i1) / (c2 - c1), c2 - c1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("servers", nargs="+", help='e.g. "tether_server.py --uvloop"')
    parser.add_argument("--src", type=Path, help="a tether src/ directory, first on the path")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if not LOADGEN.exists():
        sys.exit(f"{LOADGEN} is missing: build it with one bench/run.py --quick run")
    workload = WORKLOADS[args.workload]
    lines = [
        f"# Server instructions per message ({args.workload})",
        "",
        f"`{' '.join(sys.argv)}`: callgrind on the server, loadgen "
        f"`{' '.join(workload)}` for {DURATIONS[0]} s and {DURATIONS[1]} s; "
        "(instructions difference) / (messages difference).",
        "",
        "| server | instructions per message | messages between the runs |",
        "|---|---|---|",
    ]
    for server in args.servers:
        cost, messages = per_message(server, workload, args.src)
        lines.append(f"| {server} | {cost:,.0f} | {messages:,} |")
        print(lines[-1], flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"server_instructions-{time.strftime('%Y-%m-%d-%H%M%S')}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
