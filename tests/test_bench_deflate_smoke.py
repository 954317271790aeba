"""Smoke test of bench/deflate_memory.py: a tiny run completes and reports every mode.

Memory figures from 5 connections mean nothing; this only checks that the
benchmark runs, negotiates compression where it should, and writes its files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import timeout

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "deflate_memory.py"


def test_deflate_memory_benchmark_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--conns", "5", "--quick", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert done.returncode == 0, done.stderr
    (results,) = tmp_path.glob("quick-deflate_memory-*.json")
    runs = {run["mode"]: run for run in json.loads(results.read_text())["runs"]}
    assert set(runs) == {"off", "default", "small", "no-context"}
    assert runs["off"]["negotiated"] is False
    assert all(runs[mode]["negotiated"] for mode in ("default", "small", "no-context"))
    assert all(run["rss_after"] > 0 for run in runs.values())
    assert list(tmp_path.glob("quick-deflate_memory-*.md"))
