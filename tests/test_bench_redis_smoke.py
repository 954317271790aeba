"""Smoke test of bench/redis_fanout.py: a few seconds, 50 clients, figures not meaningful.

It checks that the harness runs both setups (one process in memory, three
through Redis) and that every client got every event. Skipped without
redis-server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "redis_fanout.py"

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_fanout_quick(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--results-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "redis_fanout-quick.json").read_text())
    assert {run["setup"] for run in results["runs"]} == {"single", "redis"}
    for run in results["runs"]:
        assert run["received"] == run["expected"], run
        assert run["deliveries_per_s"] > 0
    assert (tmp_path / "redis_fanout-quick.md").exists()
