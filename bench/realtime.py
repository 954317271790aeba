"""The realtime layer against socket.io on Node and python-socketio, driven from C.

    .venv/bin/python bench/realtime.py --repeat 3     # the full run: about 6 minutes
    .venv/bin/python bench/realtime.py --quick        # smoke run: figures not meaningful
    .venv/bin/python bench/realtime.py --servers tether node --workloads echo

Three servers speak the same small Socket.IO protocol (bench/servers/
realtime_tether.py's docstring): tether's ``realtime.serve`` on uvloop
(compression off, its default), socket.io 4.8 on Node (node_modules/socket.io,
its defaults) and python-socketio's ``AsyncServer`` under uvicorn on uvloop. A
fourth, ``floor`` (bench/servers/realtime_floor.py), is no server but a
ceiling: the JSON and the frame per event that any Python Socket.IO server
must pay, on tether's callback API, and nothing else; it runs the echo and
fan-out only. tether runs twice: ``tether``'s echo handler is a plain
function calling ``socket.emit_nowait``, as socket.io's is a plain function
calling ``socket.emit``; ``tether-coroutine``'s is an ``async def`` awaiting
``socket.emit``, which before Python 3.12 costs a task per event.
The load is bench/sioload.c, a C Socket.IO client over Engine.IO's WebSocket
transport (built into bench/.build/), so that the load costs far less per event
than any server; its CPU share is in every row, and a row where it used more
than 80 % of its core is flagged.

Workloads, each server a fresh process pinned to the first CPU (``taskset``),
the load pinned to the second:

* **echo**: ``--echo-conns`` connections (default 1), each with 32 events of
  16 chars in flight: the server emits every ``echo`` back to its sender;
* **fanout**: one emit to a room of ``--receivers`` (default 1,000) sockets,
  ``--rounds`` rounds (default 4) in flight; *deliveries* counted;
* **idle**: ``--idle-conns`` Socket.IO connections (default 5,000) left idle
  after the CONNECT: the server's RSS growth per connection (``/proc/PID/status``),
  after the handshake path was warmed by 20 connections opened and closed.

``--servers`` may add ``tether-pure``: tether with ``TETHER_NO_SPEEDUPS=1``.
With one connection, the echo is a round trip of 32 events at a time, so no
server keeps its core busy: compare the per-CPU-second figures.

Rates are per second of wall time and per second of server CPU (user + system
of every thread, from ``/proc/PID/stat``, read when the load prints ``start``
and ``stop``): the second is the figure to compare on a shared machine. Each
case runs ``--repeat`` times, in rounds (every server once per round), and
every figure is the median of its runs.
Results: bench/results/realtime-<date>.json and .md (``quick-`` and
git-ignored with ``--quick``); the .md names the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import SATURATED, load_bound
from run import ROOT, BenchError, Child, build_c, environment, in_rounds, pinning
from run import summary as run_summary

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / ".build"
SIOLOAD_SRC = BENCH / "sioload.c"
SIOLOAD = BUILD / "sioload"
SERVERS_DIR = BENCH / "servers"
PYTHON = sys.executable
LOAD_BOUND_PCT = 80.0  # load CPU share above which a row's rate may be the client's

SERVERS: dict[str, list[str]] = {
    "tether": [PYTHON, str(SERVERS_DIR / "realtime_tether.py")],
    "node": ["node", str(SERVERS_DIR / "realtime_socketio.mjs")],
    "python-socketio": [PYTHON, str(SERVERS_DIR / "realtime_python_socketio.py")],
    # The echo handler as an async def awaiting socket.emit: a task per event
    # before Python 3.12 (the default tether server's is a plain function).
    "tether-coroutine": [PYTHON, str(SERVERS_DIR / "realtime_tether.py"), "--coroutine"],
    # tether's pure-Python fallback (its C speedups off); not in the default run.
    "tether-pure": ["env", "TETHER_NO_SPEEDUPS=1", PYTHON, str(SERVERS_DIR / "realtime_tether.py")],
    # The least per event a Python server can do (realtime_floor.py): a ceiling, not a peer.
    "floor": [PYTHON, str(SERVERS_DIR / "realtime_floor.py")],
}
DEFAULT_SERVERS = ["tether", "tether-coroutine", "node", "python-socketio", "floor"]
# No idle-memory run: the floor keeps no session state to weigh, and
# tether-coroutine's connections are tether's.
RATE_ONLY = {"floor", "tether-coroutine"}
LABELS = {
    "tether": "tether (uvloop)",
    "tether-coroutine": "tether, echo by an async def awaiting emit (uvloop)",
    "node": "socket.io 4.8 (Node)",
    "python-socketio": "python-socketio (uvicorn, uvloop)",
    "tether-pure": "tether, pure Python (uvloop)",
    "floor": "Python floor: JSON + frame per event, nothing else (uvloop)",
}
WORKLOADS = ("echo", "fanout", "idle")
UNITS = {"echo": "events", "fanout": "deliveries"}


@dataclass
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    repeat: int = 1
    echo_conns: int = 1
    inflight: int = 32
    size: int = 16
    receivers: int = 1000
    rounds: int = 4
    idle_conns: int = 5000
    server_cpu: list[str] = field(default_factory=list)  # taskset prefixes
    load_cpu: list[str] = field(default_factory=list)
    logs: Path = BUILD / "logs"


# -- processes ----------------------------------------------------------------------------


def build_sioload() -> Path:
    """Compile bench/sioload.c into bench/.build/ unless the binary is newer
    than it and the headers it includes."""
    return build_c(SIOLOAD_SRC, SIOLOAD)


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of every thread of process ``pid`` (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3; utime and stime are fields 14 and 15.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid``."""
    return sum(cpu_times(pid))


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for {pid}")


