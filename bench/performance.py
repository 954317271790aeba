"""docs/performance.md's generated part: issue 18's table, from one run of each benchmark.

    .venv/bin/python bench/performance.py --repeat 3
    .venv/bin/python bench/performance.py --from RUN_JSON REALTIME_JSON
    .venv/bin/python bench/performance.py --from RUN_JSON REALTIME_JSON --check

The first runs bench/run.py (raw WebSocket workloads) and bench/realtime.py
(Socket.IO against socket.io on Node), each a subprocess with ``--repeat`` and
``--duration`` forwarded, then rewrites the part of docs/performance.md between
its two markers from the JSON result files they wrote. ``--from`` rewrites it
from existing result files without running anything; ``--check`` writes
nothing and exits 1 if the doc differs from what it would write.

Every status ("met", "gap") is computed here from the figures against the
targets below, never typed by hand; a row whose figures are missing from the
JSON (or whose run failed) says "not measured in this run". Everything outside
the markers is hand-written and left as it is.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import limits
import report
import run as run_py

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOC = ROOT / "docs" / "performance.md"
PYTHON = sys.executable
BEGIN = "<!-- bench/performance.py writes from here: edit the script, not this part -->"
END = "<!-- bench/performance.py writes up to here -->"
NOT_MEASURED = "not measured in this run"
# bench/run.py's WebSocket peers: "best peer" is the best of these (raw TCP is compared apart).
WS_PEERS = ("websockets", "aiohttp", "picows", "ws")
# bench/realtime.py's LOAD_BOUND_PCT, restated: importing that module by its name
# "realtime" would clash with the tests' realtime package in a test process.
REALTIME_LOAD_BOUND = 80
PURE_TARGET = 1.5  # issue 3: the pure-Python fallback at least 1.5x websockets everywhere

Json = dict[str, Any]


# -- what one row of the table is ------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One server's figure in one workload: per server CPU-second (or KiB per connection)."""

    value: float
    rate: float | None = None  # per second of wall time, when the workload has one
    load_bound: bool = False


@dataclass(frozen=True)
class Target:
    """``ratio >= value`` (more is better) or, with ``less``, ``ratio < value``."""

    value: float
    less: bool = False

    def met(self, ratio: float) -> bool:
        return ratio < self.value if self.less else ratio >= self.value

    def text(self) -> str:
        return f"< {self.value:g}x" if self.less else f"≥ {self.value:g}x"


@dataclass(frozen=True)
class Row:
    workload: str
    tether: Figure | None
    peer_name: str
    peer: Figure | None
    target: Target
    unit: str = ""  # after a figure: "KiB" for memory; rates carry none
    extra: str = ""  # a second comparison, told after the ratio
    unbound: bool = False  # the target holds only if the load was the limit of neither row
    inverse: bool = False  # less is better (memory): the ratio is the peer's over tether's
    tether_failed: bool = False  # the JSON has tether's row, but its run failed

    @property
    def ratio(self) -> float | None:
        if self.tether is None or self.peer is None:
            return None
        num, den = (self.peer, self.tether) if self.inverse else (self.tether, self.peer)
        return num.value / den.value if den.value else None

    @property
    def status(self) -> str:
        ratio = self.ratio
        if ratio is None or self.tether is None or self.peer is None:
            return NOT_MEASURED + (" (tether's run failed)" if self.tether_failed else "")
        if not self.target.met(ratio):
            return "gap"
        if self.unbound and (self.tether.load_bound or self.peer.load_bound):
            return "gap (the load client was the limit)"
        return "met"


# -- numbers ---------------------------------------------------------------------------------


def compact(value: float) -> str:
    """335164 -> 335k, 20312 -> 20.3k, 1883 -> 1.88k, 11.49 -> 11.5."""
    if value >= 100_000:
        return f"{value / 1000:,.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 1000:
        return f"{value / 1000:.2f}k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def cell(fig: Figure | None, unit: str = "") -> str:
    if fig is None:
        return "—"
    text = compact(fig.value) + (f" {unit}" if unit else "")
    if fig.rate is not None:
        text += f" ({compact(fig.rate)}/s)"
    return text + (" (load-bound)" if fig.load_bound else "")


