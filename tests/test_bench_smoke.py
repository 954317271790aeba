"""Smoke test of the benchmark harness (bench/run.py): it runs, measures, writes results.

A benchmark is never a timed test: this only checks that one very short run of
the echo workload completes and reports a positive rate. Skipped without gcc,
which builds the load generator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds bench/loadgen.c")


def run_bench(tmp_path: Path, *peers: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    cmd = [
        sys.executable,
        str(RUN),
        "--quick",
        "--only",
        "echo",
        "--duration",
        "0.2",
        "--peers",
        *peers,
        "--results-dir",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=50, cwd=ROOT)
    files = sorted(tmp_path.glob("quick-*.json"))
    results = json.loads(files[-1].read_text()) if files else {}
    return done, results


def test_echo_against_tether(tmp_path: Path) -> None:
    done, results = run_bench(tmp_path, "tether", "tether-asyncio")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "quick.md").exists()
    for subject in ("tether", "tether-asyncio"):  # on uvloop, on asyncio's own loop
        rates = [r.get("rate", 0) for r in results["runs"] if r["subject"] == subject]
        assert len(rates) == 4, subject  # one per message size
        assert all(rate > 0 for rate in rates), subject