@contextmanager
def server(
    name: str, s: Settings, nofile: int = 4096, extra: tuple[str, ...] = ()
) -> Iterator[tuple[Child, int]]:
    """A fresh ``name`` server pinned to the server CPU: the child and its port."""
    log = s.logs / f"realtime-{name}.log"
    with Child([*s.server_cpu, *SERVERS[name], *extra], log, nofile=nofile) as child:
        deadline = time.monotonic() + 30
        while not (line := child.next_line(deadline)).startswith("ready "):
            pass
        yield child, int(line.split()[1])


def sioload(mode: str, port: int, s: Settings, *extra: str) -> list[str]:
    return [*s.load_cpu, str(SIOLOAD), mode, "--port", str(port), "--size", str(s.size), *extra]


def timed_load(workload: str, port: int, s: Settings) -> list[str]:
    """The sioload command of a timed workload."""
    window = ["--duration", str(s.duration), "--warmup", str(s.warmup)]
    if workload == "echo":
        shape = ["--conns", str(s.echo_conns), "--inflight", str(s.inflight)]
    else:
        shape = ["--conns", str(s.receivers), "--rounds", str(s.rounds)]
    return sioload(workload, port, s, *window, *shape)


# -- measurements ---------------------------------------------------------------------------


def measure(
    cmd: list[str], pid: int, s: Settings, on_window: Callable[[bool], None]
) -> dict[str, Any]:
    """Run one timed load against server ``pid``: its JSON with the server's CPU
    over the measured window. ``on_window(True)`` runs at ``start``, ``(False)`` at ``stop``."""
    deadline = time.monotonic() + s.warmup + s.duration + 120
    with Child(cmd, s.logs / "sioload.log", nofile=s.receivers + s.echo_conns + 100) as load:
        load.expect("start", deadline)
        on_window(True)
        (user0, sys0), t0 = cpu_times(pid), time.perf_counter()
        load.expect("stop", deadline)
        (user1, sys1), t1 = cpu_times(pid), time.perf_counter()
        on_window(False)
        result: dict[str, Any] = json.loads(load.next_line(deadline))
    if "error" in result:
        raise BenchError(result["error"])
    if not result["count"]:
        raise BenchError(f"nothing completed in the window ({result['errors']} errors)")
    server_cpu = user1 - user0 + sys1 - sys0
    return {
        "server_sys_share_pct": 100 * (sys1 - sys0) / server_cpu if server_cpu else None,
        "rate": result["rate"],
        "per_server_cpu_s": result["count"] / server_cpu if server_cpu else None,
        "server_cpu_pct": 100 * server_cpu / (t1 - t0),
        "load_cpu_pct": result["cpu_pct"],
        "count": result["count"],
        "errors": result["errors"],
        "open_s": result["open_s"],
    }


def rate_run(name: str, workload: str, s: Settings) -> dict[str, Any]:
    with server(name, s, nofile=s.receivers + 200) as (child, port):
        return measure(timed_load(workload, port, s), child.pid, s, lambda _: None)


