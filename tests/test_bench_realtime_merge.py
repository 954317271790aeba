"""bench/realtime_merge.py: several runs of one tree pooled, or refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench_helpers import run_merge


def repeat(per_cpu: float, load: float = 10.0, server: float = 100.0) -> dict[str, Any]:
    return {
        "server_sys_share_pct": 5.0,
        "rate": per_cpu,
        "per_server_cpu_s": per_cpu,
        "server_cpu_pct": server,
        "load_cpu_pct": load,
        "count": int(per_cpu * 5),
        "errors": 0,
        "open_s": 0.01,
    }


def result(commit: str, rows: list[dict[str, Any]], duration: float = 5.0) -> dict[str, Any]:
    settings = {"duration": duration, "warmup": 1.0, "repeat": 3, "echo_conns": 1}
    settings |= {"inflight": 32, "size": 16, "receivers": 1000, "rounds": 4, "idle_conns": 5000}
    environment = {
        "tether_commit": commit,
        "date": f"run of {commit}",
        "command": ".venv/bin/python bench/realtime.py --repeat 3",
        "versions": {"python": "3.11", "tether": "0.1.0", "uvloop": "0.23", "node": "v20"},
        "socketio_version": "4.8.4",
        "python_socketio_version": "5.18.1",
        "pinning": "pinned",
        "cpus": 2,
        "cpu": "test",
        "workloads": ["echo", "fanout"],
        "loadavg_before": [0.0, 0.0, 0.0],
        "loadavg_after": [0.0, 0.0, 0.0],
        "settings": settings,
    }
    return {"environment": environment, "rows": rows}


def row(server: str, workload: str, *runs: dict[str, Any]) -> dict[str, Any]:
    return {"server": server, "workload": workload, "ok": True, "runs": list(runs)}


def merge(tmp_path: Path, *results: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_merge("realtime", tmp_path, *results)


def test_repeats_are_pooled_and_their_medians_taken(tmp_path: Path) -> None:
    first = result(
        "abc",
        [
            row("tether", "echo", repeat(50), repeat(52), repeat(62)),
            row("node", "fanout", repeat(87), repeat(86), repeat(103)),
            row("floor", "fanout", repeat(100)),
        ],
    )
    second = result(
        "abc",
        [
            row("tether", "echo", repeat(58), repeat(41), repeat(43)),
            # The load client near its core's limit while the server had time to spare.
            row("node", "fanout", repeat(75), repeat(68), repeat(70, load=90, server=60)),
        ],
    )
    done = merge(tmp_path, first, second)
    assert done.returncode == 0, done.stderr
    [out] = (tmp_path / "out").glob("realtime-merged-*.json")
    merged = json.loads(out.read_text())
    rows = {(r["server"], r["workload"]): r for r in merged["rows"]}
    # The median of all six repeats, not the median of the two runs' medians (52, 43).
    assert rows["tether", "echo"]["per_server_cpu_s"] == 51
    assert len(rows["tether", "echo"]["runs"]) == 6
    assert rows["node", "fanout"]["per_server_cpu_s"] == 80.5
    assert rows["node", "fanout"]["load_bound"] is True
    assert rows["tether", "echo"]["load_bound"] is False
    # A row one of the runs lacks is not passed off as pooled.
    assert rows["floor", "fanout"]["ok"] is False
    environment = merged["environment"]
    assert environment["settings"]["repeat"] == 6
    assert [m["file"] for m in environment["merged_from"]] == [
        str(tmp_path / "realtime-0.json"),
        str(tmp_path / "realtime-1.json"),
    ]
    assert out.with_suffix(".md").read_text().startswith("# Realtime")


def test_runs_of_other_trees_or_settings_are_refused(tmp_path: Path) -> None:
    rows = [row("tether", "echo", repeat(50))]
    other_tree = merge(tmp_path, result("abc", rows), result("def", rows))
    assert other_tree.returncode != 0 and "measured def, not abc" in other_tree.stderr
    other_settings = merge(tmp_path, result("abc", rows), result("abc", rows, duration=1.0))
    assert other_settings.returncode != 0 and "other settings" in other_settings.stderr
    assert not (tmp_path / "out").exists()
