"""The suite's own guard rails: a hung test must fail alone, in bounded time."""

from __future__ import annotations

import pytest

from conftest import TEST_LIMIT
from helpers import timeout


def test_a_test_without_its_own_mark_gets_the_default_limit(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed"
    assert request.config.getini("timeout_method") == "signal"
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None
    assert marker.args == (timeout(TEST_LIMIT),)


@pytest.mark.timeout(timeout(7))
def test_a_test_with_its_own_mark_keeps_it(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None
    assert marker.args == (timeout(7),)
