"""bench/performance.py: docs/performance.md's generated part, from result files only.

No benchmark runs here: the doc is checked against the committed JSON files it
names, and met/gap/"not measured" against tiny synthetic results.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DOC = ROOT / "docs" / "performance.md"


@pytest.fixture(scope="module")
def perf() -> Iterator[ModuleType]:
    """bench/performance.py, imported with bench/ on sys.path for its report and run
    modules, which are dropped again afterwards (other tests import their own names)."""
    before = set(sys.modules)
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_performance", BENCH / "performance.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))
        for name in set(sys.modules) - before:
            if name in ("report", "run", "limits", "bench_performance"):
                del sys.modules[name]


def test_doc_is_what_the_committed_results_give(perf: ModuleType) -> None:
    doc = DOC.read_text()
    sources = perf.named_sources(doc)
    assert [p.name.split("-")[0] for p in sources] == ["results", "realtime"]
    assert all(p.is_file() for p in sources)
    # A hand edit between the markers, or a script change not regenerated, fails here.
    assert perf.generated(*sources) == perf.between(doc)


def test_check_fails_on_a_hand_edit_and_rewrite_keeps_the_rest(
    perf: ModuleType, tmp_path: Path
) -> None:
    doc = DOC.read_text()
    sources = [str(p) for p in perf.named_sources(doc)]
    copy = tmp_path / "performance.md"
    copy.write_text(doc)
    assert perf.main(["--from", *sources, "--check", "--doc", str(copy)]) == 0
    inside = doc.index(perf.BEGIN) + len(perf.BEGIN) + 1
    edited = doc[:inside] + "A hand edit.\n" + doc[inside:]
    copy.write_text(edited)
    assert perf.main(["--from", *sources, "--check", "--doc", str(copy)]) == 1
    assert copy.read_text() == edited  # --check writes nothing
    outside = "Hand-written, kept.\n" + doc + "\nAlso kept.\n"
    copy.write_text(outside.replace(perf.between(doc), "stale"))
    assert perf.main(["--from", *sources, "--doc", str(copy)]) == 0
    assert copy.read_text() == outside


# -- synthetic results --------------------------------------------------------------------


def run_json(rows: list[tuple[str, str, str, float]], **env: Any) -> dict[str, Any]:
    """bench/run.py's shape: (workload, variant, subject, per-CPU-s or KiB) rows."""
    runs = []
    for workload, variant, subject, value in rows:
        row: dict[str, Any] = {"workload": workload, "variant": variant, "subject": subject}
        if workload == "idle":
            row.update(ok=True, kib_per_conn=value)
        else:
            row.update(ok=True, per_server_cpu_s=value, rate=value / 2, load_cpu_pct=10)
        runs.append(row)
    environment = {
        "date": "2026-01-01T00:00:00",
        "quick": False,
        "duration": 5.0,
        "warmup": 1.0,
        "repeat": 3,
        "connections": {"reqresp": 100, "fanout": 1000, "idle": 10000},
        "tether_commit": "abc1234",
        "pinning": "pinned",
        **env,
    }
    return {"environment": environment, "runs": runs}


def realtime_json(rows: list[tuple[str, str, float, bool]]) -> dict[str, Any]:
    """bench/realtime.py's shape: (server, workload, per-CPU-s or KiB, load-bound) rows."""
    out = []
    for server, workload, value, bound in rows:
        row: dict[str, Any] = {"server": server, "workload": workload, "ok": True}
        if workload == "idle":
            row["kib_per_conn"] = value
        else:
            row.update(per_server_cpu_s=value, rate=value / 2, load_bound=bound)
        out.append(row)
    settings = {
        "duration": 5.0,
        "warmup": 1.0,
        "repeat": 3,
        "echo_conns": 1,
        "inflight": 32,
        "size": 16,
        "receivers": 1000,
        "rounds": 4,
        "idle_conns": 5000,
    }
    environment = {
        "date": "2026-01-01 00:00:00 UTC",
        "command": ".venv/bin/python bench/realtime.py --repeat 3",
        "tether_commit": "abc1234",
        "socketio_version": "4.8.4",
        "pinning": "pinned",
        "settings": settings,
    }
    return {"environment": environment, "rows": out}


def statuses(perf: ModuleType, run: dict[str, Any], rt: dict[str, Any]) -> dict[str, str]:
    rows = perf.realtime_rows(rt["environment"], rt["rows"])
    rows += perf.run_rows(run["environment"], run["runs"])
    return {r.workload.split(" (")[0]: r.status for r in rows}


