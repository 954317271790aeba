"""The official Socket.IO Admin UI in Chromium, against tether's demo.

``python -m tether demo`` serves the UI at ``/admin-ui/`` (from
``node_modules/@socket.io/admin-ui/ui/dist``) and instruments its realtime
server; ``admin.mjs`` logs in through the UI's form, checks three
socket.io-client clients' sockets, rooms and a live event, and disconnects
one from the UI. With two demo nodes on a real redis-server, the UI on one
node lists, and acts on, the sockets of the other.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from browser.test_demos import OUTPUT, demo_server, drive, free_port
from helpers import timeout
from realtime.redis_helpers import redis_server

pytestmark = pytest.mark.browser

PASSWORD = "browser test password"
ENV = {"TETHER_DEMO_ADMIN_PASSWORD": PASSWORD}


def on_redis(url: str) -> dict[str, Any]:
    """demo_server's options for a demo node on the Redis at ``url``."""
    port = free_port()
    command = [sys.executable, "-m", "tether", "demo", "--port", str(port), "--redis", url]
    return {"port": port, "command": command, "env": ENV}


def test_admin_ui_logs_in_lists_sockets_and_disconnects_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    with demo_server("admin-ui", env=ENV) as server:
        drive("admin.mjs", server)
    assert (OUTPUT / "admin-ui.png").is_file()


def test_admin_ui_shows_and_acts_on_two_nodes_on_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    with (
        redis_server() as redis,
        demo_server("admin-ui-a", **on_redis(redis.url)) as a,
        demo_server("admin-ui-b", **on_redis(redis.url)) as b,
    ):
        monkeypatch.setenv("OTHER_URL", b.url)
        drive("admin.mjs", a)
    assert (OUTPUT / "admin-ui-two-nodes.png").is_file()


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout(5)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_ui_is_served_without_cdn_and_says_when_it_is_missing(tmp_path: Path) -> None:
    with demo_server("admin-ui-files", env=ENV) as server:
        status, index = fetch(f"{server.url}/admin-ui/")
        assert status == 200 and "Socket.IO Admin UI" in index
        assert "https://" not in index  # its icon font comes from node_modules/@mdi/font
        status, css = fetch(f"{server.url}/admin-ui/mdi/css/materialdesignicons.min.css")
        assert status == 200 and ".mdi-logout" in css
        assert 'href="/admin-ui/"' in fetch(f"{server.url}/")[1]  # the index links to it
    nowhere = {**ENV, "TETHER_ADMIN_UI_DIST": str(tmp_path)}
    with demo_server("admin-ui-missing", env=nowhere) as server:
        status, page = fetch(f"{server.url}/admin-ui/")
        assert status == 404 and "npm ci" in page
    assert "the Admin UI's files (/admin-ui/) are missing" in server.log.read_text()
