"""Markdown tables for bench/run.py: one per workload variant, ratios against tether.

Also a command, to redo the tables of a results file without running anything:
``python bench/report.py bench/results/results-<date>.json > bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]

TITLES = {
    "echo": "1. Echo, one connection, 32 messages in flight",
    "reqresp": "2. Request/response over {reqresp} connections, one message in flight each",
    "fanout": "3. Fan-out: one trigger, the server sends 64 B to {fanout} clients",
    "connect": "4. Connection rate: connect + handshake + close",
    "idle": "5. Idle memory: server RSS per connection with {idle} idle connections",
    "client": "6. Client side: each client against one {client_server} server (uvloop)",
}


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    fmt: Callable[[Any], str]


def _num(v: Any) -> str:
    return "" if v is None else f"{v:,.0f}"


def _one(v: Any) -> str:
    return "" if v is None else f"{v:,.1f}"


def _two(v: Any) -> str:
    return "" if v is None else f"{v:,.2f}"


def _pct(v: Any) -> str:
    return "" if v is None else f"{v:.0f}%"


def _ms(v: Any) -> str:
    return "" if v is None else f"{v / 1000:,.2f}"


def _mib(v: Any) -> str:
    return "" if v is None else f"{v / 2**20:,.1f}"


COLUMNS: dict[str, list[Column]] = {
    "echo": [
        Column("msgs/s", "rate", _num),
        Column("MB/s", "mb_per_s", _one),
        Column("msgs/server-CPU-s", "per_server_cpu_s", _num),
    ],
    "reqresp": [
        Column("msgs/s", "rate", _num),
        Column("p50 µs", "p50_us", _num),
        Column("p99 µs", "p99_us", _num),
        Column("msgs/server-CPU-s", "per_server_cpu_s", _num),
    ],
    "fanout": [
        Column("deliveries/s", "rate", _num),
        Column("deliveries/server-CPU-s", "per_server_cpu_s", _num),
        Column("rounds timed out", "timeouts", _num),
    ],
    "connect": [
        Column("conn/s", "rate", _num),
        Column("conn/server-CPU-s", "per_server_cpu_s", _num),
        Column("p50 ms", "p50_us", _ms),
        Column("p99 ms", "p99_us", _ms),
    ],
    "idle": [
        Column("KiB/conn", "kib_per_conn", _one),
        Column("RSS before MiB", "rss_before", _mib),
        Column("RSS after MiB", "rss_after", _mib),
        Column("open s", "open_s", _two),
    ],
    "client": [
        Column("msgs/s", "rate", _num),
        Column("msgs/client-CPU-s", "per_client_cpu_s", _num),
    ],
}

TAIL: dict[str, list[Column]] = {
    "client": [
        Column("client CPU%", "client_cpu_pct", _pct),
        Column("server CPU%", "server_cpu_pct", _pct),
        Column("errors", "errors", _num),
    ],
    "idle": [
        Column("server CPU s to open them", "server_cpu_s", _two),
        Column("errors", "errors", _num),
    ],
}
BASELINES = ("tether", "tether-asyncio")  # ratios are against the first that succeeded
LOAD_BOUND = 85  # loadgen CPU% from which a row is flagged as possibly limited by the load
# ... unless the server was busy this much of the window: then the server, not the load, is
# the limit (its core was full), whatever the load used of its own.
SATURATED = 95


def load_bound(load_cpu_pct: float, server_cpu_pct: float, limit: float = LOAD_BOUND) -> bool:
    """Whether the load may have limited a run: it used ``limit`` % of its core or more
    while the server had time to spare."""
    return load_cpu_pct >= limit and server_cpu_pct < SATURATED


DEFAULT_TAIL = [
    Column("server CPU%", "server_cpu_pct", _pct),
    Column("loadgen CPU%", "load_cpu_pct", _pct),
    Column("errors", "errors", _num),
]


def _ratio(row: Row, base: Row | None, key: str) -> str:
    if base is None or not row["ok"] or not row.get(key) or not base.get(key):
        return ""
    return f"{row[key] / base[key]:.2f}x"


def _ratio_keys(workload: str) -> list[tuple[str, str]]:
    if workload == "idle":
        return [("x tether", "kib_per_conn")]
    if workload == "client":
        return [("x tether", "rate"), ("x tether per CPU-s", "per_client_cpu_s")]
    return [("x tether", "rate"), ("x tether per CPU-s", "per_server_cpu_s")]


def _cells(
    r: Row, base: Row | None, cols: list[Column], ratios: list[tuple[str, str]], tail: list[Column]
) -> list[str]:
    return [
        *(c.fmt(r.get(c.key)) for c in cols),
        *(_ratio(r, base, key) for _, key in ratios),
        *(c.fmt(r.get(c.key)) for c in tail),
    ]


def table(workload: str, rows: list[Row], baselines: Sequence[str]) -> list[str]:
    base = next((r for name in baselines for r in rows if r["subject"] == name and r["ok"]), None)
    cols = COLUMNS[workload]
    tail = TAIL.get(workload, DEFAULT_TAIL)
    ratios = _ratio_keys(workload)
    head = [
        "client" if workload == "client" else "peer",
        "loop",
        *(c.title for c in cols),
        *(t for t, _ in ratios),
        *(c.title for c in tail),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    bound = False
    for r in rows:
        if not r["ok"]:
            cells = [r["subject"], r["loop"], "failed: " + r["error"].replace("|", "/")[:120]]
            cells += [""] * (len(head) - len(cells))
        else:
            flagged = workload != "client" and load_bound(
                r.get("load_cpu_pct", 0), r.get("server_cpu_pct", 0)
            )
            bound = bound or flagged
            name = r["subject"] + (" (load-bound)" if flagged else "")
            cells = [name, r["loop"], *_cells(r, base, cols, ratios, tail)]
        lines.append("| " + " | ".join(cells) + " |")
    if bound:
        lines.append(
            f"\n(load-bound): the load generator used {LOAD_BOUND}% of its core or more while "
            f"the server used less than {SATURATED}% of its own, so it "
            "may be what limits this row: its rate is a lower bound, per CPU-s still holds."
        )
    if base is None:
        lines.append("\nNo tether row succeeded: no ratios.")
    elif base["subject"] != baselines[0]:
        lines.append(f"\nRatios are against **{base['subject']}**: {baselines[0]} failed.")
    return lines


def load(path: Path) -> dict[str, Any]:
    """A results file of bench/run.py or bench/realtime.py: ``environment`` and its rows."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def markdown(env: dict[str, Any], rows: list[Row], baselines: Sequence[str]) -> str:
    v = env["versions"]
    kind = "quick smoke run (figures are not meaningful)" if env["quick"] else "full run"
    out = [
        f"# tether benchmarks — {env['date']}",
        "",
        f"{kind}: {env['duration']} s measured per run after {env['warmup']} s of warm-up, "
        f"median of {env['repeat']}; {env['pinning']}. Machine: {env['cpu']}, "
        f"{env['cpus']} CPUs, Linux {env['kernel']}. tether {env['tether_commit']}; "
        f"Python {v['python']}, uvloop {v['uvloop']}, websockets {v['websockets']}, "
        f"aiohttp {v['aiohttp']}, picows {v['picows']}, Node {v['node']} with ws {v['ws']}.",
        "",
        "Every Python server runs on uvloop except `tether-asyncio` (asyncio's own loop); "
        "`tether-callbacks` uses the MessageHandler API, `tether-pure` the pure-Python "
        "fallback (TETHER_NO_SPEEDUPS=1); `raw` "
        "is an asyncio.Protocol TCP echo, WebSocket-unaware (the ceiling for a Python server). "
        "This machine is shared: compare the *per server-CPU-second* columns first. "
        "`x tether` = peer / tether, so above 1 means the peer does more (for KiB/conn: uses "
        "more). Columns are explained in bench/README.md.",
    ]
    order: list[tuple[str, str]] = []
    for r in rows:
        if (r["workload"], r["variant"]) not in order:
            order.append((r["workload"], r["variant"]))
    last = None
    for workload, variant in order:
        if workload != last:
            out += ["", "## " + TITLES[workload].format(**env["connections"], **env)]
            last = workload
        group = [r for r in rows if r["workload"] == workload and r["variant"] == variant]
        out += ["", f"### {variant}", "", *table(workload, group, baselines)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    data = load(Path(sys.argv[1]))
    sys.stdout.write(markdown(data["environment"], data["runs"], BASELINES))


def merge_inputs(
    argv: list[str], description: str, script: str
) -> tuple[list[Path], list[dict[str, Any]], Path, str]:
    """A merge script's command line (``RUN.json RUN.json ... [--results-dir DIR]``):
    the files, their JSON, the results directory and the command to record."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help=f"bench/{script}.py JSON results")
    parser.add_argument("--results-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("merge two runs or more")
    runs = [json.loads(path.read_text()) for path in args.runs]
    command = " ".join([f".venv/bin/python bench/{script}_merge.py", *argv])
    return args.runs, runs, args.results_dir, command
