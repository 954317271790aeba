"""tether.realtime.admin.instrument on one server (127.0.0.1 port 0): the
admin namespace's protocol as the official UI speaks it, with a tether Client
in the UI's place (tests/browser/test_admin_ui.py drives the real UI):
authentication, config, server_stats, all_sockets, the live events, the
actions (emit, join, leave, _disconnect), production and readonly modes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import timeout
from realtime.admin.admin_helpers import FakeUI
from realtime.admin.admin_node import PASSWORD, USERNAME, build
from tether import realtime
from tether.exceptions import ConnectionRefused
from tether.realtime.admin import instrument
from tether.realtime.client import Client

CREDENTIALS = {"username": USERNAME, "password": PASSWORD}


class Users(contextlib.AsyncExitStack):
    """Application clients (not the UI), each recording what it gets."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.disconnects: dict[str, asyncio.Queue[str]] = {}
        self.news: asyncio.Queue[Any] = asyncio.Queue()

    async def add(self, name: str, room: str) -> Client:
        client = Client(reconnection=False)
        reasons: asyncio.Queue[str] = asyncio.Queue()
        client.on("disconnect", reasons.put_nowait)
        client.on("news", self.news.put_nowait)
        self.disconnects[name] = reasons
        await asyncio.wait_for(
            client.connect(self.url, auth={"name": name, "room": room}), timeout(5)
        )
        self.push_async_callback(client.disconnect)
        return client


@pytest.fixture
async def served() -> AsyncIterator[tuple[realtime.Server, str]]:
    server = build()
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield server, f"http://127.0.0.1:{http.port}"


def test_auth_is_required_unless_turned_off_explicitly() -> None:
    with pytest.raises(ValueError, match="needs auth="):
        instrument(realtime.Server())
    with pytest.raises(ValueError, match="bcrypt"):
        instrument(realtime.Server(), auth=("admin", "$2b$10$" + "x" * 53))
    with pytest.raises(ValueError, match="mode"):
        instrument(realtime.Server(), auth=False, mode="debug")  # type: ignore[arg-type]
    assert instrument(realtime.Server(), auth=False).features[-1] == "ALL_EVENTS"


async def test_wrong_credentials_are_refused(served: tuple[realtime.Server, str]) -> None:
    _, url = served
    for auth in ({"username": USERNAME, "password": "wrong"}, {"username": "x"}, {}):
        ui = FakeUI()
        with pytest.raises(ConnectionRefused, match="invalid credentials"):
            await ui.connect(url, auth)
        await ui.close()
    # A made-up session id is refused too.
    with pytest.raises(ConnectionRefused):
        await FakeUI().connect(url, {"sessionId": "0" * 32})


