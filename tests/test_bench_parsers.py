"""Smoke test of bench/parsers.py: a tiny run completes and reports every parser.

Figures from two clients and a third of a second mean nothing; this only
checks that both workloads run for each parser and write their files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_helpers import run_quick


def test_parsers_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("msgpack")
    pytest.importorskip("orjson")
    tiny = ["--clients", "2", "--seconds", "0.3", "--packets", "50"]
    runs = run_quick("parsers", tiny, tmp_path)["runs"]
    assert set(runs) == {"json", "orjson", "msgpack"}
    for run in runs.values():
        for event in ("text", "binary"):
            assert run["codec"][event] > 0
            assert run["echo"][event]["acks"] > 0