def test_met_and_gap_follow_the_numbers(perf: ModuleType) -> None:
    run = run_json(
        [
            ("reqresp", "128 B", "tether", 120.0),  # 1.2x the best peer: met
            ("reqresp", "128 B", "websockets", 50.0),
            ("reqresp", "128 B", "picows", 100.0),
            ("echo", "64 KiB", "tether", 119.0),  # 1.19x: gap
            ("echo", "64 KiB", "picows", 100.0),
            ("echo", "1 MiB", "tether", 80.0),  # 0.8x raw TCP: met; 1.6x picows: met
            ("echo", "1 MiB", "picows", 50.0),
            ("echo", "1 MiB", "raw", 100.0),
        ]
    )
    rt = realtime_json(
        [
            ("tether", "echo", 130.0, False),  # 1.3x Node: met
            ("node", "echo", 100.0, False),
            ("python-socketio", "echo", 10.0, False),
            ("tether", "fanout", 130.0, True),  # 1.3x, but the load client was the limit
            ("node", "fanout", 100.0, False),
            ("tether", "idle", 10.0, False),  # more memory than Node: gap
            ("node", "idle", 9.0, False),
        ]
    )
    got = statuses(perf, run, rt)
    assert got["raw request/response, 100 connections, 128 B"] == "met"
    assert got["raw echo 64 KiB"] == "gap"
    assert got["raw echo 1 MiB"] == "met"
    assert got["raw echo 1 MiB against raw TCP"] == "met"
    assert got["Socket.IO emit-echo, 16 chars, 1 connection, 32 in flight each"] == "met"
    assert got["Socket.IO room fan-out to 1,000, 4 rounds in flight"].startswith("gap")
    assert got["idle Socket.IO connection, WebSocket transport"] == "gap"

    rt["rows"][-2]["kib_per_conn"] = 8.0  # now less than Node's 9
    rt["rows"][3]["load_bound"] = False
    run["runs"][3]["per_server_cpu_s"] = 121.0
    got = statuses(perf, run, rt)
    assert got["idle Socket.IO connection, WebSocket transport"] == "met"
    assert got["Socket.IO room fan-out to 1,000, 4 rounds in flight"] == "met"
    assert got["raw echo 64 KiB"] == "met"


