"""Smoke test of bench/connection_python.py: it drives whole connections
(the script fails if the server leaves one open after the closing
handshake) and reports a time per connection, for both kinds of handler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "connection_python.py"


@pytest.mark.parametrize("flags", [[], ["--coroutine"]])
def test_runs_and_reports(flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", "50", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["handler"] == ("coroutine" if flags else "MessageHandler")
    assert result["count"] == 50
    assert result["us_per_connection"] > 0
