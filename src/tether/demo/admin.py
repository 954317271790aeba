"""The official Socket.IO Admin UI in the demo, at ``/admin-ui/``.

The UI's built files come from npm (``@socket.io/admin-ui``'s ``ui/dist``,
MIT) and its icon font from ``@mdi/font`` (Apache-2.0): the copies a wheel
ships (``tether/demo/vendor``, made by setup.py), else ``node_modules`` of the
checkout or the current directory; ``TETHER_ADMIN_UI_DIST`` names another
``ui/dist``. The UI's
``index.html`` loads its icons and the Roboto font from CDNs: it is served
with the icons taken from ``@mdi/font`` instead and without Roboto (the
browser's sans-serif), so nothing is fetched from elsewhere.

The demo's realtime server is instrumented with the username ``admin`` and
the password in ``TETHER_DEMO_ADMIN_PASSWORD``, or one drawn at random at
each start and printed with the demo's address.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from ..protocol.http import Headers, Request, Response
from ..realtime.server.static import StaticFiles

__all__ = ["ADMIN_UI", "USERNAME", "AdminPages", "find_admin_ui", "new_admin_password"]

#: Where the demo serves the UI.
ADMIN_UI = "/admin-ui"
#: The Admin UI's username in the demo.
USERNAME = "admin"

_CDN_ICONS = re.compile(
    rb'<link rel="?stylesheet"? href="?https://cdn\.jsdelivr\.net/npm/@mdi/font[^>]*>'
)
_CDN_FONTS = re.compile(rb'<link rel="?stylesheet"? href="?https://fonts\.googleapis\.com/[^>]*>')
_LOCAL_ICONS = b'<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">'

MISSING = b"""<!doctype html>
<meta charset="utf-8"><title>Admin UI missing</title>
<p>The Socket.IO Admin UI's files are missing: this tether was installed without
them. In a checkout run <code>npm ci</code> (it installs <code>@socket.io/admin-ui</code>),
or set <code>TETHER_ADMIN_UI_DIST</code> to its <code>ui/dist</code> directory.</p>
"""


#: The copies a built tether ships (package data; absent in a fresh checkout).
VENDOR = Path(__file__).resolve().parent / "vendor"


def _roots() -> list[Path]:
    return [Path.cwd(), Path(__file__).resolve().parents[3]]


def find_admin_ui() -> tuple[Path | None, Path | None]:
    """The UI's ``ui/dist`` and ``@mdi/font`` directories (each None when absent)."""
    override = os.environ.get("TETHER_ADMIN_UI_DIST")
    dists = (
        [Path(override)]
        if override
        else [VENDOR / "admin-ui/dist"]
        + [r / "node_modules/@socket.io/admin-ui/ui/dist" for r in _roots()]
    )
    dist = next((d for d in dists if (d / "index.html").is_file()), None)
    fonts = [VENDOR / "mdi-font"] + [r / "node_modules/@mdi/font" for r in _roots()]
    font = next((f for f in fonts if (f / "css/materialdesignicons.min.css").is_file()), None)
    return dist, font


def new_admin_password() -> str:
    """``TETHER_DEMO_ADMIN_PASSWORD``, or a new random password."""
    return os.environ.get("TETHER_DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)


class AdminPages:
    """Serves ``/admin-ui/...``: the UI's files, its index made CDN-free."""

    def __init__(self, dist: Path | None, font: Path | None) -> None:
        self.dist = dist
        mapping = {}
        if dist is not None:
            mapping[ADMIN_UI] = str(dist)
        if font is not None:
            mapping[ADMIN_UI + "/mdi"] = str(font)
        self.static = StaticFiles(mapping)
        self._index: bytes | None = None
        if dist is not None:
            index = (dist / "index.html").read_bytes()
            index = _CDN_FONTS.sub(b"", index)
            self._index = _CDN_ICONS.sub(_LOCAL_ICONS if font is not None else b"", index)

    def handles(self, path: str) -> bool:
        route = urlsplit(path).path
        return route == ADMIN_UI or route.startswith(ADMIN_UI + "/")

    def serve(self, request: Request) -> Response | None:
        route = urlsplit(request.path).path
        if route == ADMIN_UI:
            headers = Headers([("Location", ADMIN_UI + "/"), ("Content-Length", "0")])
            return Response(308, "Permanent Redirect", headers, b"")
        if route in (ADMIN_UI + "/", ADMIN_UI + "/index.html"):
            if self._index is None:
                return _html(404, "Not Found", MISSING)
            return _html(200, "OK", self._index)
        return self.static.serve(request)


def _html(status: int, reason: str, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Content-Length", str(len(body))),
        ]
    )
    return Response(status, reason, headers, body)
