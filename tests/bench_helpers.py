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


def run_merge(
    script: str, tmp_path: Path, *results: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """``bench/<script>_merge.py`` on ``results``, each written to a JSON file in
    ``tmp_path`` (``<script>-N.json``); its output goes to ``tmp_path / "out"``."""
    paths = []
    for n, data in enumerate(results):
        path = tmp_path / f"{script}-{n}.json"
        path.write_text(json.dumps(data))
        paths.append(str(path))
    command = [sys.executable, str(BENCH / f"{script}_merge.py"), *paths]
    command += ["--results-dir", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout(30))
