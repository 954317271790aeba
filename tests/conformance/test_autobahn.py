"""The whole Autobahn suite, as server and as client, must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.autobahn_suite import run_client_suite, run_server_suite
from helpers import skip_conformance

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(skip_conformance(), reason="TETHER_SKIP_CONFORMANCE=1"),
]

ALL_CASES = 517


def test_autobahn_as_server(tmp_path: Path) -> None:
    summary = run_server_suite(tmp_path)
    assert summary.failures == {}
    assert summary.total == ALL_CASES


def test_autobahn_as_client(tmp_path: Path) -> None:
    summary = run_client_suite(tmp_path)
    assert summary.failures == {}
    assert summary.total == ALL_CASES
