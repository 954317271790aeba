"""Smoke run of the load and soak script (bench/load.py): a few seconds, 200
connections. The real run (10,000 connections, minutes) is not a test; its
figures are in docs/security.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import repo_root, timeout


def test_load_script_runs_and_memory_is_reported(tmp_path: Path) -> None:
    command = [
        sys.executable, str(repo_root() / "bench" / "load.py"),
        "--connections", "200", "--duration", "3", "--sample-every", "1", "--rate", "400",
        "--broadcast-every", "0.5", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout(90))
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = tmp_path.glob("load-200-*.json")
    result = json.loads(path.read_text())
    assert result["connections"] == 200 and result["lost"] == 0
    assert result["echoed"] == result["sent"] > 0
    assert result["broadcasts"] >= 200  # every connection got broadcasts
    assert 0 < result["server_bytes_per_connection"] < 200_000
    assert len(result["samples"]) >= 3 and "growth_percent" in result