def test_missing_data_says_not_measured(perf: ModuleType, tmp_path: Path) -> None:
    run = run_json([("echo", "64 KiB", "tether", 100.0)], repeat=1)  # no peer at all
    rt = realtime_json([("tether", "echo", 100.0, False)])  # no Node row, no fan-out, no idle
    got = statuses(perf, run, rt)
    assert set(got.values()) == {perf.NOT_MEASURED}
    run_path, rt_path = tmp_path / "results-x.json", tmp_path / "realtime-x.json"
    run_path.write_text(json.dumps(run))
    rt_path.write_text(json.dumps(rt))
    text = perf.generated(run_path, rt_path)
    first = text[text.index("| workload") :].split("\n\n")[0]  # the main table
    table = [line for line in first.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 9  # issue 18's rows, 1 MiB twice (picows and raw TCP)
    assert all(line.endswith(f"| {perf.NOT_MEASURED} |") for line in table)
    assert f"no `tether-pure` rows: {perf.NOT_MEASURED}" in text
    # A failed run is no figure either; tether's failure is told.
    run["runs"].append({**run["runs"][0], "subject": "picows", "ok": False, "error": "boom"})
    assert statuses(perf, run, rt)["raw echo 64 KiB"] == perf.NOT_MEASURED
    rt["rows"] = [{"server": "tether", "workload": "echo", "ok": False, "error": "boom"}]
    rt["rows"].append({**rt["rows"][0], "server": "node", "ok": True, "per_server_cpu_s": 1.0})
    rt["rows"][-1]["rate"] = 1.0
    echo = statuses(perf, run, rt)["Socket.IO emit-echo, 16 chars, 1 connection, 32 in flight each"]
    assert echo == f"{perf.NOT_MEASURED} (tether's run failed)"


def test_pure_python_ratios_and_the_rebuilt_command(perf: ModuleType) -> None:
    run = run_json(
        [
            ("echo", "16 B", "tether-pure", 150.0),
            ("echo", "16 B", "websockets", 100.0),
            ("idle", "idle", "tether-pure", 4.0),  # websockets uses 1.5x the memory: met
            ("idle", "idle", "websockets", 6.0),
            ("connect", "sequential", "tether-pure", 149.0),
            ("connect", "sequential", "websockets", 100.0),
        ]
    )
    rows = {r.workload: r for r in perf.pure_rows(run["runs"])}
    assert rows["echo 16 B"].status == "met"
    assert rows["idle memory"].ratio == pytest.approx(1.5)
    assert rows["idle memory"].status == "met"
    assert rows["connect sequential"].status == "gap"
    command = perf.run_command(run["environment"], run["runs"])
    assert command == (
        ".venv/bin/python bench/run.py --only echo idle connect "
        "--peers tether-pure websockets --repeat 3"
    )


def test_the_cpu_split_and_the_budget_it_leaves(perf: ModuleType, tmp_path: Path) -> None:
    run = run_json(
        [
            ("reqresp", "128 B", "tether", 100_000.0),  # 10 µs a message
            ("reqresp", "128 B", "picows", 120_000.0),  # 8.33 µs: 1.2x it is 6.94 µs
            ("fanout", "64 B", "tether", 80_000.0),
            ("fanout", "64 B", "picows", 200_000.0),
        ]
    )
    for row, system in zip(run["runs"], (0.3, 0.4, 0.5, 0.6), strict=True):
        row.update(count=1000, server_system_cpu_s=system * 1000 / row["per_server_cpu_s"])
    rt = realtime_json(
        [
            ("tether", "echo", 50_000.0, False),  # 20 µs an event
            ("node", "echo", 100_000.0, False),  # 10 µs: 1.2x it is 8.33 µs
            ("floor", "echo", 110_000.0, False),
        ]
    )
    for row, share in zip(rt["rows"], (5.0, 40.0, 10.0), strict=True):
        row["server_sys_share_pct"] = share
    lines = perf.limits.table(run["runs"], {("reqresp", "128 B"): "picows"}, rt["rows"])
    split = [[x.strip() for x in line.split("|")] for line in lines[2:]]
    cells = {(c[2], c[3]): c for c in split}  # (server, µs per unit)
    # tether's kernel: 30 % of 10 µs = 3 µs; the budget 6.94 - 3 = 3.94 µs, against 7 used.
    assert cells[("tether", "10.00")][4:7] == ["3.00", "7.00", "3.94 (uses 7.00)"]
    assert cells[("picows", "8.33")][4:6] == ["3.33", "5.00"]
    # Fan-out has no best peer named here: no budget, and the rows are still split.
    fanout = cells[("tether", "12.50")]
    assert fanout[1:7] == ["raw fan-out (per delivery)", "tether", "12.50", "6.25", "6.25", ""]
    # The Socket.IO echo: 5 % of 20 µs in the kernel = 1 µs; 8.33 - 1 = 7.33 µs left.
    assert cells[("tether", "20.00")][4:7] == ["1.00", "19.00", "7.33 (uses 19.00)"]
    assert cells[("Python floor", "9.09")][6] == ""
    # Kernel time alone over the target: nothing left to spend.
    rt["rows"][0]["server_sys_share_pct"] = 50.0
    lines = perf.limits.table([], {}, rt["rows"])
    assert "none (its kernel time alone is 1.20x it)" in lines[2]
    assert perf.limits.ceilings(rt["rows"]) == [
        "- Socket.IO emit-echo: the Python floor is 1.10x socket.io on Node per server "
        "CPU-second; tether is 0.45x the floor."
    ]
    # The raw echo as the ceiling of the rows it ran in, against the best peer.
    run["runs"] += run_json([("reqresp", "128 B", "raw", 150_000.0)])["runs"]
    assert perf.limits.run_ceilings(run["runs"], {("reqresp", "128 B"): "picows"}) == [
        "- raw request/response, 128 B: the raw TCP echo, which does no WebSocket work at "
        "all, is 1.25x picows per server CPU-second; tether is 0.67x the raw echo."
    ]
    assert perf.limits.run_ceilings(run["runs"], {}) == []
    # An older run without kernel figures shows dashes, not a wrong budget.
    del run["runs"][0]["server_system_cpu_s"]
    lines = perf.limits.table(run["runs"], {("reqresp", "128 B"): "picows"}, [])
    assert "| tether | 10.00 | — | — | — |" in lines[2]


def test_a_load_client_is_the_limit_only_while_the_server_has_time_to_spare(
    perf: ModuleType,
) -> None:
    rt = realtime_json([("tether", "fanout", 130.0, True), ("node", "fanout", 100.0, False)])
    label = "Socket.IO room fan-out to 1,000, 4 rounds in flight"
    # Each run's figures decide, not the flag the JSON was written with.
    rt["rows"][0]["runs"] = [
        {"load_cpu_pct": 90.0, "server_cpu_pct": 100.0},  # the server's core was full
        {"load_cpu_pct": 70.0, "server_cpu_pct": 80.0},
    ]
    assert statuses(perf, run_json([]), rt)[label] == "met"
    rt["rows"][0]["runs"][1]["load_cpu_pct"] = 85.0  # now the load was busy, the server not
    assert statuses(perf, run_json([]), rt)[label] == "gap (the load client was the limit)"
    assert not perf.report.load_bound(99.0, 96.0)
    assert perf.report.load_bound(85.0, 50.0) and not perf.report.load_bound(84.0, 50.0)
