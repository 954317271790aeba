"""The demo's Admin UI pages (tether.demo.admin): /admin-ui/ served from the
npm package's ui/dist without CDN links, its icons from @mdi/font, a redirect
for /admin-ui, a 404 page saying what to do when the files are missing, and
the password from TETHER_DEMO_ADMIN_PASSWORD (or random)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.demo.admin import AdminPages, find_admin_ui, new_admin_password
from tether.protocol.http import Headers, Request


def get(pages: AdminPages, path: str) -> tuple[int, bytes, Headers]:
    response = pages.serve(Request(path))
    assert response is not None, path
    return response.status, response.body, response.headers


def test_the_ui_is_served_without_cdn_links() -> None:
    dist, font = find_admin_ui()
    if dist is None or font is None:
        pytest.skip("node_modules/@socket.io/admin-ui or @mdi/font missing (npm ci)")
    pages = AdminPages(dist, font)
    assert pages.handles("/admin-ui") and pages.handles("/admin-ui/js/x.js")
    assert not pages.handles("/admin-uix") and not pages.handles("/chat/")
    status, _, headers = get(pages, "/admin-ui")
    assert status == 308 and headers["location"] == "/admin-ui/"
    status, index, _ = get(pages, "/admin-ui/")
    assert status == 200 and b"<title>Socket.IO Admin UI</title>" in index
    assert b"https://" not in index and b'href="mdi/css/materialdesignicons.min.css"' in index
    status, css, _ = get(pages, "/admin-ui/mdi/css/materialdesignicons.min.css")
    assert status == 200 and b".mdi-logout" in css
    scripts = [p.name for p in (dist / "js").glob("app.*.js")]
    assert scripts and get(pages, f"/admin-ui/js/{scripts[0]}")[0] == 200
    assert pages.serve(Request("/admin-ui/../../package.json")) is None


def test_missing_files_get_a_page_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ADMIN_UI_DIST", str(tmp_path))
    dist, font = find_admin_ui()
    assert dist is None
    status, page, _ = get(AdminPages(dist, font), "/admin-ui/")
    assert status == 404 and b"npm ci" in page and b"TETHER_ADMIN_UI_DIST" in page


def test_the_password_is_given_or_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_DEMO_ADMIN_PASSWORD", "from the environment")
    assert new_admin_password() == "from the environment"
    monkeypatch.delenv("TETHER_DEMO_ADMIN_PASSWORD")
    first, second = new_admin_password(), new_admin_password()
    assert first != second and len(first) >= 16
