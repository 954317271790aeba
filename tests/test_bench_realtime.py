"""Smoke tests of bench/realtime.py and bench/realtime_profile.py: tiny runs complete.

Figures from 0.3 s windows mean nothing; these check that every server runs
every workload through the C Socket.IO load client (bench/sioload.c), that each
row counted something, and that the result files have every row and section.
socket.io on Node is left out only when node or node_modules/socket.io is
missing. Benchmarks are never timed tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import node_bin, repo_root, timeout

BENCH = repo_root() / "bench"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds bench/sioload.c")


def servers() -> list[str]:
    node = node_bin() is not None and (repo_root() / "node_modules" / "socket.io").is_dir()
    return ["tether", "python-socketio", "floor", *(["node"] if node else [])]


def run(script: str, *args: str) -> None:
    command = [sys.executable, str(BENCH / script), *args, "--quick"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout(60))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_server_runs_every_workload(tmp_path: Path) -> None:
    names = servers()
    run(
        "realtime.py",
        "--servers",
        *names,
        "--receivers",
        "20",
        "--idle-conns",
        "50",
        "--results-dir",
        str(tmp_path),
    )
    (result,) = tmp_path.glob("quick-realtime-*.json")
    (table,) = tmp_path.glob("quick-realtime-*.md")
    rows = {(r["server"], r["workload"]): r for r in json.loads(result.read_text())["rows"]}
    # The floor is a ceiling for the rates: it keeps no sessions, so no idle run.
    expected = {(n, w) for n in names for w in ("echo", "fanout", "idle")} - {("floor", "idle")}
    assert set(rows) == expected
    for (_, workload), row in rows.items():
        assert row["ok"], row
        if workload == "idle":
            assert row["rss_after_mib"] > 0, row
        else:
            assert row["count"] > 0 and row["errors"] == 0, row
            assert row["load_cpu_pct"] > 0 and "load_bound" in row, row
    text = table.read_text()
    for title in ("## Emit-echo", "## Room fan-out", "## Idle Socket.IO connections"):
        assert title in text
    assert text.count("| tether (uvloop) |") == 3
    assert "Command: `.venv/bin/python bench/realtime.py --servers" in text


def test_profile_names_the_stages(tmp_path: Path) -> None:
    run("realtime_profile.py", "--duration", "0.3", "--results-dir", str(tmp_path))
    (report,) = tmp_path.glob("quick-realtime-profile-*.md")
    text = report.read_text()
    assert "## Emit-echo" in text and "## Room fan-out" in text
    for stage in ("Engine.IO decode/encode", "Socket.IO decode/encode", "handler dispatch"):
        assert stage in text