def idle_run(name: str, s: Settings) -> dict[str, Any]:
    """RSS growth per idle Socket.IO connection of a fresh ``name`` server."""
    nofile = s.idle_conns + 200
    with server(name, s, nofile=nofile) as (child, port):
        deadline = time.monotonic() + 60
        with Child(
            sioload("idle", port, s, "--conns", "20"),
            s.logs / "sioload.log",
            nofile=nofile,
            stdin=True,
        ) as warm:
            warm.expect("ready", deadline)
            warm.close_stdin()
            warm.next_line(deadline)  # its report: every connection is closed
        time.sleep(0.5)  # let the server release the warm-up sessions (not a synchronisation)
        before, cpu0 = rss(child.pid), cpu_seconds(child.pid)
        cmd = sioload("idle", port, s, "--conns", str(s.idle_conns), "--timeout", "120")
        with Child(cmd, s.logs / "sioload.log", nofile=nofile, stdin=True) as idle:
            idle.expect("ready", time.monotonic() + 180)
            cpu1 = cpu_seconds(child.pid)
            time.sleep(1.0)  # let allocations settle before reading RSS, as bench/run.py does
            after = rss(child.pid)
            idle.close_stdin()
            report = json.loads(idle.next_line(time.monotonic() + 30))
    if "error" in report:
        raise BenchError(report["error"])
    return {
        "kib_per_conn": (after - before) / s.idle_conns / 1024,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "open_s": report["open_s"],
        "server_cpu_ms_per_conn": 1000 * (cpu1 - cpu0) / s.idle_conns,
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every numeric figure's median over the runs, plus each run's figures."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    row = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in keys}
    row["runs"] = runs
    return row


def run_workload(names: list[str], workload: str, s: Settings) -> list[dict[str, Any]]:
    """Every server's row for one workload, the repeats in rounds (bench/run.py's
    in_rounds: a drifting machine then weighs on both sides of a ratio alike)."""

    def measure(name: str) -> dict[str, Any]:
        return idle_run(name, s) if workload == "idle" else rate_run(name, workload, s)

    runs, errors = in_rounds(names, s.repeat, measure)
    return [finish_row(n, workload, runs[i], errors.get(i)) for i, n in enumerate(names)]


def finish_row(
    name: str, workload: str, runs: list[dict[str, Any]], error: str | None
) -> dict[str, Any]:
    row: dict[str, Any] = {"server": name, "workload": workload}
    if error is not None:
        return {**row, "ok": False, "error": error}
    row.update(medians(runs), ok=True)
    if workload != "idle":
        row["load_bound"] = any(
            load_bound(r["load_cpu_pct"], r["server_cpu_pct"], LOAD_BOUND_PCT) for r in runs
        )
    return row


def summary(row: dict[str, Any]) -> str:
    """bench/run.py's one-line summary, with the load-bound flag."""
    return run_summary(row) + (" (load-bound?)" if row.get("load_bound") else "")


# -- the report ----------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def rate_table(rows: list[dict[str, Any]], workload: str) -> list[str]:
    unit = UNITS[workload]
    base = next((r for r in rows if r["server"] == "tether" and r["ok"]), None)
    lines = [
        f"| server | {unit}/s | {unit}/server-CPU-s | tether ÷ this (per CPU-s) "
        f"| tether ÷ this (rate) | server CPU% | of it in the kernel | load CPU% | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {LABELS[r['server']]} | failed: {r['error']} ||||||||")
            continue
        cells = [
            LABELS[r["server"]],
            f"{r['rate']:,.0f}",
            f"{r['per_server_cpu_s']:,.0f}",
            ratio(base and base["per_server_cpu_s"], r["per_server_cpu_s"]),
            ratio(base and base["rate"], r["rate"]),
            f"{r['server_cpu_pct']:.0f}",
            f"{r['server_sys_share_pct']:.0f} %",
            f"{r['load_cpu_pct']:.0f}" + (" **load-bound?**" if r["load_bound"] else ""),
            f"{r['errors']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def idle_table(rows: list[dict[str, Any]]) -> list[str]:
    base = next((r for r in rows if r["server"] == "tether" and r["ok"]), None)
    lines = [
        "| server | KiB/conn | this ÷ tether | RSS before MiB | RSS after MiB "
        "| open s | server CPU ms/conn to open |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {LABELS[r['server']]} | failed: {r['error']} ||||||")
            continue
        lines.append(
            f"| {LABELS[r['server']]} | {r['kib_per_conn']:.1f} "
            f"| {ratio(r['kib_per_conn'], base and base['kib_per_conn'])} "
            f"| {r['rss_before_mib']:.1f} | {r['rss_after_mib']:.1f} | {r['open_s']:.2f} "
            f"| {r['server_cpu_ms_per_conn']:.2f} |"
        )
    return lines


def markdown(env: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    s = env["settings"]
    v = env["versions"]
    titles = {
        "echo": f"## Emit-echo: {s['echo_conns']} connection(s), {s['inflight']} events of "
        f"{s['size']} chars in flight on each",
        "fanout": f"## Room fan-out: one emit to a room of {s['receivers']:,}, "
        f"{s['rounds']} rounds in flight",
        "idle": f"## Idle Socket.IO connections (WebSocket transport): {s['idle_conns']:,}",
    }
    lines = [
        f"# Realtime: tether against socket.io on Node and python-socketio — {env['date']}",
        "",
        f"Command: `{env['command']}` (bench/realtime.py's docstring says what each figure "
        f"means). Medians of {s['repeat']} run(s) of {s['duration']:g} s after "
        f"{s['warmup']:g} s of warm-up; load: bench/sioload.c (C, one thread).",
        "",
        f"Python {v['python']}, tether {v['tether']} ({env['tether_commit']}), uvloop "
        f"{v['uvloop']}, Node {v['node']}, socket.io {env['socketio_version']}, python-socketio "
        f"{env['python_socketio_version']}; {env['pinning']}; {env['cpus']} CPUs ({env['cpu']}).",
        "",
        f"**Noisy figures.** The machine is shared with other work: load average (1, 5, 15 "
        f"min) {env['loadavg_before']} before, {env['loadavg_after']} after. Compare the "
        "per-server-CPU-second columns, and the spread of the runs in the JSON. A row marked "
        f"*load-bound?* had the load client at {LOAD_BOUND_PCT:.0f} % of its core or more in a "
        f"run where the server had time to spare (below {SATURATED} % of its own).",
    ]
    for workload in env["workloads"]:
        chosen = [r for r in rows if r["workload"] == workload]
        table = idle_table(chosen) if workload == "idle" else rate_table(chosen, workload)
        lines += ["", titles[workload], "", *table]
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=DEFAULT_SERVERS)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median kept)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 5)")
    parser.add_argument("--echo-conns", type=int, default=1)
    parser.add_argument("--receivers", type=int, help="fan-out room size (default 1000)")
    parser.add_argument("--rounds", type=int, default=4, help="fan-out rounds in flight")
    parser.add_argument("--idle-conns", type=int, help="idle connections (default 5000)")
    parser.add_argument(
        "--quick", action="store_true", help="0.3 s runs, 50 receivers, 200 idle connections"
    )
    parser.add_argument(
        "--base-src",
        type=Path,
        metavar="DIR",
        help="another tether src/ tree (a git worktree): adds the server tether-base,"
        " realtime_tether.py on it, to compare two trees in one run",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    if args.base_src is not None:
        base = args.base_src.resolve()
        SERVERS["tether-base"] = ["env", f"PYTHONPATH={base}", *SERVERS["tether"]]
        LABELS["tether-base"] = f"tether at {base} (uvloop)"
        if "tether-base" not in args.servers:
            args.servers = [*args.servers, "tether-base"]
    return args


def settings(args: argparse.Namespace) -> Settings:
    server_cpu, load_cpu, _ = pinning()
    s = Settings(repeat=args.repeat, echo_conns=args.echo_conns, rounds=args.rounds)
    if args.quick:
        s.duration, s.warmup, s.receivers, s.idle_conns = 0.3, 0.1, 50, 200
    s.duration = args.duration or s.duration
    s.receivers = args.receivers or s.receivers
    s.idle_conns = args.idle_conns or s.idle_conns
    s.server_cpu, s.load_cpu = server_cpu, load_cpu
    return s


def node_package_version(name: str) -> str | None:
    pkg = ROOT / "node_modules" / name / "package.json"
    return json.loads(pkg.read_text())["version"] if pkg.exists() else None


def run_environment(args: argparse.Namespace, s: Settings, argv: list[str]) -> dict[str, Any]:
    from importlib.metadata import version

    env = environment(pinning()[2])
    env.update(
        date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        command=" ".join([".venv/bin/python bench/realtime.py", *argv]),
        servers=args.servers,
        workloads=args.workloads,
        socketio_version=node_package_version("socket.io"),
        python_socketio_version=version("python-socketio"),
        loadavg_before=[round(x, 2) for x in os.getloadavg()],
        settings={k: v for k, v in vars(s).items() if isinstance(v, (int, float))},
    )
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "node" in args.servers and node_package_version("socket.io") is None:
        sys.exit("error: node_modules/socket.io missing (npm ci), or leave out --servers node")
    build_sioload()
    s = settings(args)
    s.logs.mkdir(parents=True, exist_ok=True)
    env = run_environment(args, s, argv)
    rows = []
    for workload in args.workloads:
        names = [n for n in args.servers if not (workload == "idle" and n in RATE_ONLY)]
        for row in run_workload(names, workload, s):
            print(f"{workload} {row['server']}: {summary(row)}", flush=True)
            rows.append(row)
    env["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    out = args.results_dir / f"{'quick-' if args.quick else ''}realtime-{stamp}"
    out.with_suffix(".json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(env, rows))
    print(f"wrote {out}.json and .md")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
