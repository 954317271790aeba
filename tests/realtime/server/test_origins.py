"""Origins and CORS (:mod:`tether.realtime.server.origins`): the policy on
its own, then on the wire through a bare Engine.IO server (the
``start_engine`` fixture), checking the headers it answers with.
"""

from __future__ import annotations

import json

import pytest

import tether
from realtime.conftest import StartEngine
from realtime.sio_helpers import eio_url, http_request, open_websocket
from tether.protocol.http import Headers, Request
from tether.realtime.server.origins import OriginPolicy, normalize_origin, same_origin

PATH = "/engine.io/"


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://Example.COM", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80/", "http://example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("https://example.com:80", "https://example.com:80"),
    ],
)
def test_normalize_origin(origin: str, normalized: str) -> None:
    assert normalize_origin(origin) == normalized


def test_same_origin_from_host_and_proxy_headers() -> None:
    host = Headers([("Host", "app.example")])
    assert same_origin("http://app.example", host, secure=False)
    assert not same_origin("https://app.example", host, secure=False)
    assert same_origin("https://app.example", host, secure=True)
    proxied = Headers([("Host", "10.0.0.1:8000"), ("X-Forwarded-Proto", "https, http")])
    assert not same_origin("https://app.example", proxied, secure=False)
    proxied.set("X-Forwarded-Host", "app.example")
    assert same_origin("https://app.example", proxied, secure=False)


def test_policy_refuses_credentials_without_a_list() -> None:
    for allowed in (None, "*", ["*"]):
        with pytest.raises(ValueError, match="cors_credentials"):
            OriginPolicy(allowed, credentials=True)
    assert OriginPolicy("https://a.example", credentials=True).allowed == ["https://a.example"]


def test_policy_admits_requests_without_origin_and_listed_ones() -> None:
    policy = OriginPolicy(["https://A.example:443"], credentials=False)
    assert policy.allows(Headers(), secure=False)
    assert policy.allows(Headers([("Origin", "https://a.example")]), secure=False)
    assert not policy.allows(Headers([("Origin", "https://b.example")]), secure=False)
    headers = Headers()
    policy.add_cors_headers(Request("/", Headers([("Origin", "https://b.example")])), headers)
    assert "Access-Control-Allow-Origin" not in headers


# -- on the wire ------------------------------------------------------------------------

ORIGIN = "https://app.example"


async def test_cors_headers_for_an_allowed_origin(start_engine: StartEngine) -> None:
    engine = await start_engine(cors_allowed_origins=[ORIGIN], cors_credentials=True)
    response = await http_request(
        engine.port, "GET", eio_url(path=PATH), headers=[("Origin", ORIGIN)]
    )
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"
    sid = json.loads(response.text[1:])["sid"]
    response = await http_request(
        engine.port, "POST", eio_url(sid, path=PATH), "4x", headers=[("Origin", ORIGIN)]
    )
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_cors_preflight(start_engine: StartEngine) -> None:
    engine = await start_engine(cors_allowed_origins=[ORIGIN], cors_credentials=False)
    response = await http_request(
        engine.port,
        "OPTIONS",
        eio_url(path=PATH),
        headers=[
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    )
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert "access-control-allow-credentials" not in response.headers
    assert not engine.engine.sessions


async def test_origin_refused(start_engine: StartEngine) -> None:
    engine = await start_engine(cors_allowed_origins=[ORIGIN])
    evil = [("Origin", "https://evil.example")]
    response = await http_request(engine.port, "GET", eio_url(path=PATH), headers=evil)
    assert response.status == 403
    assert response.json() == {"code": 4, "message": "Forbidden"}
    assert "access-control-allow-origin" not in response.headers
    preflight = await http_request(engine.port, "OPTIONS", eio_url(path=PATH), headers=evil)
    assert "access-control-allow-origin" not in preflight.headers
    with pytest.raises(tether.InvalidStatus) as caught:
        await open_websocket(engine.port, path=PATH, origin="https://evil.example")
    assert caught.value.response.status == 403
    # Requests without an Origin (not from a browser) are not CORS requests.
    response = await http_request(engine.port, "GET", eio_url(path=PATH))
    assert response.status == 200
    assert not engine.engine.sessions.keys() - {json.loads(response.text[1:])["sid"]}


async def test_any_origin(start_engine: StartEngine) -> None:
    engine = await start_engine(cors_allowed_origins="*")
    response = await http_request(
        engine.port, "GET", eio_url(path=PATH), headers=[("Origin", "https://x.example")]
    )
    assert response.status == 200
    # Any origin, never with credentials (Fetch: "*" cannot carry them).
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_same_origin_only_by_default(start_engine: StartEngine) -> None:
    engine = await start_engine()
    own = f"http://127.0.0.1:{engine.port}"
    response = await http_request(engine.port, "GET", eio_url(path=PATH), headers=[("Origin", own)])
    assert response.status == 200
    assert "access-control-allow-origin" not in response.headers
    response = await http_request(
        engine.port, "GET", eio_url(path=PATH), headers=[("Origin", ORIGIN)]
    )
    assert response.status == 403
    assert "access-control-allow-origin" not in response.headers
