"""Where each of issue 18's rate rows spends its server CPU, and the ceiling that sets.

Part of what bench/performance.py writes into docs/performance.md, from the
same two result files. For every rate row it lists, per unit of work (message,
delivery, connection, event), each server's CPU in microseconds, split into
kernel and user space:

* bench/run.py records each server's kernel CPU over the window
  (``server_system_cpu_s``); bench/realtime.py its share
  (``server_sys_share_pct``). Both are the process's own ``stime``.
* The kernel part is what the server's system calls cost (reads, writes,
  epoll, accept): a library chooses how many it makes, not what each costs.
* ``budget``: the user-space time per unit tether could spend and still meet
  the row's target, given its own kernel time in this run: ``peer ÷ target -
  tether's kernel``. Nothing left (``none``) means the target is out of reach
  without fewer system calls, whatever runs in user space.

The rows also show the ceilings measured in the same runs: the ``raw`` peer
(a WebSocket-unaware asyncio TCP echo on uvloop, bench/run.py) and the
``floor`` server (bench/servers/realtime_floor.py: the JSON and the frame of
each event and nothing else, on tether's callback API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

# (workload, variant, label, unit) of bench/run.py's gap rows, in the main table's order.
RUN_ROWS = [
    ("reqresp", "128 B", "raw request/response, 128 B", "message"),
    ("echo", "64 KiB", "raw echo 64 KiB", "message"),
    ("echo", "1 MiB", "raw echo 1 MiB", "message"),
    ("fanout", "64 B", "raw fan-out", "delivery"),
    ("connect", "50 concurrent", "connect + close, 50 concurrent", "connection"),
]
RUN_OWN = ("tether", "tether-callbacks")  # tether as its two APIs run it
RUN_CEILING = "raw"
REALTIME_ROWS = [
    ("echo", "Socket.IO emit-echo", "event"),
    ("fanout", "Socket.IO fan-out", "delivery"),
]
REALTIME_NAMES = {
    "tether": "tether",
    "tether-coroutine": "tether, async def handler",
    "node": "socket.io (Node)",
    "floor": "Python floor",
}


@dataclass(frozen=True)
class Cost:
    """One server's CPU per unit of work, in microseconds."""

    server: str
    total: float
    kernel: float | None

    @property
    def user(self) -> float | None:
        return None if self.kernel is None else self.total - self.kernel


def run_cost(row: Json | None) -> Cost | None:
    """From a bench/run.py row (older runs have no kernel figure)."""
    if row is None or not row.get("ok") or not row.get("per_server_cpu_s"):
        return None
    system = row.get("server_system_cpu_s")
    kernel = 1e6 * system / row["count"] if system is not None and row["count"] else None
    return Cost(row["subject"], 1e6 / row["per_server_cpu_s"], kernel)


def realtime_cost(row: Json | None) -> Cost | None:
    """From a bench/realtime.py row."""
    if row is None or not row.get("ok") or not row.get("per_server_cpu_s"):
        return None
    total = 1e6 / row["per_server_cpu_s"]
    share = row.get("server_sys_share_pct")
    kernel = total * share / 100 if share is not None else None
    return Cost(REALTIME_NAMES.get(row["server"], row["server"]), total, kernel)


def run_row(rows: list[Json], workload: str, variant: str, subject: str) -> Json | None:
    """The bench/run.py row of ``subject`` in one workload, if its run succeeded."""
    key = (workload, variant, subject)
    return next(
        (r for r in rows if r["ok"] and (r["workload"], r["variant"], r["subject"]) == key), None
    )


def realtime_row(rows: list[Json], server: str, workload: str) -> Json | None:
    """The bench/realtime.py row of ``server`` in one workload, if its run succeeded."""
    key = (server, workload)
    return next((r for r in rows if r["ok"] and (r["server"], r["workload"]) == key), None)


