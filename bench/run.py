"""tether's benchmark suite: every workload against tether and its peers, in one run.

    .venv/bin/python bench/run.py [--quick] [--only WORKLOAD ...] [--peers PEER ...]

Each measurement starts a fresh server pinned to one core (``taskset``) and the
C load generator (bench/loadgen.c, compiled into bench/.build/) pinned to the
other, samples the server's CPU time and RSS with psutil, and keeps the figures
in ``bench/results/results-<date>.json`` plus the tables in
``bench/results/latest.md`` (``--quick`` writes ``quick-*`` files, git-ignored).
bench/README.md explains every column. Nothing is installed here: a missing
module is reported with the command that installs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import queue
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / ".build"
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN = BUILD / "loadgen"
PYTHON = sys.executable
INSTALL_HINT = ".venv/bin/pip install -e '.[bench]'"

WORKLOADS = ("echo", "reqresp", "fanout", "connect", "idle", "client")
ECHO_SIZES = ((16, "16 B"), (1024, "1 KiB"), (65536, "64 KiB"), (1 << 20, "1 MiB"))


class BenchError(Exception):
    """A measurement failed; the run goes on and the table says why."""


@dataclass(frozen=True)
class Peer:
    name: str
    loop: str
    argv: tuple[str, ...]  # the port is appended
    modules: tuple[str, ...] = ()
    node: bool = False
    raw: bool = False  # WebSocket-unaware: echo and reqresp only, loadgen --raw

    def command(self, port: int) -> list[str]:
        return [*self.argv, str(port)]


def _py(script: str, *flags: str) -> tuple[str, ...]:
    return (PYTHON, str(BENCH / "servers" / script), *flags)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("tether", "uvloop", _py("tether_server.py", "--uvloop"), ("tether", "uvloop")),
        Peer("tether-asyncio", "asyncio", _py("tether_server.py"), ("tether",)),
        Peer(
            "tether-callbacks",
            "uvloop",
            _py("tether_server.py", "--uvloop", "--callbacks"),
            ("tether", "uvloop"),
        ),
        # The pure-Python fallback, C accelerator turned off (target: 1.5x websockets).
        Peer(
            "tether-pure",
            "uvloop",
            ("env", "TETHER_NO_SPEEDUPS=1", *_py("tether_server.py", "--uvloop")),
            ("tether", "uvloop"),
        ),
        Peer("raw", "uvloop", _py("raw_tcp.py", "--uvloop"), ("uvloop",), raw=True),
        Peer(
            "websockets",
            "uvloop",
            _py("websockets_server.py", "--uvloop"),
            ("websockets", "uvloop"),
        ),
        Peer("aiohttp", "uvloop", _py("aiohttp_server.py", "--uvloop"), ("aiohttp", "uvloop")),
        Peer("picows", "uvloop", _py("picows_server.py", "--uvloop"), ("picows", "uvloop")),
        Peer("ws", "node", ("node", str(BENCH / "servers" / "ws_server.mjs")), node=True),
    )
}
QUICK_PEERS = ("tether", "raw", "websockets")
BASELINES = report.BASELINES


@dataclass(frozen=True)
class Client:
    name: str
    loop: str
    argv: tuple[str, ...]  # the URI is appended; empty for the C loadgen
    modules: tuple[str, ...] = ()


def _client(script: str, *flags: str) -> tuple[str, ...]:
    return (PYTHON, str(BENCH / "clients" / script), *flags)


CLIENTS: dict[str, Client] = {
    c.name: c
    for c in (
        Client("loadgen (C)", "epoll", ()),
        Client("tether", "uvloop", _client("tether_client.py", "--uvloop"), ("tether", "uvloop")),
        Client("tether-asyncio", "asyncio", _client("tether_client.py"), ("tether",)),
        Client(
            "websockets",
            "uvloop",
            _client("websockets_client.py", "--uvloop"),
            ("websockets", "uvloop"),
        ),
        Client("picows", "uvloop", _client("picows_client.py", "--uvloop"), ("picows", "uvloop")),
    )
}


@dataclass
class Settings:
    duration: float
    warmup: float
    conns: int  # reqresp connections
    fanout: int  # fan-out receivers
    idle: int  # idle connections
    repeat: int
    quick: bool
    server_cpu: list[str] = field(default_factory=list)  # taskset prefixes
    load_cpu: list[str] = field(default_factory=list)


# -- child processes ------------------------------------------------------------------------


def _raise_nofile(want: int) -> Callable[[], None]:
    """preexec_fn: lift RLIMIT_NOFILE to ``want`` (root may raise the hard limit too)."""

    def apply() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= want:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    return apply


class Child:
    """A child process whose stdout lines are read by a thread, stderr going to a log.

    Always used as a context manager: on exit the process is killed by PID if it
    is still running, so no run leaves a server or loadgen behind.
    """

    def __init__(self, cmd: list[str], log: Path, *, nofile: int, stdin: bool = False) -> None:
        self.cmd = cmd
        self.log = log
        with log.open("ab") as err:
            err.write(("$ " + " ".join(cmd) + "\n").encode())
            err.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
                preexec_fn=_raise_nofile(nofile),
            )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float) -> str:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BenchError(f"{self._name()}: no output in time") from None
        if line is None:
            raise BenchError(f"{self._name()} exited with {self.proc.wait(5)}{self._tail()}")
        return line

    def expect(self, wanted: str, deadline: float) -> None:
        while (line := self.next_line(deadline)) != wanted:
            if line.startswith("{"):  # the loadgen reports a fatal error as JSON
                raise BenchError(f"{self._name()}: {json.loads(line).get('error', line)}")

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def _name(self) -> str:
        return Path(next((a for a in self.cmd if "/" in a and a != PYTHON), self.cmd[0])).name

    def _tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return (": " + lines[-1][:200]) if len(lines) > 1 else ""

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running peer server: its PID, port, CPU seconds and RSS."""

    def __init__(self, child: Child, port: int) -> None:
        import psutil

        self.child = child
        self.port = port
        self.process = psutil.Process(child.pid)

    def cpu(self) -> float:
        return self.cpu_split()[0]

    def cpu_split(self) -> tuple[float, float]:
        """Its CPU seconds in all and in the kernel (what its system calls cost)."""
        times = self.process.cpu_times()
        return float(times.user + times.system), float(times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


@contextmanager
def server(peer: Peer, s: Settings, log: Path, nofile: int = 4096) -> Iterator[Server]:
    port = free_port()
    with Child([*s.server_cpu, *peer.command(port)], log, nofile=nofile) as child:
        child.expect("ready", time.monotonic() + 30)
        yield Server(child, port)


def loadgen(mode: str, port: int, s: Settings, *extra: str) -> list[str]:
    return [
        *s.load_cpu,
        str(LOADGEN),
        mode,
        "--port",
        str(port),
        "--duration",
        str(s.duration),
        "--warmup",
        str(s.warmup),
        *extra,
    ]


def measure(cmd: list[str], srv: Server, log: Path, nofile: int = 4096) -> dict[str, Any]:
    """Run one load (loadgen or client script) against ``srv``; return its JSON + server CPU."""
    deadline = time.monotonic() + 120
    with Child(cmd, log, nofile=nofile) as load:
        load.expect("start", deadline)
        (cpu0, sys0), t0 = srv.cpu_split(), time.perf_counter()
        load.expect("stop", deadline)
        (cpu1, sys1), t1 = srv.cpu_split(), time.perf_counter()
        result: dict[str, Any] = json.loads(load.next_line(deadline))
    if "error" in result:
        raise BenchError(result["error"])
    if not result["count"]:
        raise BenchError(f"nothing completed in the window ({result.get('errors')} errors)")
    result["server_cpu_s"] = cpu1 - cpu0
    result["server_system_cpu_s"] = sys1 - sys0
    result["server_cpu_pct"] = 100 * (cpu1 - cpu0) / (t1 - t0)
    result["load_cpu_pct"] = result.pop("cpu_pct")
    result["per_server_cpu_s"] = result["count"] / (cpu1 - cpu0) if cpu1 > cpu0 else None
    return result


# -- workloads --------------------------------------------------------------------------------


def run_echo(peer: Peer, size: int, s: Settings, log: Path) -> dict[str, Any]:
    with server(peer, s, log) as srv:
        args = ["--conns", "1", "--inflight", "32", "--size", str(size)]
        return measure(
            loadgen("echo", srv.port, s, *args, *(["--raw"] if peer.raw else [])), srv, log
        )


def run_reqresp(peer: Peer, s: Settings, log: Path) -> dict[str, Any]:
    with server(peer, s, log) as srv:
        args = ["--conns", str(s.conns), "--size", "128", *(["--raw"] if peer.raw else [])]
        return measure(loadgen("reqresp", srv.port, s, *args), srv, log)


def run_fanout(peer: Peer, s: Settings, log: Path) -> dict[str, Any]:
    nofile = 2 * s.fanout + 100
    with server(peer, s, log, nofile) as srv:
        return measure(loadgen("fanout", srv.port, s, "--conns", str(s.fanout)), srv, log, nofile)


def run_connect(peer: Peer, concurrency: int, s: Settings, log: Path) -> dict[str, Any]:
    with server(peer, s, log) as srv:
        cmd = loadgen("connect", srv.port, s, "--concurrency", str(concurrency))
        return measure(cmd, srv, log)


def run_idle(peer: Peer, s: Settings, log: Path) -> dict[str, Any]:
    """Server RSS per idle connection: (RSS with N open - RSS before) / N."""
    n, nofile = s.idle, 2 * s.idle + 100
    with server(peer, s, log, nofile) as srv:
        # Warm the handshake path first, so one-time imports and caches are in the baseline.
        warm = dataclasses.replace(s, duration=0.3, warmup=0.0)
        measure(loadgen("connect", srv.port, warm, "--concurrency", "4"), srv, log)
        time.sleep(0.5)
        rss0 = srv.rss()
        cmd = [
            *s.load_cpu,
            str(LOADGEN),
            "idle",
            "--port",
            str(srv.port),
            "--conns",
            str(n),
            "--timeout",
            "120",
        ]
        deadline = time.monotonic() + 180
        with Child(cmd, log, nofile=nofile, stdin=True) as load:
            t0, cpu0 = time.perf_counter(), srv.cpu()
            load.expect("ready", deadline)
            open_s, cpu1 = time.perf_counter() - t0, srv.cpu()
            time.sleep(0.3 if s.quick else 1.0)  # let handler tasks and timers settle
            rss1 = srv.rss()
            load.close_stdin()
            result: dict[str, Any] = json.loads(load.next_line(deadline))
    if "error" in result:
        raise BenchError(result["error"])
    result.update(
        rss_before=rss0,
        rss_after=rss1,
        kib_per_conn=(rss1 - rss0) / n / 1024,
        open_s=open_s,
        server_cpu_s=cpu1 - cpu0,
        server_cpu_pct=100 * (cpu1 - cpu0) / open_s,
        load_cpu_pct=result.pop("cpu_pct"),
    )
    return result


def fixed_server() -> Peer:
    """The server every client talks to: picows if installed, else websockets."""
    return PEERS["picows"] if _missing(PEERS["picows"].modules) == [] else PEERS["websockets"]


def run_client(client: Client, s: Settings, log: Path) -> dict[str, Any]:
    with server(fixed_server(), s, log) as srv:
        if not client.argv:  # the C loadgen, as the reference for what a client can do
            cmd = loadgen("echo", srv.port, s, "--size", "16", "--inflight", "32")
        else:
            cmd = [
                *s.load_cpu,
                *client.argv,
                f"ws://127.0.0.1:{srv.port}/",
                "--size",
                "16",
                "--inflight",
                "32",
                "--duration",
                str(s.duration),
                "--warmup",
                str(s.warmup),
            ]
        result = measure(cmd, srv, log)
    result["client_cpu_pct"] = result["load_cpu_pct"]
    result["per_client_cpu_s"] = result["count"] / result["cpu_s"] if result["cpu_s"] else None
    return result


@dataclass(frozen=True)
class Case:
    workload: str
    variant: str
    subject: str  # a peer name, or a client name for the client workload
    loop: str
    run: Callable[[Settings, Path], dict[str, Any]]


def primary(workload: str) -> str:
    """The figure --repeat takes the median of (memory for idle, else the rate)."""
    return "kib_per_conn" if workload == "idle" else "rate"


def plan(workloads: list[str], peers: list[Peer], clients: list[Client]) -> list[Case]:
    cases: list[Case] = []
    ws_peers = [p for p in peers if not p.raw]
    for wl in workloads:
        if wl == "echo":
            for size, label in ECHO_SIZES:
                cases += [
                    Case(
                        wl,
                        label,
                        p.name,
                        p.loop,
                        lambda s, log, p=p, size=size: run_echo(p, size, s, log),
                    )
                    for p in peers
                ]
        elif wl == "reqresp":
            cases += [
                Case(wl, "128 B", p.name, p.loop, lambda s, log, p=p: run_reqresp(p, s, log))
                for p in peers
            ]
        elif wl == "fanout":
            cases += [
                Case(wl, "64 B", p.name, p.loop, lambda s, log, p=p: run_fanout(p, s, log))
                for p in ws_peers
            ]
        elif wl == "connect":
            for conc, label in ((1, "sequential"), (50, "50 concurrent")):
                cases += [
                    Case(
                        wl,
                        label,
                        p.name,
                        p.loop,
                        lambda s, log, p=p, c=conc: run_connect(p, c, s, log),
                    )
                    for p in ws_peers
                ]
        elif wl == "idle":
            cases += [
                Case(
                    wl,
                    "idle",
                    p.name,
                    p.loop,
                    lambda s, log, p=p: run_idle(p, s, log),
                )
                for p in ws_peers
            ]
        elif wl == "client":
            cases += [
                Case(
                    wl,
                    "16 B, 32 in flight",
                    c.name,
                    c.loop,
                    lambda s, log, c=c: run_client(c, s, log),
                )
                for c in clients
            ]
    return cases


def groups(cases: list[Case]) -> list[list[Case]]:
    """The cases in runs of one (workload, variant): the subjects one table compares."""
    out: list[list[Case]] = []
    for case in cases:
        if out and (out[-1][0].workload, out[-1][0].variant) == (case.workload, case.variant):
            out[-1].append(case)
        else:
            out.append([case])
    return out


# -- environment ------------------------------------------------------------------------------


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _node_ws_version() -> str | None:
    if shutil.which("node") is None:
        return None
    pkg = ROOT / "node_modules" / "ws" / "package.json"
    return json.loads(pkg.read_text())["version"] if pkg.exists() else None


def check_peers(names: list[str], explicit: bool) -> list[Peer]:
    """The peers that can run; exit with install instructions for missing Python modules."""
    peers, missing = [], set()
    if importlib.util.find_spec("psutil") is None:
        missing.add("psutil")
    for name in names:
        peer = PEERS[name]
        if peer.node and _node_ws_version() is None:
            msg = "node or node_modules/ws missing (install Node.js, then run `npm ci`)"
            if explicit:
                sys.exit(f"error: peer ws: {msg}")
            print(f"note: skipping peer ws: {msg}", file=sys.stderr)
            continue
        missing.update(_missing(peer.modules))
        peers.append(peer)
    if missing:
        sys.exit(
            f"error: missing Python modules {sorted(missing)}; install them with\n"
            f"    {INSTALL_HINT}"
        )
    return peers


def _c_sources(source: Path) -> list[Path]:
    """``source`` and every local header it includes (``#include "name"``),
    transitively, from the same folder."""
    found = [source]
    for path in found:
        for name in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M):
            header = path.parent / name
            if header not in found:
                found.append(header)
    return found


