"""Engine.IO v4 server sessions on the wire: handshake, long-polling, WebSocket,
heartbeat, close, upgrade, ``maxPayload`` (CORS and origins: test_origins.py).

Each test drives a bare Engine.IO server (the ``start_engine`` fixture: every
message is echoed back, no Socket.IO) by hand, with raw HTTP requests and
tether's WebSocket client, and checks the bytes it answers with. Section
names refer to the Engine.IO v4 specification (socketio/engine.io-protocol).
"""

from __future__ import annotations

import asyncio
import json

import pytest

import tether
from helpers import timeout
from realtime.conftest import EchoEngine, StartEngine
from realtime.sio_helpers import (
    eio_url,
    eventually,
    http_request,
    open_polling,
    open_websocket,
    poll,
    post,
)

PATH = "/engine.io/"
HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


async def polling_session(engine: EchoEngine) -> str:
    sid, _ = await open_polling(engine.port, path=PATH)
    return sid


def held(engine: EchoEngine, sid: str) -> bool:
    """Whether the session has a long-polling GET waiting for packets."""
    session = engine.engine.sessions.get(sid)
    return session is not None and session.transport == "polling" and session.writable


async def upgraded(engine: EchoEngine, sid: str) -> tether.Connection:
    """Upgrade polling session ``sid`` to a WebSocket (§Upgrade) and return it."""
    ws = await open_websocket(engine.port, sid, path=PATH)
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    await ws.send("5")
    return ws.connection


# -- §Handshake ---------------------------------------------------------------------------


async def test_polling_handshake_opens_a_session(start_engine: StartEngine) -> None:
    engine = await start_engine(ping_interval=0.3, ping_timeout=0.2)
    response = await http_request(engine.port, "GET", eio_url(path=PATH))
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("0")
    handshake = json.loads(response.text[1:])
    assert set(handshake) == HANDSHAKE_KEYS
    assert isinstance(handshake["sid"], str) and len(handshake["sid"]) >= 16
    assert handshake["upgrades"] == ["websocket"]
    assert handshake["pingInterval"] == 300
    assert handshake["pingTimeout"] == 200
    assert handshake["maxPayload"] == 1_000_000
    assert handshake["sid"] in engine.engine.sessions


