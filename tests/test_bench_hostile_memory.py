"""Smoke test of bench/hostile_memory.py: one short attack runs, measures the
server child's memory and writes its results (the figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import repo_root, timeout


def test_one_short_attack_is_measured_and_written(tmp_path: Path) -> None:
    script = repo_root() / "bench" / "hostile_memory.py"
    command = [sys.executable, str(script), "--attackers", "2", "--seconds", "0.5"]
    command += ["--only", "ws-acks-unread", "--results-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout(60))
    assert done.returncode == 0, done.stdout + done.stderr
    [results] = tmp_path.glob("hostile-memory-*.json")
    [row] = json.loads(results.read_text())["rows"]
    assert row["attack"] == "ws-acks-unread"
    assert row["attackers"] == 2
    assert row["rss_peak"] >= row["rss_idle"] > 0
    assert list(tmp_path.glob("hostile-memory-*.md"))