# -- bench/run.py's results ------------------------------------------------------------------


def run_failed(rows: list[Json], workload: str, variant: str) -> bool:
    return any(
        not r["ok"] and (r["workload"], r["variant"], r["subject"]) == (workload, variant, "tether")
        for r in rows
    )


def run_figure(row: Json | None) -> Figure | None:
    if row is None:
        return None
    if row["workload"] == "idle":
        return Figure(row["kib_per_conn"])
    if not row.get("per_server_cpu_s"):
        return None
    bound = report.load_bound(row.get("load_cpu_pct", 0), row.get("server_cpu_pct", 0))
    return Figure(row["per_server_cpu_s"], row["rate"], bound)


def best_peer(rows: list[Json], workload: str, variant: str) -> tuple[str, Figure | None]:
    figures = [
        (name, fig)
        for name in WS_PEERS
        if (fig := run_figure(limits.run_row(rows, workload, variant, name))) is not None
    ]
    if not figures:
        return "best peer", None
    return max(figures, key=lambda f: f[1].value)


def run_rows(env: Json, rows: list[Json]) -> list[Row]:
    """Issue 18's rows that bench/run.py measures: tether against its best WebSocket peer."""
    conns = env["connections"]

    def against_best(label: str, workload: str, variant: str) -> Row:
        name, peer = best_peer(rows, workload, variant)
        tether = run_figure(limits.run_row(rows, workload, variant, "tether"))
        failed = run_failed(rows, workload, variant)
        # Told, not judged: the same server on tether.MessageHandler, the
        # callback API picows's own is like (the status stays the coroutine's).
        callbacks = run_figure(limits.run_row(rows, workload, variant, "tether-callbacks"))
        extra = ""
        if callbacks is not None and peer is not None and peer.value:
            extra = f"MessageHandler callbacks: {callbacks.value / peer.value:.2f}x"
        return Row(label, tether, name, peer, Target(1.2), tether_failed=failed, extra=extra)

    raw = run_figure(limits.run_row(rows, "echo", "1 MiB", "raw"))
    tether_1m = run_figure(limits.run_row(rows, "echo", "1 MiB", "tether"))
    return [
        against_best(
            f"raw request/response, {conns['reqresp']:,} connections, 128 B (messages)",
            "reqresp",
            "128 B",
        ),
        against_best("raw echo 64 KiB (messages)", "echo", "64 KiB"),
        against_best("raw echo 1 MiB (messages)", "echo", "1 MiB"),
        Row(
            "raw echo 1 MiB against raw TCP (messages)",
            tether_1m,
            "raw",
            raw,
            Target(0.8),
            tether_failed=run_failed(rows, "echo", "1 MiB"),
        ),
        against_best(f"raw fan-out to {conns['fanout']:,} (deliveries)", "fanout", "64 B"),
        against_best("connect + close, 50 concurrent (connections)", "connect", "50 concurrent"),
    ]


def pure_rows(rows: list[Json]) -> list[Row]:
    """The pure-Python fallback (tether-pure) against websockets, every workload both ran."""
    variants: list[tuple[str, str]] = []
    for r in rows:
        if r["subject"] == "tether-pure" and (r["workload"], r["variant"]) not in variants:
            variants.append((r["workload"], r["variant"]))
    out = []
    for workload, variant in variants:
        pure = run_figure(limits.run_row(rows, workload, variant, "tether-pure"))
        ws = run_figure(limits.run_row(rows, workload, variant, "websockets"))
        label = "idle memory" if workload == "idle" else f"{workload} {variant}"
        idle = workload == "idle"  # less is better: websockets' memory over tether's
        unit = "KiB" if idle else ""
        out.append(Row(label, pure, "websockets", ws, Target(PURE_TARGET), unit, inverse=idle))
    return out


