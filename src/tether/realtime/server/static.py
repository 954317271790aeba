"""Static files served next to the realtime endpoint (for demos and small apps)."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ...protocol.http import Headers, Request, Response

__all__ = ["StaticFiles", "not_found"]


def not_found() -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    return Response(404, "Not Found", headers, b"not found\n")


class StaticFiles:
    """Serve files from directories by URL prefix: ``{"/": "public", "/js": "node_modules"}``.

    The longest matching prefix wins; ``/`` maps a directory's ``index.html``.
    Paths are resolved and must stay inside their directory (no ``..``
    escapes, symlinks included); only ``GET`` and ``HEAD`` are answered.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        routes = []
        for prefix, directory in mapping.items():
            routes.append(("/" + prefix.strip("/"), Path(directory).resolve()))
        # Longest prefix first.
        self.routes = sorted(routes, key=lambda route: len(route[0]), reverse=True)

    def find(self, path: str) -> Path | None:
        """The file a URL path names, or None."""
        route = unquote(urlsplit(path).path)
        if "\x00" in route:
            return None
        for prefix, directory in self.routes:
            if prefix == "/":
                rest = route
            elif route == prefix or route.startswith(prefix + "/"):
                rest = route[len(prefix) :]
            else:
                continue
            candidate = (directory / rest.lstrip("/")).resolve()
            if candidate != directory and directory not in candidate.parents:
                return None  # escapes the directory
            if candidate.is_dir():
                candidate = candidate / "index.html"
            if candidate.is_file():
                return candidate
        return None

    def serve(self, request: Request) -> Response | None:
        """The response for ``request``, or None when no file matches."""
        if request.method not in ("GET", "HEAD"):
            return None
        found = self.find(request.path)
        if found is None:
            return None
        kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        body = found.read_bytes()
        headers = Headers(
            [
                ("Content-Type", kind),
                ("Cache-Control", "no-cache"),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        if request.method == "HEAD":
            body = b""
        return Response(200, "OK", headers, body)


# .mjs is JavaScript too (browsers refuse modules served as anything else).
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