async def test_each_handshake_gets_its_own_sid(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sids = {await polling_session(engine) for _ in range(3)}
    assert len(sids) == 3


@pytest.mark.parametrize(
    ("method", "query", "code", "message"),
    [
        ("GET", "transport=polling", 5, "Unsupported protocol version"),
        ("GET", "EIO=abc&transport=polling", 5, "Unsupported protocol version"),
        ("GET", "EIO=3&transport=polling", 5, "Unsupported protocol version"),
        ("GET", "EIO=4", 0, "Transport unknown"),
        ("GET", "EIO=4&transport=abc", 0, "Transport unknown"),
        ("POST", "EIO=4&transport=polling", 2, "Bad handshake method"),
        ("PUT", "EIO=4&transport=polling", 2, "Bad handshake method"),
        ("GET", "EIO=4&transport=polling&sid=nope", 1, "Session ID unknown"),
        ("POST", "EIO=4&transport=polling&sid=nope", 1, "Session ID unknown"),
    ],
)
async def test_polling_handshake_refusals(
    start_engine: StartEngine, method: str, query: str, code: int, message: str
) -> None:
    engine = await start_engine()
    response = await http_request(engine.port, method, f"{PATH}?{query}")
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": code, "message": message}
    assert not engine.engine.sessions


async def test_other_method_on_a_session_is_refused(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    response = await http_request(engine.port, "PUT", eio_url(sid, path=PATH))
    assert response.status == 400
    assert response.json()["code"] == 3


async def test_websocket_handshake_opens_a_session(start_engine: StartEngine) -> None:
    engine = await start_engine(ping_interval=0.3, ping_timeout=0.2, max_payload=5000)
    ws = await open_websocket(engine.port, path=PATH)
    first = await ws.recv_text()
    assert first.startswith("0")
    handshake = json.loads(first[1:])
    assert set(handshake) == HANDSHAKE_KEYS
    # Already on the best transport: nothing to upgrade to.
    assert handshake["upgrades"] == []
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (300, 200)
    assert handshake["maxPayload"] == 5000
    assert engine.engine.sessions[handshake["sid"]].transport == "websocket"
    await ws.close()


@pytest.mark.parametrize(
    "query",
    [
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=3&transport=websocket",
        "EIO=4&transport=abc",
        "EIO=4&transport=websocket&sid=nope",
    ],
)
async def test_websocket_handshake_refusals(start_engine: StartEngine, query: str) -> None:
    engine = await start_engine()
    with pytest.raises(tether.InvalidStatus) as caught:
        await asyncio.wait_for(
            tether.connect(f"ws://127.0.0.1:{engine.port}{PATH}?{query}"), timeout(2)
        )
    assert caught.value.response.status == 400
    assert not engine.engine.sessions


async def test_websocket_only_server_refuses_polling(start_engine: StartEngine) -> None:
    engine = await start_engine(transports=["websocket"])
    response = await http_request(engine.port, "GET", eio_url(path=PATH))
    assert response.status == 400
    assert response.json()["code"] == 0
    ws = await open_websocket(engine.port, path=PATH)
    assert (await ws.recv_text()).startswith("0{")
    await ws.close()


async def test_polling_handshake_without_upgrades(start_engine: StartEngine) -> None:
    engine = await start_engine(allow_upgrades=False)
    _, handshake = await open_polling(engine.port, path=PATH)
    assert handshake["upgrades"] == []


# -- §HTTP long-polling: messages ------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "4hello",
        "4test1\x1e4test2\x1e4test3",
        "4hello\x1ebAQIDBA==",  # text, then the binary 01 02 03 04 in base64
        "4\x1e4é ✓",  # an empty message, then non-ASCII text
    ],
)
async def test_polling_payload_round_trip(start_engine: StartEngine, payload: str) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    response = await post(engine.port, sid, payload, path=PATH)
    assert (response.status, response.text) == (200, "ok")
    # Echoed back as one payload, in order, binary still in base64.
    assert "\x1e".join(await poll(engine.port, sid, path=PATH)) == payload


