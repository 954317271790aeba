"""Running a benchmark script of bench/ for a smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import timeout

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_quick(script: str, args: list[str], results_dir: Path) -> dict[str, Any]:
    """Run ``bench/<script>.py --quick`` with ``args``, writing into ``results_dir``;
    check it wrote its ``.json`` and ``.md``, and return the JSON."""
    command = [sys.executable, str(BENCH / f"{script}.py"), *args, "--quick"]
    done = subprocess.run(
        [*command, "--results-dir", str(results_dir)],
        capture_output=True,
        text=True,
        timeout=timeout(120),
    )
    assert done.returncode == 0, done.stderr
    (results,) = results_dir.glob(f"quick-{script}-*.json")
    assert list(results_dir.glob(f"quick-{script}-*.md"))
    return json.loads(results.read_text())  # type: ignore[no-any-return]
