"""The demos of tether installed from its wheel, in Chromium.

The wheel built by ``python -m build`` goes into a clean venv outside the
checkout (``tests/packaging_helpers.py``); ``python -m tether demo`` runs
from there, with no ``node_modules`` anywhere near, so the chat only works if
the wheel ships socket.io-client's browser bundle. The same scripts as the
checkout's tests drive the chat (server restart included), ticker and game.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from browser.test_demos import OUTPUT, DemoServer, demo_server, drive
from helpers import timeout
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


def test_installed_demo_serves_the_admin_ui(installed_demo: DemoServer) -> None:
    # The wheel ships the Admin UI and its icons: no node_modules near it.
    base = f"http://127.0.0.1:{installed_demo.port}/admin-ui/"
    with urllib.request.urlopen(base, timeout=timeout(5)) as response:
        index = response.read()
    assert b'href="mdi/css/materialdesignicons.min.css"' in index
    assert b"cdn.jsdelivr.net" not in index and b"fonts.googleapis.com" not in index
    icons = base + "mdi/css/materialdesignicons.min.css"
    with urllib.request.urlopen(icons, timeout=timeout(5)) as response:
        assert response.status == 200 and b"@font-face" in response.read()
    assert "missing" not in installed_demo.log.read_text()