def build_c(source: Path, binary: Path) -> Path:
    """Compile ``source`` into ``binary`` unless the binary is newer than
    the source and every header it includes."""
    newest = max(path.stat().st_mtime for path in _c_sources(source))
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    if shutil.which("gcc") is None:
        sys.exit(f"error: gcc is needed to build bench/{source.name} (apt-get install gcc)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", "-o", str(binary), str(source)]
    subprocess.run(cmd, check=True, timeout=120)
    return binary


def build_loadgen() -> None:
    build_c(LOADGEN_SRC, LOADGEN)


def pinning() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the server and the load, and a note for the report."""
    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        return [], [], "not pinned (taskset missing): server and load share the cores"
    if len(cpus) < 2:
        return [], [], "not pinned (one CPU): server and load share it"
    server_cpu, load_cpu = str(cpus[0]), str(cpus[1])
    note = f"server on CPU {server_cpu}, load generator / client on CPU {load_cpu} (taskset)"
    return ["taskset", "-c", server_cpu], ["taskset", "-c", load_cpu], note


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(pin_note: str) -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=10, cwd=ROOT
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    dirty = " (uncommitted changes)" if out(["git", "status", "--porcelain", "src"]) else ""
    versions = {
        d: _version(d) for d in ("tether", "uvloop", "websockets", "aiohttp", "picows", "psutil")
    }
    versions["python"] = platform.python_version()
    versions["node"] = out(["node", "--version"]) or None
    versions["ws"] = _node_ws_version()
    versions["gcc"] = out(["gcc", "-dumpfullversion"]) or None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "pinning": pin_note,
        "tether_commit": out(["git", "rev-parse", "--short", "HEAD"]) + dirty,
        "versions": versions,
    }


# -- main -------------------------------------------------------------------------------------


def _log(case: Case) -> Path:
    log = BUILD / "logs" / f"{case.workload}-{case.subject}.log".replace(" ", "_")
    log.parent.mkdir(parents=True, exist_ok=True)
    return log


T = TypeVar("T")


def in_rounds(
    subjects: list[T], repeat: int, measure: Callable[[T], dict[str, Any]]
) -> tuple[list[list[dict[str, Any]]], dict[int, str]]:
    """``measure`` each subject ``repeat`` times, in rounds: round r measures
    every subject once before round r+1 starts, so that a machine whose speed
    drifts (a shared host: this one's peers ran up to 2x faster in one run
    than in the run before) weighs on every subject of a ratio alike, where
    running each subject's repeats back to back let one subject take a fast
    stretch and the next a slow one. Each subject's results, and the error
    that stopped a subject (by index; the others go on)."""
    done: list[list[dict[str, Any]]] = [[] for _ in subjects]
    errors: dict[int, str] = {}
    for _ in range(repeat):
        for i, subject in enumerate(subjects):
            if i in errors:
                continue
            try:
                done[i].append(measure(subject))
            except (BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
                errors[i] = str(exc)
    return done, errors


def run_group(group: list[Case], s: Settings) -> list[dict[str, Any]]:
    """The cases of one table (a workload and variant), their repeats in rounds."""
    done, errors = in_rounds(group, s.repeat, lambda case: case.run(s, _log(case)))
    return [
        finish_row(
            {"workload": c.workload, "variant": c.variant, "subject": c.subject, "loop": c.loop},
            done[i],
            errors.get(i),
        )
        for i, c in enumerate(group)
    ]


def finish_row(
    row: dict[str, Any], results: list[dict[str, Any]], error: str | None
) -> dict[str, Any]:
    """One table row (``row`` names it): the run with the median primary figure,
    and with several runs, their spread and every run (``repeats``)."""
    if error is not None:
        return {**row, "ok": False, "error": error}
    key = primary(row["workload"])
    results = sorted(results, key=lambda r: r.get(key) or 0)
    row = {**row, **results[len(results) // 2], "ok": True}
    if len(results) > 1:
        values = [r.get(key) or 0 for r in results]
        row["spread"] = {"min": min(values), "max": max(values), "stdev": statistics.pstdev(values)}
        row["repeats"] = results  # what bench/run_merge.py pools
    return row


def summary(row: dict[str, Any]) -> str:
    if not row["ok"]:
        return "FAILED: " + row["error"]
    if row["workload"] == "idle":
        return f"{row['kib_per_conn']:.1f} KiB/conn"
    cpu = row.get("per_server_cpu_s") or 0
    errors = f", {row['errors']} errors" if row.get("errors") else ""
    return (
        f"{row['rate']:,.0f}/s, {cpu:,.0f}/server-CPU-s, server {row['server_cpu_pct']:.0f}%"
        f" CPU, load {row['load_cpu_pct']:.0f}%{errors}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 0.5 s per run, 10 connections, tether+raw+websockets",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=WORKLOADS,
        metavar="WORKLOAD",
        help=f"run only these workloads ({', '.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=list(PEERS),
        metavar="PEER",
        help=f"run only these peers ({', '.join(PEERS)})",
    )
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 5)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per case, in rounds over each table's subjects; the median is kept (default 1)",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    server_cpu, load_cpu, _ = pinning()
    if args.quick:
        s = Settings(0.5, 0.2, 10, 10, 10, args.repeat, True, server_cpu, load_cpu)
    else:
        s = Settings(5.0, 1.0, 100, 1000, 10_000, args.repeat, False, server_cpu, load_cpu)
    if args.duration:
        s.duration = args.duration
    return s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    names = args.peers or list(QUICK_PEERS if args.quick else PEERS)
    peers = check_peers(names, explicit=args.peers is not None)
    workloads = args.only or list(WORKLOADS)
    clients = [
        c for c in CLIENTS.values() if not c.argv or (c.name in names and not _missing(c.modules))
    ]
    build_loadgen()
    s = settings(args)
    env = environment(pinning()[2])
    env.update(
        command=" ".join([".venv/bin/python bench/run.py", *given]),
        duration=s.duration,
        warmup=s.warmup,
        repeat=s.repeat,
        quick=s.quick,
        connections={"reqresp": s.conns, "fanout": s.fanout, "idle": s.idle},
        client_server=fixed_server().name,
        date=datetime.now().isoformat(timespec="seconds"),
    )
    BUILD.mkdir(parents=True, exist_ok=True)
    cases = plan(workloads, peers, clients)
    print(f"{len(cases)} runs; {env['pinning']}", flush=True)
    rows = []
    for group in groups(cases):
        for row in run_group(group, s):
            rows.append(row)
            print(
                f"[{len(rows)}/{len(cases)}] {row['workload']} {row['variant']}"
                f" {row['subject']}: {summary(row)}",
                flush=True,
            )
    return write_results(args.results_dir, env, rows, s.quick)


def write_results(out: Path, env: dict[str, Any], rows: list[dict[str, Any]], quick: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    prefix = "quick" if quick else "results"
    json_path = out / f"{prefix}-{stamp}.json"
    json_path.write_text(json.dumps({"environment": env, "runs": rows}, indent=1) + "\n")
    md_path = out / ("quick.md" if quick else "latest.md")
    md_path.write_text(report.markdown(env, rows, BASELINES))
    print(
        f"wrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}"
        f" and {md_path.name}"
    )
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed (see the tables and bench/.build/logs/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