async def test_held_get_is_answered_when_a_packet_arrives(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    get = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    assert not get.done()
    await post(engine.port, sid, "4late", path=PATH)
    assert await get == ["4late"]


async def test_invalid_packet_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    response = await post(engine.port, sid, "abc", path=PATH)
    assert response.status == 400
    assert await engine.closed(sid) == "parse error"
    response = await http_request(engine.port, "GET", eio_url(sid, path=PATH))
    assert (response.status, response.json()["code"]) == (400, 1)


async def test_duplicate_get_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    first = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    second = await http_request(engine.port, "GET", eio_url(sid, path=PATH) + "&t=burst")
    assert second.status == 400
    # The held GET ends with a close packet, and the sid is gone.
    assert await first == ["1"]
    assert await engine.closed(sid) == "transport error"
    third = await http_request(engine.port, "GET", eio_url(sid, path=PATH))
    assert third.status == 400


async def test_client_leaving_a_held_get_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    get = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    get.cancel()  # drops the TCP connection
    assert await engine.closed(sid) == "transport close"


# -- §WebSocket: messages ----------------------------------------------------------------


async def test_websocket_text_and_binary_round_trip(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    await ws.recv()  # handshake
    await ws.send("4hello")
    assert await ws.recv() == "4hello"
    # Binary messages travel as binary frames, without a type prefix.
    await ws.send(b"\x01\x02\x03\x04")
    assert await ws.recv() == b"\x01\x02\x03\x04"
    # One packet per frame: the record separator has no meaning here.
    await ws.send("4a\x1e4b")
    assert await ws.recv() == "4a\x1e4b"
    await ws.close()


@pytest.mark.parametrize("frame", ["abc", "", "0{}", "5"])
async def test_websocket_invalid_packet_closes_the_session(
    start_engine: StartEngine, frame: str
) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.send(frame)
    assert await ws.closed() == ["1"]
    assert await engine.closed(sid) == "parse error"


async def test_a_bad_session_does_not_disturb_another(start_engine: StartEngine) -> None:
    engine = await start_engine()
    good = await open_websocket(engine.port, path=PATH)
    await good.recv()
    bad = await open_websocket(engine.port, path=PATH)
    await bad.recv()
    await bad.send("xyz")
    await bad.closed()
    await good.send("4still here")
    assert await good.recv() == "4still here"
    await good.close()


# -- §Heartbeat -----------------------------------------------------------------------------

FAST = {"ping_interval": timeout(0.1), "ping_timeout": timeout(0.2)}


async def test_polling_ping_pong(start_engine: StartEngine) -> None:
    engine = await start_engine(**FAST)
    sid = await polling_session(engine)
    for _ in range(3):
        # The GET is held until the server pings, and the pong keeps the session.
        assert await poll(engine.port, sid, path=PATH) == ["2"]
        response = await post(engine.port, sid, "3", path=PATH)
        assert response.status == 200
    assert sid in engine.engine.sessions


async def test_polling_ping_timeout_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine(**FAST)
    sid = await polling_session(engine)
    assert await engine.closed(sid) == "ping timeout"
    response = await http_request(engine.port, "GET", eio_url(sid, path=PATH))
    assert response.status == 400


async def test_websocket_ping_pong(start_engine: StartEngine) -> None:
    engine = await start_engine(**FAST)
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    for _ in range(3):
        assert await ws.recv() == "2"
        await ws.send("3")
    assert sid in engine.engine.sessions
    await ws.close()


async def test_websocket_ping_timeout_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine(**FAST)
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    # The ping goes unanswered: the server says goodbye and closes.
    assert await ws.closed() == ["2", "1"]
    assert await engine.closed(sid) == "ping timeout"


async def test_an_unsolicited_pong_is_harmless(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    await ws.recv()
    await ws.send("3", "6", "4ok")
    assert await ws.recv() == "4ok"
    await ws.close()


# -- closing -----------------------------------------------------------------------------


async def test_polling_client_close(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    get = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    response = await post(engine.port, sid, "1", path=PATH)
    assert response.status == 200
    # The held GET ends with a noop: the client asked, it needs no close.
    assert await get == ["6"]
    assert await engine.closed(sid) == "forced close"
    response = await http_request(engine.port, "GET", eio_url(sid, path=PATH))
    assert response.status == 400


async def test_websocket_client_close(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.send("1")
    assert await ws.closed() == []
    assert await engine.closed(sid) == "forced close"


async def test_websocket_dropped_closes_the_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.close()
    assert await engine.closed(sid) == "transport close"


async def test_server_close_tells_a_polling_client(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    get = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    engine.engine.sessions[sid].close()
    assert await get == ["1"]
    assert await engine.closed(sid) == "forced close"


async def test_server_close_with_a_policy_code(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    engine.engine.sessions[sid].close("policy violation", code=1008)
    # The close packet, then a WebSocket close naming the reason (RFC 6455 §7.4.1).
    assert await ws.closed() == ["1"]
    assert ws.connection.close_code == 1008
    assert ws.connection.close_reason == "policy violation"
    assert await engine.closed(sid) == "policy violation"
    assert sid not in engine.engine.sessions


# -- §Upgrade -------------------------------------------------------------------------------


async def test_upgrade_from_polling_to_websocket(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    get = asyncio.create_task(poll(engine.port, sid, path=PATH))
    await eventually(lambda: held(engine, sid))
    ws = await open_websocket(engine.port, sid, path=PATH)
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    # The held GET is released with a noop so that the client pauses polling.
    assert await get == ["6"]
    assert engine.engine.sessions[sid].transport == "polling"
    await ws.send("5", "4hello")
    assert await ws.recv() == "4hello"
    assert engine.engine.sessions[sid].transport == "websocket"
    await ws.close()
    assert await engine.closed(sid) == "transport close"


async def test_get_after_the_probe_gets_a_noop(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    ws = await open_websocket(engine.port, sid, path=PATH)
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    assert await poll(engine.port, sid, path=PATH) == ["6"]
    await ws.send("5", "4hello")
    assert await ws.recv() == "4hello"
    await ws.close()


async def test_packets_queued_for_polling_move_to_the_websocket(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    await post(engine.port, sid, "4early", path=PATH)  # echoed into the polling queue
    connection = await upgraded(engine, sid)
    assert await asyncio.wait_for(connection.recv(), timeout(1)) == "4early"
    await connection.close()


async def test_polling_requests_after_upgrade_are_refused(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    connection = await upgraded(engine, sid)
    await connection.send("4first")
    assert await asyncio.wait_for(connection.recv(), timeout(1)) == "4first"
    response = await http_request(engine.port, "GET", eio_url(sid, path=PATH))
    assert (response.status, response.json()["code"]) == (400, 3)
    response = await post(engine.port, sid, "4sneaky", path=PATH)
    assert response.status == 400
    # The WebSocket carries on.
    await connection.send("4hello")
    assert await asyncio.wait_for(connection.recv(), timeout(1)) == "4hello"
    await connection.close()


async def test_second_websocket_for_an_upgraded_session_is_closed(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    connection = await upgraded(engine, sid)
    await connection.send("4first")
    assert await asyncio.wait_for(connection.recv(), timeout(1)) == "4first"
    second = await open_websocket(engine.port, sid, path=PATH)
    assert await second.closed() == []
    assert second.connection.close_code == 1008
    await connection.send("4hello")
    assert await asyncio.wait_for(connection.recv(), timeout(1)) == "4hello"
    await connection.close()


async def test_failed_probe_leaves_the_polling_session(start_engine: StartEngine) -> None:
    engine = await start_engine()
    sid = await polling_session(engine)
    ws = await open_websocket(engine.port, sid, path=PATH)
    await ws.send("4not a probe")
    await ws.closed()
    await post(engine.port, sid, "4still polling", path=PATH)
    assert await poll(engine.port, sid, path=PATH) == ["4still polling"]


async def test_upgrade_of_a_websocket_session_is_refused(start_engine: StartEngine) -> None:
    engine = await start_engine()
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    second = await open_websocket(engine.port, sid, path=PATH)
    await second.closed()
    await ws.send("4ok")
    assert await ws.recv() == "4ok"
    await ws.close()


# -- maxPayload -------------------------------------------------------------------------------


async def test_post_over_max_payload_is_refused(start_engine: StartEngine) -> None:
    engine = await start_engine(max_payload=100)
    sid = await polling_session(engine)
    response = await post(engine.port, sid, "4" + "x" * 99, path=PATH)  # exactly the limit
    assert response.status == 200
    assert await poll(engine.port, sid, path=PATH) == ["4" + "x" * 99]
    response = await post(engine.port, sid, "4" + "x" * 100, path=PATH)
    assert response.status == 413
    assert await engine.closed(sid) == "transport error"


async def test_websocket_message_over_max_payload_closes_the_session(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine(max_payload=100)
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.send("4" + "x" * 99)
    assert await ws.recv() == "4" + "x" * 99
    # 25 characters are within 100 bytes however encoded: the message fast
    # path, not counted. 34 are not: counted, and 100 bytes of UTF-8 pass.
    await ws.send("4" + "é" * 24)
    assert await ws.recv() == "4" + "é" * 24
    await ws.send("4" + "€" * 33)
    assert await ws.recv() == "4" + "€" * 33
    await ws.send(b"\x00" * 100)
    assert await ws.recv() == b"\x00" * 100
    await ws.send("4" + "x" * 100)
    await ws.closed()
    assert sid not in engine.engine.sessions
    assert await engine.closed(sid) == "parse error"
    # 35 characters of which 34 are 3 bytes in UTF-8: 103 bytes, over the
    # limit though far fewer characters than 100, so not for the fast path.
    ws = await open_websocket(engine.port, path=PATH)
    sid = json.loads((await ws.recv_text())[1:])["sid"]
    await ws.send("4" + "€" * 34)
    await ws.closed()
    assert await engine.closed(sid) == "parse error"