async def test_login_sockets_events_and_actions(served: tuple[realtime.Server, str]) -> None:
    _server, url = served
    async with Users(url) as users:
        await users.add("ann", "red")
        await users.add("bob", "blue")
        ui = await FakeUI().connect(url, CREDENTIALS)
        try:
            ((session_id,),) = ui.events["session"]
            ((config,),) = ui.events["config"]
            assert config["supportedFeatures"] == [
                "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT",
                "AGGREGATED_EVENTS", "ALL_EVENTS",
            ]  # fmt: skip
            (sockets,) = await ui.wait("all_sockets")
            users_seen = {s["data"]["name"]: s for s in sockets if s["nsp"] == "/"}
            assert set(users_seen) == {"ann", "bob"}
            ann = users_seen["ann"]
            assert sorted(ann["rooms"]) == sorted([ann["id"], "red"])
            assert ann["transport"] == "websocket" and len(ann["clientId"]) == 12
            assert ann["handshake"]["address"] == "127.0.0.1"
            assert "_admin" not in ann["data"]
            # The UI's own socket is listed, without its password.
            (me,) = [s for s in sockets if s["nsp"] == "/admin"]
            assert "auth" not in me["handshake"] and PASSWORD not in str(me)

            (stats,) = await ui.wait("server_stats", lambda a: "aggregatedEvents" in a[0])
            assert stats["clientsCount"] == 3 and stats["pollingClientsCount"] == 0
            assert {"name": "/", "socketsCount": 2} in stats["namespaces"]

            # A newcomer, its event, an action on it.
            carl = await users.add("carl", "red")
            carl_sid = carl.sid()
            (_socket, when) = await ui.wait("socket_connected", lambda a: a[0]["id"] == carl_sid)
            assert when.endswith("Z")
            # Its data, set by the connect handler (after socket_connected): an update.
            await ui.wait(
                "socket_updated",
                lambda a: a[0] == {"id": carl_sid, "nsp": "/", "data": {"name": "carl"}},
            )
            await ui.wait("room_joined", lambda a: a[:3] == ("/", "red", carl_sid))
            assert await carl.emit_with_ack("chat", "hi", timeout=timeout(5)) == "HI"
            await ui.wait("event_received", lambda a: a[:3] == ("/", carl_sid, ["chat", "hi"]))

            await ui.act("join", "/", "green", carl_sid)
            await ui.wait("room_joined", lambda a: a[:3] == ("/", "green", carl_sid))
            await ui.act("leave", "/", "red", carl_sid)
            await ui.wait("room_left", lambda a: a[:3] == ("/", "red", carl_sid))
            await ui.act("emit", "/", "green", "news", "for green")
            assert await asyncio.wait_for(users.news.get(), timeout(5)) == "for green"
            assert users.news.empty()

            await ui.act("_disconnect", "/", False, carl_sid)
            reason = await asyncio.wait_for(users.disconnects["carl"].get(), timeout(5))
            assert reason == "io server disconnect"
            await ui.wait(
                "socket_disconnected",
                lambda a: a[:3] == ("/", carl_sid, "server namespace disconnect"),
            )
            assert users.disconnects["ann"].empty()

            # The session id logs in again (a reloaded page), on its own.
            again = await FakeUI().connect(url, {"sessionId": session_id})
            await again.close()
        finally:
            await ui.close()


@contextlib.asynccontextmanager
async def open_to_anyone(**options: Any) -> AsyncIterator[tuple[Users, FakeUI, Client]]:
    """A server instrumented with auth=False and ``options``, the UI and one user."""
    server = realtime.Server()
    server.on("chat", lambda socket, text: text.upper())
    instrument(server, auth=False, **options)
    async with (
        realtime.serve(server, "127.0.0.1", 0) as http,
        Users(f"http://127.0.0.1:{http.port}") as users,
    ):
        ui = await FakeUI().connect(users.url, {})
        try:
            yield users, ui, await users.add("ann", "red")
        finally:
            await ui.close()


async def test_production_mode_sends_stats_only() -> None:
    async with open_to_anyone(mode="production", stats_interval=0.2) as (_users, ui, client):
        await client.emit_with_ack("chat", "hi", timeout=timeout(5))
        (_stats,) = await ui.wait("server_stats", lambda a: a[0]["clientsCount"] == 2)
        # Counted whatever the mode, and reported in one of the next stats.
        await ui.wait(
            "server_stats",
            lambda a: any(e["type"] == "packetsIn" for e in a[0].get("aggregatedEvents", ())),
        )
        assert "ALL_EVENTS" not in ui.events["config"][0][0]["supportedFeatures"]
        assert not {"all_sockets", "socket_connected", "event_received"} & set(ui.events)


async def test_readonly_refuses_actions() -> None:
    async with open_to_anyone(readonly=True) as (users, ui, client):
        assert ui.events["config"][0][0]["supportedFeatures"] == [
            "AGGREGATED_EVENTS",
            "ALL_EVENTS",
        ]
        await ui.act("_disconnect", "/", True)
        await ui.act("emit", "/", None, "news", "no")
        # Acted on in order if at all: the chat's ack comes after them.
        assert await client.emit_with_ack("chat", "x", timeout=timeout(5)) == "X"
        assert client.connected and users.news.empty()
