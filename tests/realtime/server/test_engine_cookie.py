"""The ``cookie`` option: a new session's sid in ``Set-Cookie``, for load
balancers to route on (as socket.io's server ``cookie`` option), on the
polling open and on the ``101`` of a WebSocket opened directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from realtime.conftest import StartSio
from realtime.sio_helpers import eio_url, http_request, open_polling, open_websocket
from tether import realtime
from tether.realtime.server.engine import CookieOptions, EngineOptions, cookie_options


async def polling_open(port: int) -> tuple[str, str | None]:
    """Open a polling session: its sid and the Set-Cookie answered, if any."""
    response = await http_request(port, "GET", eio_url())
    assert response.status == 200, response
    sid = json.loads(response.text[1:])["sid"]
    return sid, response.headers.get("set-cookie")


async def websocket_open(port: int) -> tuple[str, list[str]]:
    """Open a session on a WebSocket: its sid and the 101's Set-Cookie values."""
    ws = await open_websocket(port)
    try:
        opening = await ws.recv_text()
        assert opening.startswith("0{"), opening
        response = ws.connection.response
        assert response is not None and response.status == 101
        return json.loads(opening[1:])["sid"], response.headers.get_all("Set-Cookie")
    finally:
        await ws.close()


async def test_no_cookie_by_default(start_sio: StartSio) -> None:
    server = await start_sio()
    assert (await polling_open(server.port))[1] is None
    assert (await websocket_open(server.port))[1] == []


async def test_polling_open_sets_the_sid_cookie(start_sio: StartSio) -> None:
    server = await start_sio(cookie="io")
    sid, cookie = await polling_open(server.port)
    assert cookie == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"
    assert sid in server.server.engine.sessions


async def test_websocket_open_sets_the_sid_cookie_in_its_101(start_sio: StartSio) -> None:
    server = await start_sio(cookie=True)
    sid, cookies = await websocket_open(server.port)
    # The sid the client is then told in the open packet is the cookie's.
    assert cookies == [f"io={sid}; Path=/; HttpOnly; SameSite=Lax"]


async def test_each_websocket_gets_its_own_sid(start_sio: StartSio) -> None:
    server = await start_sio(cookie="io")
    first, second = await asyncio.gather(websocket_open(server.port), websocket_open(server.port))
    assert first[0] != second[0]
    assert [first[1], second[1]] == [
        [f"io={first[0]}; Path=/; HttpOnly; SameSite=Lax"],
        [f"io={second[0]}; Path=/; HttpOnly; SameSite=Lax"],
    ]


async def test_requests_of_an_open_session_set_no_cookie(start_sio: StartSio) -> None:
    server = await start_sio(cookie="io")
    sid, _ = await open_polling(server.port)
    response = await http_request(server.port, "POST", eio_url(sid), "40")
    assert response.status == 200 and "set-cookie" not in response.headers
    response = await http_request(server.port, "GET", eio_url(sid))
    assert response.status == 200 and "set-cookie" not in response.headers
    # Nor does the upgrade's 101 (engine.io sets it on the initial request only).
    ws = await open_websocket(server.port, sid)
    try:
        assert ws.connection.response is not None
        assert ws.connection.response.headers.get_all("Set-Cookie") == []
    finally:
        await ws.close()


async def test_attributes(start_sio: StartSio) -> None:
    options = CookieOptions(
        name="srv",
        path="/app",
        domain="example.com",
        max_age=3600,
        http_only=False,
        secure=True,
        same_site="None",
    )
    server = await start_sio(cookie=options)
    sid, cookie = await polling_open(server.port)
    assert (
        cookie == f"srv={sid}; Max-Age=3600; Domain=example.com; Path=/app; Secure; SameSite=None"
    )
    sid, cookies = await websocket_open(server.port)
    assert cookies == [
        f"srv={sid}; Max-Age=3600; Domain=example.com; Path=/app; Secure; SameSite=None"
    ]


async def test_engine_options_carry_it_too(start_sio: StartSio) -> None:
    server = await start_sio(engine_options=EngineOptions(cookie="lb"))
    sid, cookie = await polling_open(server.port)
    assert cookie == f"lb={sid}; Path=/; HttpOnly; SameSite=Lax"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        (False, None),
        (True, CookieOptions()),
        ("io2", CookieOptions(name="io2")),
        (CookieOptions(path=None, same_site=None), CookieOptions(path=None, same_site=None)),
    ],
)
def test_option_shapes(given: Any, expected: CookieOptions | None) -> None:
    assert cookie_options(given) == expected


def test_attributes_left_out() -> None:
    assert CookieOptions(path=None, http_only=False, same_site=None).header("x") == "io=x"


@pytest.mark.parametrize(
    "options",
    [
        {"name": ""},
        {"name": "a b"},
        {"name": "a=b"},
        {"name": "a;b"},
        {"path": "/;Domain=evil.example"},
        {"domain": "a\r\nSet-Cookie: x=y"},
        {"same_site": "lax"},
        {"same_site": "None"},  # without secure=True
    ],
)
def test_invalid_cookie_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CookieOptions(**options)


def test_invalid_cookie_option_type() -> None:
    with pytest.raises(TypeError):
        realtime.Server(cookie=3)  # type: ignore[typeddict-item]
