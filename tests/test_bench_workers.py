"""Smoke test of bench/workers.py: a few seconds, figures not meaningful.

It checks that the harness runs each workload on the plain process and on
``tether run --workers 2`` (the cluster hub; Redis too when redis-server is
installed), writes its results, and reports positive rates; the polling
workload on two workers must have handed connections over. Never timed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import timeout

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "workers.py"


def test_workers_quick(tmp_path: Path) -> None:
    setups = ["plain", "2"] + (["redis-2"] if shutil.which("redis-server") else [])
    cmd = [sys.executable, str(SCRIPT), "--quick", "--results-dir", str(tmp_path)]
    cmd += ["--setups", *setups, "--seconds", "0.3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout(240), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "quick-workers.json").read_text())
    ran = {(run["workload"], run["setup"]) for run in results["runs"]}
    expected = {(w, s) for w in ("echo", "polling", "polling-keepalive") for s in ("plain", "2")}
    expected |= {("fanout", s) for s in setups}
    assert ran == expected
    for run in results["runs"]:
        assert run["rate"] > 0, run
        assert run["per_server_cpu_s"] > 0, run
        assert run["p50_ms"] > 0, run
    polling = {run["setup"]: run for run in results["runs"] if run["workload"] == "polling"}
    assert polling["plain"]["handed"] == 0
    assert polling["2"]["handed"] > 0
    assert polling["2"]["handed"] == polling["2"]["adopted"]
    table = (tmp_path / "quick-workers.md").read_text()
    assert "## fanout" in table and "server CPU per request" in table