def budget(tether: Cost, peer: Cost, target: float) -> str:
    """The user-space µs per unit tether may spend to meet ``target`` against ``peer``."""
    if tether.kernel is None:
        return "—"
    left = peer.total / target - tether.kernel
    if left <= 0:
        return f"none (its kernel time alone is {tether.kernel / (peer.total / target):.2f}x it)"
    return f"{left:.2f} (uses {tether.user:.2f})"


def us(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def lines_for(label: str, costs: list[Cost], peer: Cost | None, target: float) -> list[str]:
    out = []
    for cost in costs:
        mine = cost.server.startswith("tether")
        room = budget(cost, peer, target) if mine and peer is not None else ""
        cells = [label, cost.server, us(cost.total), us(cost.kernel), us(cost.user), room]
        out.append("| " + " | ".join(cells) + " |")
        label = ""  # the workload is named on its first line only
    return out


def table(
    run_rows: list[Json],
    best: dict[tuple[str, str], str],
    realtime_rows: list[Json],
    target: float = 1.2,
) -> list[str]:
    """The CPU-per-unit table; ``best`` names each run row's best peer."""
    lines = [
        "| workload | server | CPU µs per unit | kernel | user space "
        f"| user-space budget for ≥ {target:g}x (µs) |",
        "|---|---|---|---|---|---|",
    ]
    for workload, variant, label, unit in RUN_ROWS:
        peer_name = best.get((workload, variant))
        peer = run_cost(run_row(run_rows, workload, variant, peer_name)) if peer_name else None
        names = [*RUN_OWN, *([peer_name] if peer_name and peer else []), RUN_CEILING]
        costs = [c for n in names if (c := run_cost(run_row(run_rows, workload, variant, n)))]
        if costs:
            lines += lines_for(f"{label} (per {unit})", costs, peer, target)
    for workload, label, unit in REALTIME_ROWS:
        # tether-coroutine differs from tether in its echo handler only.
        names = [n for n in REALTIME_NAMES if workload == "echo" or n != "tether-coroutine"]
        found = [realtime_cost(realtime_row(realtime_rows, n, workload)) for n in names]
        node = realtime_cost(realtime_row(realtime_rows, "node", workload))
        costs = [c for c in found if c is not None]
        if costs:
            lines += lines_for(f"{label} (per {unit})", costs, node, target)
    return lines


def ceilings(realtime_rows: list[Json]) -> list[str]:
    """What the floor server says of each Socket.IO row: the Python ceiling against Node."""
    out = []
    for workload, label, _ in REALTIME_ROWS:
        got = {
            r["server"]: r["per_server_cpu_s"]
            for r in realtime_rows
            if r["workload"] == workload and r.get("ok") and r.get("per_server_cpu_s")
        }
        if {"tether", "node", "floor"} <= got.keys():
            out.append(
                f"- {label}: the Python floor is {got['floor'] / got['node']:.2f}x socket.io "
                f"on Node per server CPU-second; tether is {got['tether'] / got['floor']:.2f}x "
                "the floor."
            )
    return out


def run_ceilings(run_rows: list[Json], best: dict[tuple[str, str], str]) -> list[str]:
    """What the raw TCP echo says of each raw row it ran in: the most a Python
    server on uvloop's transports does here, against the best peer."""
    out = []
    for workload, variant, label, _ in RUN_ROWS:
        peer = best.get((workload, variant))
        got = {
            n: r["per_server_cpu_s"]
            for n in (*RUN_OWN, RUN_CEILING, *([peer] if peer else []))
            if (r := run_row(run_rows, workload, variant, n)) and r.get("per_server_cpu_s")
        }
        if peer is None or not {"tether", RUN_CEILING, peer} <= got.keys():
            continue
        raw = got[RUN_CEILING]
        callbacks = got.get("tether-callbacks")
        also = f" (MessageHandler callbacks {callbacks / raw:.2f}x)" if callbacks else ""
        out.append(
            f"- {label}: the raw TCP echo, which does no WebSocket work at all, is "
            f"{raw / got[peer]:.2f}x {peer} per server CPU-second; tether is "
            f"{got['tether'] / raw:.2f}x the raw echo{also}."
        )
    return out
