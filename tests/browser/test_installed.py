"""The demos of tether installed from its wheel, in Chromium.

The wheel built by ``python -m build`` goes into a clean venv outside the
checkout (``tests/packaging_helpers.py``); ``python -m tether demo`` runs
from there, with no ``node_modules`` anywhere near, so the chat only works if
the wheel ships socket.io-client's browser bundle. The same scripts as the
checkout's tests drive the chat (server restart included), ticker and game.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from browser.test_demos import OUTPUT, DemoServer, demo_server, drive
from packaging_helpers import installed_env, installed_python, outside

pytestmark = [pytest.mark.browser, pytest.mark.packaging]


@pytest.fixture
def installed_demo(request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    options = {"python": installed_python(), "cwd": outside()}
    with demo_server(request.node.name, **options) as server:
        server.env = installed_env()
        yield server


@pytest.mark.parametrize("script", ["chat", "ticker", "game"])
def test_installed_demo_in_chromium(installed_demo: DemoServer, script: str) -> None:
    drive(f"{script}.mjs", installed_demo)
    assert (OUTPUT / f"{script}.png").is_file()
    assert "missing" not in installed_demo.log.read_text()
