"""The whole Autobahn suite, as server and as client, must pass.

Each side takes minutes, so the run reports its progress (a line per case
group as server, every 50 cases as client) in pytest's output, captured or not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.autobahn_suite import (
    Progress,
    run_client_suite,
    run_server_suite,
    server_loops,
)
from helpers import skip_conformance, timeout

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(skip_conformance(), reason="TETHER_SKIP_CONFORMANCE=1"),
    # Each side takes about 400 s here; conftest's default limit is for the rest.
    pytest.mark.timeout(timeout(1800)),
]

ALL_CASES = 517


@pytest.fixture
def progress(pytestconfig: pytest.Config) -> Progress:
    """Write a line to the terminal now, past pytest's output capture (the way
    its live logging does), so that a ten-minute test is not silent."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    terminal = pytestconfig.pluginmanager.getplugin("terminalreporter")

    def show(line: str) -> None:
        if terminal is None:
            return
        if capture is None:
            terminal.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    return show


@pytest.mark.parametrize("loop", server_loops())
def test_autobahn_as_server(tmp_path: Path, progress: Progress, loop: str) -> None:
    summary = run_server_suite(tmp_path, progress=progress, loop=loop)
    assert summary.failures == {}
    assert summary.total == ALL_CASES


def test_autobahn_as_client(tmp_path: Path, progress: Progress) -> None:
    summary = run_client_suite(tmp_path, progress=progress)
    assert summary.failures == {}
    assert summary.total == ALL_CASES
