"""What tether.Server's always-on metrics cost: the same workloads against the
tree as it is ("on") and the same tree with the counting taken out ("off").

    .venv/bin/python bench/metrics_overhead.py [--rounds 3] [--duration 3] [--only WORKLOAD ...]

"Off" is a copy of src/ (the C speedups included) in which the files that
count in the hot path (server.py, _websocket.py, connection.py, broadcast.py)
are as they were at ``--base``, the commit before the counting came in.
Everything else is bench/run.py's: a fresh server pinned to one core, the C
load generator on the other, server CPU sampled with psutil. The two servers
take turns, case by case, for ``--rounds`` rounds, and the median of each is
kept; the cost is on/off - 1 in messages per second and in messages per
server-CPU-second (the steadier of the two on a shared machine).

Writes ``bench/results/metrics-<date>.md`` and ``.json`` (docs/metrics.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import run

HOT_PATH = ("server.py", "_websocket.py", "connection.py", "broadcast.py")
BASE = "4f9116e^"  # the commit before "metrics: a stdlib-only metrics core ..."


def off_tree(base: str, into: Path) -> Path:
    """A copy of src/ with the hot-path files at ``base``; the path for PYTHONPATH."""
    src = into / "src"
    shutil.copytree(run.ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    for name in HOT_PATH:
        old = subprocess.run(
            ["git", "show", f"{base}:src/tether/{name}"],
            cwd=run.ROOT,
            check=True,
            capture_output=True,
        ).stdout
        (src / "tether" / name).write_bytes(old)
    # The server started with PYTHONPATH=src must import this copy, without the counting.
    check = "import tether._websocket as w, inspect; print(inspect.getsourcefile(w))"
    found = subprocess.run(
        [sys.executable, "-c", check],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert found.startswith(str(src)) and "metrics" not in Path(found).read_text(), found
    return src


def peers(off: Path) -> tuple[run.Peer, run.Peer]:
    on = run.PEERS["tether"]
    without = run.Peer("tether-metrics-off", on.loop, ("env", f"PYTHONPATH={off}", *on.argv))
    return on, without


def measure(args: argparse.Namespace, on: run.Peer, off: run.Peer) -> list[dict[str, Any]]:
    run.ECHO_SIZES = ((16, "16 B"), (1024, "1 KiB"))  # the small messages the cost is about
    run.build_loadgen()
    s = run.settings(argparse.Namespace(quick=args.quick, duration=args.duration, repeat=1))
    loadgen = [c for c in run.CLIENTS.values() if not c.argv]
    cases = run.plan(args.only, [on, off], loadgen)
    rows: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        for case in cases:
            (row,) = run.run_group([case], s)
            row["round"] = round_number
            rows.append(row)
            print(
                f"[round {round_number}] {case.workload} {case.variant} {case.subject}: "
                f"{run.summary(row)}",
                flush=True,
            )
    return rows


def median(rows: list[dict[str, Any]], case: tuple[str, str], subject: str, field: str) -> float:
    values = [
        r.get(field) or 0.0
        for r in rows
        if r["ok"] and r["subject"] == subject and (r["workload"], r["variant"]) == case
    ]
    return statistics.median(values) if values else float("nan")


def table(rows: list[dict[str, Any]]) -> list[str]:
    cases = list(dict.fromkeys((r["workload"], r["variant"]) for r in rows))
    lines = [
        "| workload | on: msg/s | off: msg/s | cost | on: msg/server-CPU-s | off | cost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        rate_on = median(rows, case, "tether", "rate")
        rate_off = median(rows, case, "tether-metrics-off", "rate")
        cpu_on = median(rows, case, "tether", "per_server_cpu_s")
        cpu_off = median(rows, case, "tether-metrics-off", "per_server_cpu_s")
        lines.append(
            f"| {' '.join(case)} | {rate_on:,.0f} | {rate_off:,.0f} | "
            f"{rate_on / rate_off - 1:+.1%} | {cpu_on:,.0f} | {cpu_off:,.0f} | "
            f"{cpu_on / cpu_off - 1:+.1%} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--only", nargs="+", default=["echo", "reqresp", "fanout"])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--quick", action="store_true", help="smoke run (figures not meaningful)")
    parser.add_argument("--results-dir", type=Path, default=run.BENCH / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-metrics-off-") as tmp:
        on, off = peers(off_tree(args.base, Path(tmp)))
        rows = measure(args, on, off)
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    prefix = "quick-metrics" if args.quick else "metrics"
    out = args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    command = "bench/metrics_overhead.py " + " ".join(sys.argv[1:])
    env = run.environment(run.pinning()[2])
    (out / f"{prefix}-{stamp}.json").write_text(
        json.dumps({"command": command, "environment": env, "runs": rows}, indent=1) + "\n"
    )
    lines = [
        f"# Metrics cost, {stamp}",
        "",
        f"`.venv/bin/python {command}` (on: this tree; off: the hot path at `{args.base}`).",
        f"Median of {args.rounds} rounds of {args.duration:g} s; {env.get('pinning', '')}.",
        "",
        *table(rows),
        "",
    ]
    (out / f"{prefix}-{stamp}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
