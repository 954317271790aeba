"""bench/run_merge.py: several bench/run.py runs of one tree pooled, or refused;
and bench/run.py's repeats taken in rounds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench_helpers import run_merge
from helpers import repo_root

BENCH = repo_root() / "bench"


def repeat(rate: float, **more: float) -> dict[str, Any]:
    return {"rate": rate, "per_server_cpu_s": rate * 2, "count": int(rate * 5), **more}


def row(workload: str, variant: str, subject: str, *runs: dict[str, Any]) -> dict[str, Any]:
    head = {"workload": workload, "variant": variant, "subject": subject, "loop": "uvloop"}
    ordered = sorted(runs, key=lambda r: r.get("kib_per_conn", r["rate"]))
    out = {**head, **ordered[len(ordered) // 2], "ok": True}
    if len(runs) > 1:
        out |= {"spread": {"min": 0, "max": 0, "stdev": 0}, "repeats": ordered}
    return out


def result(commit: str, rows: list[dict[str, Any]], duration: float = 5.0) -> dict[str, Any]:
    environment = {
        "cpu": "test",
        "cpus": 2,
        "kernel": "6",
        "pinning": "pinned",
        "tether_commit": commit,
        "versions": dict.fromkeys(
            ("python", "uvloop", "websockets", "aiohttp", "picows", "node", "ws"), "1"
        ),
        "command": ".venv/bin/python bench/run.py --repeat 3",
        "duration": duration,
        "warmup": 1.0,
        "repeat": 3,
        "quick": False,
        "connections": {"reqresp": 100, "fanout": 1000, "idle": 10000},
        "client_server": "tether",
        "date": f"run of {commit}",
    }
    return {"environment": environment, "runs": rows}


def merge(tmp_path: Path, *results: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_merge("run", tmp_path, *results)


def test_repeats_are_pooled_and_the_median_run_kept(tmp_path: Path) -> None:
    first = result(
        "abc",
        [
            row("echo", "64 KiB", "tether", repeat(50), repeat(52), repeat(62)),
            row("echo", "64 KiB", "picows", repeat(60)),  # a --repeat 1 row
            row("idle", "idle", "tether", repeat(0, kib_per_conn=4.0), repeat(0, kib_per_conn=5.0)),
            row("fanout", "64 B", "tether", repeat(10)),
        ],
    )
    second = result(
        "abc",
        [
            row("echo", "64 KiB", "tether", repeat(58), repeat(41), repeat(43)),
            row("echo", "64 KiB", "picows", repeat(40), repeat(70)),
            row("idle", "idle", "tether", repeat(0, kib_per_conn=9.0)),
        ],
    )
    done = merge(tmp_path, first, second)
    assert done.returncode == 0, done.stderr
    [out] = (tmp_path / "out").glob("results-merged-*.json")
    merged = json.loads(out.read_text())
    rows = {(r["workload"], r["variant"], r["subject"]): r for r in merged["runs"]}
    tether = rows["echo", "64 KiB", "tether"]
    # The median run of all six repeats (41 43 50 52 58 62: the upper middle one,
    # as bench/run.py picks it), with its other figures: not the runs' medians.
    assert tether["rate"] == 52 and tether["per_server_cpu_s"] == 104
    assert len(tether["repeats"]) == 6
    assert tether["spread"]["min"] == 41 and tether["spread"]["max"] == 62
    assert rows["echo", "64 KiB", "picows"]["rate"] == 60  # 40 60 70
    assert rows["idle", "idle", "tether"]["kib_per_conn"] == 5.0  # by memory, not rate
    # A row one of the runs lacks is not passed off as pooled.
    assert rows["fanout", "64 B", "tether"]["ok"] is False
    environment = merged["environment"]
    assert environment["repeat"] == 6
    assert [m["file"] for m in environment["merged_from"]] == [
        str(tmp_path / "run-0.json"),
        str(tmp_path / "run-1.json"),
    ]
    assert (tmp_path / "out" / "latest-merged.md").read_text().startswith("# tether benchmarks")


def test_runs_of_other_trees_or_settings_are_refused(tmp_path: Path) -> None:
    rows = [row("echo", "16 B", "tether", repeat(50))]
    other_tree = merge(tmp_path, result("abc", rows), result("def", rows))
    assert other_tree.returncode != 0 and "measured def, not abc" in other_tree.stderr
    other_settings = merge(tmp_path, result("abc", rows), result("abc", rows, duration=1.0))
    assert other_settings.returncode != 0 and "differs" in other_settings.stderr
    assert "duration" in other_settings.stderr
    assert not (tmp_path / "out").exists()


def test_run_takes_repeats_in_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every subject of a table runs once per round, so a drifting machine
    weighs on both sides of a ratio; a failing subject stops, the others go on."""
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    order: list[str] = []

    def case(subject: str, fail_at: int | None = None) -> Any:
        def measure(s: Any, log: Path) -> dict[str, Any]:
            order.append(subject)
            if fail_at is not None and order.count(subject) == fail_at:
                raise run.BenchError("boom")
            return {"rate": float(len(order))}

        return run.Case("echo", "16 B", subject, "uvloop", measure)

    settings = run.Settings(0.1, 0.1, 1, 1, 1, repeat=3, quick=True)
    rows = run.run_group([case("tether"), case("picows", fail_at=2), case("ws")], settings)
    assert order == ["tether", "picows", "ws", "tether", "picows", "ws", "tether", "ws"]
    tether, picows, ws = rows
    assert [r["rate"] for r in tether["repeats"]] == [1.0, 4.0, 7.0]
    assert tether["rate"] == 4.0 and tether["ok"] is True
    assert picows == {**picows, "ok": False, "error": "boom"}
    assert ws["rate"] == 6.0
