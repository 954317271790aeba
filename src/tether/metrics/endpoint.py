"""Serving the metrics over HTTP: :class:`MetricsEndpoint` and :func:`asgi_app`.

Off unless asked for: ``tether.serve(..., metrics=MetricsEndpoint())``,
``realtime.serve(..., metrics=MetricsEndpoint())``, or :func:`asgi_app`
around an ASGI application. What a server counts says how many clients it
has, from where they are refused and how loaded it is: worth a token (or an
``allow=`` check) whenever the port is reachable from outside.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..protocol.http import Headers, Request, Response
from .core import MetricSet

__all__ = ["MetricsEndpoint", "asgi_app"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class MetricsEndpoint:
    """Where the metrics are served (``path``) and to whom.

    ``token``: a request must carry ``Authorization: Bearer <token>`` (as
    Prometheus' ``authorization`` scrape option sends it), compared in
    constant time; others get ``401``. ``allow(address)``: the client's
    address (the trusted proxy's client, if any) must pass it, or ``403``.
    Both, if both are given. ``sets``: more metric sets to serve with the
    server's own (:meth:`include`).

    Needs ``prometheus_client`` (``pip install 'tether[metrics]'``): checked
    here, so that a missing extra fails at start-up rather than at a scrape.
    """

    def __init__(
        self,
        path: str = "/metrics",
        *,
        token: str | None = None,
        allow: Callable[[str | None], bool] | None = None,
        sets: Iterable[MetricSet] = (),
    ) -> None:
        from . import prometheus  # noqa: F401  (fails early without the extra)

        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        self.path = path
        self.token = token
        self.allow = allow
        self.sets: list[MetricSet] = list(sets)

    def include(self, metric_set: MetricSet) -> None:
        """Serve ``metric_set`` too (once, however often it is included)."""
        if all(known is not metric_set for known in self.sets):
            self.sets.append(metric_set)

    def matches(self, target: str) -> bool:
        """Whether a request target (path and query) is this endpoint's."""
        return target.partition("?")[0] == self.path

    def answer(
        self, method: str, authorization: str | None, address: str | None, sets: Iterable[MetricSet]
    ) -> Response:
        """The answer to a request for :attr:`path`: the metrics of ``sets``
        and :attr:`sets`, or the refusal."""
        if method != "GET":
            return _plain(405, "Method Not Allowed", Headers([("Allow", "GET")]))
        if self.token is not None and not _bearer_matches(authorization, self.token):
            return _plain(401, "Unauthorized", Headers([("WWW-Authenticate", "Bearer")]))
        if self.allow is not None and not self.allow(address):
            return _plain(403, "Forbidden")
        from .prometheus import CONTENT_TYPE

        body = self.render([*sets, *self.sets])
        headers = Headers([("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")])
        return Response(200, "OK", headers, body)

    def render(self, sets: list[MetricSet]) -> bytes:
        """The body of a scrape: the metrics of ``sets`` in the Prometheus text
        format (a subclass may add to them: the workers of ``tether run``)."""
        from .prometheus import render

        return render(sets)

    def answer_request(self, request: Request, peer: Any, sets: Iterable[MetricSet]) -> Response:
        """:meth:`answer` for a tether :class:`~tether.protocol.Request` from ``peer``
        (a connection's ``remote_address``)."""
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        return self.answer(request.method, request.headers.get("Authorization"), host, sets)


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    # RFC 6750 §2.1: the scheme is case-insensitive.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def _plain(status: int, reason: str, headers: Headers | None = None) -> Response:
    headers = headers or Headers()
    headers.set("Content-Type", "text/plain; charset=utf-8")
    return Response(status, reason, headers, f"{status} {reason}\n".encode())


def asgi_app(
    endpoint: MetricsEndpoint, sets: Iterable[MetricSet] = (), app: ASGIApp | None = None
) -> ASGIApp:
    """An ASGI application that serves ``endpoint`` (with ``sets``) and hands
    every other request to ``app`` (404 without one)::

        metrics = RealtimeMetrics.install(server)
        app = asgi_app(MetricsEndpoint(token=...), [metrics], server.asgi_app())
    """
    served = list(sets)

    async def serve(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not endpoint.matches(scope.get("path", "")):
            if app is None:
                if scope["type"] == "http":
                    await _send(send, _plain(404, "Not Found"))
                return
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        address = str(client[0]) if client else None
        await _send(
            send, endpoint.answer(scope["method"], headers.get("authorization"), address, served)
        )

    return serve


async def _send(send: Any, response: Response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