def run_command(env: Json, rows: list[Json]) -> str:
    """The command of a bench/run.py run: recorded, or rebuilt from the JSON's settings."""
    if "command" in env:
        return str(env["command"])
    args = [".venv/bin/python bench/run.py"]
    if env["quick"]:
        args.append("--quick")
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    if set(workloads) != set(run_py.WORKLOADS):
        args += ["--only", *workloads]
    peers = {r["subject"] for r in rows if r["workload"] != "client"}
    expected = set(run_py.QUICK_PEERS if env["quick"] else run_py.PEERS)
    if not {"echo", "reqresp"} & set(workloads):  # only these two run the raw TCP peer
        expected -= {p.name for p in run_py.PEERS.values() if p.raw}
    if peers and peers != expected:
        args += ["--peers", *sorted(peers)]
    if env["duration"] != (0.5 if env["quick"] else 5.0):
        args += ["--duration", f"{env['duration']:g}"]
    if env["repeat"] != 1:
        args += ["--repeat", str(env["repeat"])]
    return " ".join(args)


# -- bench/realtime.py's results -------------------------------------------------------------


def realtime_figure(rows: list[Json], server: str, workload: str) -> Figure | None:
    row = limits.realtime_row(rows, server, workload)
    if row is None:
        return None
    if workload == "idle":
        return Figure(row["kib_per_conn"])
    if not row.get("per_server_cpu_s"):
        return None
    runs = row.get("runs")
    if runs:  # from each run's figures, so that the rule is today's whatever made the JSON
        bound = any(
            report.load_bound(r["load_cpu_pct"], r["server_cpu_pct"], REALTIME_LOAD_BOUND)
            for r in runs
        )
    else:
        bound = bool(row.get("load_bound"))
    return Figure(row["per_server_cpu_s"], row["rate"], bound)


def realtime_rows(env: Json, rows: list[Json]) -> list[Row]:
    """Issue 18's Socket.IO rows: tether against socket.io on Node (python-socketio told too)."""
    s = env["settings"]
    node = f"socket.io {env.get('socketio_version') or ''} (Node)".replace("  ", " ")

    def extra(workload: str) -> str:
        tether = realtime_figure(rows, "tether", workload)
        told = []
        other = realtime_figure(rows, "python-socketio", workload)
        if tether is not None and other is not None and other.value:
            told.append(f"python-socketio: {tether.value / other.value:.2f}x")
        # The same echo by an async def awaiting emit, against Node.
        coroutine = realtime_figure(rows, "tether-coroutine", workload)
        node = realtime_figure(rows, "node", workload)
        if workload == "echo" and coroutine is not None and node is not None and node.value:
            told.append(f"async def handler: {coroutine.value / node.value:.2f}x")
        return "; ".join(told)

    def row(label: str, workload: str, target: Target, **kw: Any) -> Row:
        tether = realtime_figure(rows, "tether", workload)
        peer = realtime_figure(rows, "node", workload)
        failed = any(
            not r["ok"] and (r["server"], r["workload"]) == ("tether", workload) for r in rows
        )
        kw.update(extra=extra(workload), tether_failed=failed)
        return Row(label, tether, node, peer, target, **kw)

    conns = f"{s['echo_conns']} connection" + ("s" if s["echo_conns"] != 1 else "")
    echo = (
        f"Socket.IO emit-echo, {s['size']} chars, {conns}, {s['inflight']} in flight each (events)"
    )
    fanout = f"Socket.IO room fan-out to {s['receivers']:,}, {s['rounds']} rounds in flight"
    idle = f"idle Socket.IO connection, WebSocket transport ({s['idle_conns']:,} open)"
    return [
        row(echo, "echo", Target(1.2)),
        row(f"{fanout} (deliveries)", "fanout", Target(1.2), unbound=True),
        row(idle, "idle", Target(1.0, less=True), unit="KiB"),
    ]


