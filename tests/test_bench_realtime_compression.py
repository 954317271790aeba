"""Smoke test of bench/realtime_compression.py: a tiny run completes and reports every mode.

Figures from a few connections and half a second mean nothing; this only
checks that every workload runs in every mode, negotiates permessage-deflate
where it should, counts something and writes its files.
"""

from __future__ import annotations

from pathlib import Path

from bench_helpers import run_quick

MODES = {"off", "deflate", "threshold", "threshold-small"}


def test_realtime_compression_benchmark_runs(tmp_path: Path) -> None:
    tiny = ["--conns", "4", "--clients", "2", "--receivers", "3", "--seconds", "0.5"]
    runs = run_quick("realtime_compression", tiny, tmp_path)["runs"]
    for workload in ("memory", "echo", "fanout"):
        rows = {run["mode"]: run for run in runs if run["workload"] == workload}
        assert set(rows) == MODES, workload
        assert rows["off"]["negotiated"] is False
        assert all(rows[mode]["negotiated"] is True for mode in MODES - {"off"})
        for row in rows.values():
            if workload == "memory":
                assert row["rss_after"] > 0 and row["conns"] == 4
            else:
                assert all(size["count"] > 0 for size in row["sizes"].values()), row
