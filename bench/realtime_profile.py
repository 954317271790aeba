"""Where tether's realtime server spends its Python time per event: cProfile, end to end.

    .venv/bin/python bench/realtime_profile.py                 # about 30 s
    .venv/bin/python bench/realtime_profile.py --duration 1 --quick

It runs bench/realtime.py's emit-echo and room fan-out against tether's
realtime server (bench/servers/realtime_tether.py, uvloop, pinned to the first
CPU, the C load bench/sioload.c on the second), twice for each: once plain, for
the server CPU per event without a profiler, sampled by ``perf record`` when
``perf`` is installed (a few percent of overhead) to split it by shared object
and symbol (interpreter, extensions, kernel); then with cProfile enabled in the
server for the measured window only (SIGUSR1 on, SIGUSR2 off and dump). Each
function's own time (``tottime``) goes to one stage of the path an event takes,
by its module (``STAGES``), and the report gives each stage's share, the
functions that cost most, and calls per event of the ones that matter for a
per-event fast path (task creation, JSON, frame writes).

cProfile charges a fixed cost to every Python call it sees, so Python-heavy
stages look bigger than they are next to C ones; the shares rank the stages,
and the plain run's server CPU per event is the true total. Results:
bench/results/realtime-profile-<date>.md (``quick-`` and git-ignored with
``--quick``).
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import environment, pinning

from realtime import (
    BENCH,
    Settings,
    build_sioload,
    measure,
    server,
    timed_load,
)

SRC = "/src/tether/"
# (stage, what a function's file or name contains); the first match wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("Engine.IO decode/encode (realtime/protocol/engineio.py)", ("realtime/protocol/engineio",)),
    (
        "Socket.IO decode/encode (realtime/protocol/socketio.py, parsers.py, fastpath.py)",
        ("realtime/protocol/socketio", "realtime/protocol/parsers", "realtime/protocol/fastpath"),
    ),
    ("JSON (json module and _json)", ("json",)),
    (
        "handler dispatch, tasks (server/connection.py, namespace.py, runner.py, asyncio tasks)",
        (
            "realtime/server/connection",
            "realtime/server/namespace",
            "realtime/server/runner",
            "create_task",
            "asyncio/",
            "servers/realtime_tether",
            "contextvars",
        ),
    ),
    (
        "emit and broadcast (server/sockets.py, server.py, by_sid.py, adapters, rooms)",
        (
            "realtime/server/sockets",
            "realtime/server/server",
            "realtime/server/by_sid",
            "realtime/adapters",
            "realtime/protocol/rooms",
            "realtime/protocol/checks",
        ),
    ),
    (
        "Engine.IO session (server/session.py, engine.py, transport.py)",
        ("realtime/server/session", "realtime/server/engine", "realtime/server/transport"),
    ),
    ("WebSocket framing, sans-I/O core (tether/protocol)", ("tether/protocol/", "_speedups")),
    (
        "WebSocket I/O layer (_websocket.py, _http1.py, _shared.py, connection.py, broadcast.py)",
        (
            "tether/_websocket",
            "tether/_http1",
            "tether/_shared",
            "tether/connection",
            "tether/broadcast",
        ),
    ),
    ("metrics hooks (tether/metrics)", ("tether/metrics",)),
]
OTHER = "other"
# Functions whose calls per event say whether the per-event path allocates a task,
# encodes JSON, writes once per event...
WATCH = ("create_task", "Task", "dumps", "loads", "encode", "decode", "write", "send")


Key = tuple[str, int, str]
Entry = tuple[int, int, float, float, dict[Key, tuple[int, int, float, float]]]


def stage_of(key: Key) -> str:
    filename, _, name = key
    where = filename.replace(os.sep, "/") + " " + name
    for stage, needles in STAGES:
        if any(needle in where for needle in needles):
            return stage
    return OTHER


def unnamed(key: Key) -> bool:
    """A built-in (``~``) or generated code (``<string>``: a dataclass ``__init__``)."""
    return key[0] == "~" or key[0].startswith("<")


def charge(raw: dict[Key, Entry]) -> dict[str, float]:
    """Own time per stage. A built-in no stage names (``isinstance``, ``len``, a
    list method) is charged to its callers' stages, in proportion to the time it
    spent for each: that is the stage that asked for it."""
    stages: dict[str, float] = {}
    for key, (_, _, tottime, _, callers) in raw.items():
        stage = stage_of(key)
        if stage == OTHER and unnamed(key) and callers:
            for caller, (_, _, tt, _) in callers.items():
                caller_stage = stage_of(caller)
                stages[caller_stage] = stages.get(caller_stage, 0.0) + tt
            continue
        stages[stage] = stages.get(stage, 0.0) + tottime
    return stages


def describe(key: Key) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    path = filename.replace(os.sep, "/")
    short = path.split(SRC, 1)[1] if SRC in path else "/".join(path.split("/")[-2:])
    return f"{short}:{line} {name}"


def analyse(path: Path, events: int) -> dict[str, Any]:
    """Stage shares, top functions and watched calls per event from a pstats dump."""
    raw: dict[Key, Entry] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    stages = charge(raw)
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)
    top = [
        {
            "function": describe(key),
            "stage": "charged to its callers"
            if stage_of(key) == OTHER and unnamed(key)
            else stage_of(key),
            "pct": 100 * v[2] / total,
            "calls_per_event": v[1] / events,
            "us_per_event": 1e6 * v[2] / events,
        }
        for key, v in ranked[:25]
    ]
    watched = [
        {"function": describe(key), "calls_per_event": v[1] / events}
        for key, v in raw.items()
        if any(w in key[2] for w in WATCH) and v[1] >= events / 10
    ]
    watched.sort(key=lambda w: -w["calls_per_event"])
    return {
        "total_s": total,
        "us_per_event": 1e6 * total / events,
        "stages": {k: 100 * v / total for k, v in sorted(stages.items(), key=lambda i: -i[1])},
        "top": top,
        "watched": watched[:20],
    }


class PerfRecord:
    """``perf record`` of one process over the measured window (``on_window``), when
    ``perf`` is installed: where the CPU goes below Python (interpreter, extensions,
    kernel), which cProfile cannot say."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.pid, self.seconds, self.out = pid, seconds, out
        self.proc: subprocess.Popen[bytes] | None = None

    def on_window(self, start: bool) -> None:
        if start and shutil.which("perf"):
            cmd = ["perf", "record", "-q", "-p", str(self.pid), "-o", str(self.out)]
            self.proc = subprocess.Popen(
                [*cmd, "--", "sleep", f"{self.seconds:.2f}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        elif not start and self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()

    def report(self, sort: str, count: int) -> list[tuple[float, str]]:
        """The ``count`` first rows of ``perf report --sort sort``: (percent, what)."""
        if self.proc is None or self.proc.returncode != 0:
            return []
        done = subprocess.run(
            ["perf", "report", "-i", str(self.out), "--no-children", "--sort", sort, "--stdio"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        rows = []
        for line in done.stdout.splitlines():
            if "%" in line and not line.startswith("#"):
                pct, _, what = line.strip().partition("%")
                rows.append((float(pct), " ".join(what.split())))
        return rows[:count]


def profile_one(workload: str, s: Settings, tmp: Path) -> dict[str, Any]:
    """The plain run's figures (and perf's split of them), then the profiled run's
    analysis, for one workload."""
    with server("tether", s, nofile=s.receivers + 200) as (child, port):
        perf = PerfRecord(child.pid, 0.9 * s.duration, tmp / f"{workload}.perf")
        plain = measure(timed_load(workload, port, s), child.pid, s, perf.on_window)
    native = {"dso": perf.report("dso", 8), "symbols": perf.report("dso,sym", 15)}
    dump = tmp / f"{workload}.pstats"
    with server("tether", s, nofile=s.receivers + 200, extra=("--profile", str(dump))) as (
        child,
        port,
    ):
        pid = child.pid

        def toggle(on: bool) -> None:
            os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)

        profiled = measure(timed_load(workload, port, s), pid, s, toggle)
        child.expect("profiled", time.monotonic() + 60)
    analysis = analyse(dump, profiled["count"])
    return {"plain": plain, "profiled": profiled, "native": native, **analysis}


def native_lines(native: dict[str, list[tuple[float, str]]]) -> list[str]:
    if not native["dso"]:
        return ["", "(`perf` missing or not allowed to attach: no split below Python.)"]
    lines = [
        "",
        "Below Python, the plain run's server CPU by shared object (`perf record -p PID` "
        "over the window, `perf report --sort dso`): "
        + ", ".join(f"{what} {pct:.1f} %" for pct, what in native["dso"])
        + ". The costliest symbols (`--sort dso,sym`):",
        "",
    ]
    lines += [f"- {pct:.1f} % `{what}`" for pct, what in native["symbols"]]
    return lines


def section(workload: str, r: dict[str, Any]) -> list[str]:
    plain, profiled = r["plain"], r["profiled"]
    unit, units = ("event", "events") if workload == "echo" else ("delivery", "deliveries")
    lines = [
        f"Without the profiler: {plain['rate']:,.0f} {units}/s, "
        f"{plain['per_server_cpu_s']:,.0f} per server CPU-second, i.e. "
        f"{1e6 / plain['per_server_cpu_s']:.1f} µs of server CPU per {unit} (load CPU "
        f"{plain['load_cpu_pct']:.0f} %), {plain['server_sys_share_pct']:.0f} % of the server's "
        "CPU in the kernel (system time: reads, writes, epoll). With it: "
        f"{profiled['rate']:,.0f}/s, "
        f"{r['us_per_event']:.1f} µs of profiled Python time per {unit}.",
        *native_lines(r["native"]),
        "",
        f"| stage | share of profiled time | µs per {unit} (profiled) |",
        "|---|---|---|",
    ]
    for stage, pct in r["stages"].items():
        lines.append(f"| {stage} | {pct:.1f} % | {pct * r['us_per_event'] / 100:.2f} |")
    lines += [
        "",
        "Functions by own time:",
        "",
        f"| function | stage | share | calls per {unit} | µs per {unit} |",
        "|---|---|---|---|---|",
    ]
    for t in r["top"]:
        lines.append(
            f"| `{t['function']}` | {t['stage'].split(' (')[0]} | {t['pct']:.1f} % "
            f"| {t['calls_per_event']:.2f} | {t['us_per_event']:.2f} |"
        )
    lines += ["", f"Calls per {unit} of task creation, codecs and writes:", ""]
    lines += [f"- `{w['function']}`: {w['calls_per_event']:.2f}" for w in r["watched"]]
    return lines


def markdown(env: dict[str, Any], results: dict[str, dict[str, Any]], s: Settings) -> str:
    v = env["versions"]
    titles = {
        "echo": f"## Emit-echo: {s.echo_conns} connection, {s.inflight} events of {s.size} "
        "chars in flight",
        "fanout": f"## Room fan-out: one emit to a room of {s.receivers:,}, {s.rounds} rounds "
        "in flight",
    }
    lines = [
        f"# Profile of tether's realtime path — {env['date']}",
        "",
        f"Command: `{env['command']}` (bench/realtime_profile.py's docstring says how). "
        f"Python {v['python']}, tether {v['tether']} ({env['tether_commit']}), uvloop "
        f"{v['uvloop']}; {env['pinning']}; {s.duration:g} s windows. The machine is shared: "
        f"load average {env['loadavg']} at the start, so rates are noisy; the shares are "
        "what this file is for.",
        "",
        "cProfile adds a fixed cost to every Python-level call, so stages made of many small "
        "Python calls look larger than C ones (`_json`, the speedups). uvloop's methods "
        "(`transport.write`, `get_write_buffer_size`...) are Cython functions cProfile does "
        "not see as calls: their time, the `send()` system call included, is the own time "
        "of the Python function that calls them (`_http1.py` `write_frames` and `flush`). "
        "The loop itself (epoll, `recv()`, calling callbacks) is outside every profiled "
        "call and not counted; the system-time share of the plain run says how much of the "
        "server's CPU is the kernel's.",
    ]
    for workload, r in results.items():
        lines += ["", titles[workload], "", *section(workload, r)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="50 receivers, results quick-*")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    build_sioload()
    s = Settings(duration=args.duration, receivers=50 if args.quick else 1000)
    s.server_cpu, s.load_cpu, note = pinning()
    s.logs.mkdir(parents=True, exist_ok=True)
    env = environment(note)
    env.update(
        date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        command=" ".join([".venv/bin/python bench/realtime_profile.py", *argv]),
        loadavg=[round(x, 2) for x in os.getloadavg()],
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in ("echo", "fanout"):
            results[workload] = profile_one(workload, s, Path(tmp))
            top = next(iter(results[workload]["stages"].items()))
            print(f"{workload}: {results[workload]['us_per_event']:.1f} us/event, {top}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    out = args.results_dir / f"{'quick-' if args.quick else ''}realtime-profile-{stamp}.md"
    out.write_text(markdown(env, results, s))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