# -- the generated part ----------------------------------------------------------------------


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def table(rows: list[Row], tether: str, peer: str) -> list[str]:
    lines = [
        f"| workload | {tether} | {peer} | ratio | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        if r.extra:
            ratio += f" ({r.extra})"
        peer_cell = f"{r.peer_name} {cell(r.peer, r.unit)}" if r.peer else f"{r.peer_name} —"
        status = f"**{r.status}**" if r.status == "met" else r.status
        mine = "failed" if r.tether_failed and r.tether is None else cell(r.tether, r.unit)
        cells = [r.workload, mine, peer_cell, ratio, r.target.text(), status]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sources(run_path: Path, run: Json, rt_path: Path, realtime: Json) -> list[str]:
    env, rt = run["environment"], realtime["environment"]
    s = rt["settings"]
    return [
        "Sources (every figure the median of its run's repeats):",
        "",
        f"- `{shown(run_path)}`: run of {env['date']}, "
        f"`{run_command(env, run['runs'])}` (command rebuilt from the JSON's settings "
        f"unless it records one), tether as the JSON records it: {env['tether_commit']}; "
        f"{env['duration']:g} s per run after {env['warmup']:g} s of warm-up; "
        f"{env['pinning']}. Its full tables: "
        f"`.venv/bin/python bench/report.py {shown(run_path)}`.",
        f"- `{shown(rt_path)}`: run of {rt['date']}, `{rt['command']}`, tether as "
        f"the JSON records it: {rt['tether_commit']}; {s['duration']:g} s per run after "
        f"{s['warmup']:g} s of warm-up; {rt['pinning']}. Its full tables: "
        f"`{shown(rt_path.with_suffix('.md'))}`.",
    ]


def generated(run_path: Path, rt_path: Path) -> str:
    """The text between the markers, from the two result files."""
    run, realtime = report.load(run_path), report.load(rt_path)
    rows = realtime_rows(realtime["environment"], realtime["rows"])
    rows += run_rows(run["environment"], run["runs"])
    pure = pure_rows(run["runs"])
    lines = [
        "## Where tether stands (generated)",
        "",
        *sources(run_path, run, rt_path, realtime),
        "",
        "Issue 18's rows. Figures are per second of server CPU (in brackets, per "
        "second of wall time), KiB per connection for memory; the ratio is tether ÷ "
        "the peer per server CPU-second (memory: tether's KiB ÷ the peer's, so below 1 "
        "is less). The best peer is the best of websockets, aiohttp, picows and ws "
        "(Node) in that run. Status is computed from the figures by "
        "bench/performance.py. *(load-bound)*: the load client used "
        f"{report.LOAD_BOUND} % of its core or more (bench/run.py), "
        f"{REALTIME_LOAD_BOUND:.0f} % or more in a run (bench/realtime.py), while the "
        f"server used less than {report.SATURATED} % of its own: that rate is a lower "
        "bound; a fan-out target that asks for a load client not at its limit is a gap "
        "then. A server that used its whole core was the limit itself.",
        "",
        *table(rows, "tether", "peer"),
        "",
        "The pure-Python fallback (`tether-pure`, `TETHER_NO_SPEEDUPS=1`) against "
        f"websockets, per server CPU-second (memory: websockets' KiB ÷ tether's); "
        f"issue 3's target, {PURE_TARGET:g}x on every workload:",
        "",
    ]
    if pure:
        lines += table(pure, "tether-pure", "peer")
    else:
        lines.append(f"The run has no `tether-pure` rows: {NOT_MEASURED}.")
    best = {}
    for w, v, *_ in limits.RUN_ROWS:
        name, fig = best_peer(run["runs"], w, v)
        if fig is not None:
            best[(w, v)] = name
    lines += [
        "",
        "### Where the server's CPU goes (generated)",
        "",
        "Server CPU per unit of work in the same runs, in µs, split into the kernel "
        "(the process's system time: its reads, writes, epoll and accept calls) and user "
        "space; the budget is what tether may spend in user space per unit and still "
        "meet the row's target, given its own kernel time (bench/limits.py says how). "
        "`raw` is a WebSocket-unaware asyncio TCP echo on uvloop; the Python floor "
        "(bench/servers/realtime_floor.py) does the JSON and the frame of each event "
        "and nothing else, on tether's callback API. A run made before these figures "
        "were recorded shows — for the kernel.",
        "",
        *limits.table(run["runs"], best, realtime["rows"]),
        "",
        *limits.run_ceilings(run["runs"], best),
        *limits.ceilings(realtime["rows"]),
    ]
    return "\n".join(lines) + "\n"


def splice(doc: str, part: str) -> str:
    """``doc`` with the text between its markers replaced by ``part``."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"error: the doc lacks the markers {BEGIN!r} ... {END!r}")
    # A blank line before the end marker, so that no Markdown reader takes it into the table.
    return doc[: start + len(BEGIN)] + "\n" + part + "\n" + doc[end:]


def between(doc: str) -> str:
    """The text between the markers (what :func:`generated` wrote)."""
    start, end = doc.find(BEGIN), doc.find(END)
    return doc[start + len(BEGIN) + 1 : end - 1]


def named_sources(doc: str) -> list[Path]:
    """The result files the doc's generated part names, in order (run, realtime)."""
    return [ROOT / m for m in re.findall(r"^- `([^`]+\.json)`", between(doc), re.M)]


# -- running the benchmarks --------------------------------------------------------------


def stream(cmd: list[str]) -> tuple[int, Path | None]:
    """Run ``cmd`` from the project root, echo its output, return its exit code and the
    JSON file it says it wrote."""
    print("$ " + " ".join(cmd), flush=True)
    written = None
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if m := re.match(r"wrote (\S+?\.json)", line):
                written = ROOT / m.group(1)
        return proc.wait(), written
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_benchmarks(args: argparse.Namespace) -> Iterator[tuple[int, Path | None]]:
    common = ["--repeat", str(args.repeat)]
    if args.duration:
        common += ["--duration", f"{args.duration:g}"]
    if args.results_dir:
        common += ["--results-dir", str(args.results_dir.resolve())]
    run_only = ["--only", *args.run_only] if args.run_only else []
    rt_only = ["--workloads", *args.realtime_workloads] if args.realtime_workloads else []
    yield stream([PYTHON, "bench/run.py", *common, *run_only])
    yield stream([PYTHON, "bench/realtime.py", *common, *rt_only])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--from",
        dest="sources",
        nargs=2,
        type=Path,
        metavar=("RUN_JSON", "REALTIME_JSON"),
        help="rewrite the doc from these result files, running nothing",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc would change")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--run-only", nargs="+", metavar="WORKLOAD", help="bench/run.py --only")
    parser.add_argument(
        "--realtime-workloads", nargs="+", metavar="WORKLOAD", help="bench/realtime.py --workloads"
    )
    parser.add_argument("--results-dir", type=Path, help="where both runs write (bench/results)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the doc to rewrite")
    return parser.parse_args(argv)


def write(doc_path: Path, part: str, check: bool, say: Callable[[str], object] = print) -> int:
    old = doc_path.read_text()
    new = splice(old, part)
    if check:
        if new == old:
            return 0
        diff = difflib.unified_diff(
            old.splitlines(), new.splitlines(), shown(doc_path), "bench/performance.py", n=1
        )
        say(f"{shown(doc_path)} differs from what bench/performance.py writes:")
        say("\n".join(diff))
        return 1
    doc_path.write_text(new)
    say(f"rewrote {shown(doc_path)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status = 0
    if args.sources:
        run_path, rt_path = args.sources
    else:
        (code1, run_path), (code2, rt_path) = run_benchmarks(args)
        status = 1 if code1 or code2 else 0
        if run_path is None or rt_path is None:
            print("error: a benchmark wrote no results; the doc is unchanged", file=sys.stderr)
            return 1
    return write(args.doc, generated(run_path, rt_path), args.check) or status


if __name__ == "__main__":
    sys.exit(main())
