"""The chat demo's server side: limits, and a conversation with python-socketio clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio  # python-socketio, a client nobody here wrote

from helpers import timeout
from tether import realtime
from tether.demo.chat import NAMESPACE, Chat, ChatLimits, RateLimiter, clean_text


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    limiter = RateLimiter(burst=3, per_second=2.0)
    start = limiter.updated
    assert [limiter.allow(start) for _ in range(4)] == [True, True, True, False]
    assert not limiter.allow(start + 0.4)
    assert limiter.allow(start + 0.5)
    assert [limiter.allow(start + 100) for _ in range(4)] == [True, True, True, False]


def test_clean_text() -> None:
    assert clean_text("  hi\u200b there\x07 ", 20) == "hi there"
    assert clean_text("   ", 20) is None
    assert clean_text("x" * 21, 20) is None
    assert clean_text(42, 20) is None


class User:
    def __init__(self, url: str, nick: str, room: str) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.url, self.nick, self.room = url, nick, room
        self.events: dict[str, asyncio.Queue[Any]] = {}
        for event in ("welcome", "message", "notice", "presence", "typing"):
            queue: asyncio.Queue[Any] = asyncio.Queue()
            self.events[event] = queue
            self.client.on(event, lambda data, *_offset, q=queue: q.put_nowait(data), NAMESPACE)

    async def connect(self) -> None:
        await self.client.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth={"nick": self.nick, "room": self.room},
            transports=["websocket"],
            wait_timeout=timeout(5),
        )

    async def next(self, event: str) -> Any:
        return await asyncio.wait_for(self.events[event].get(), timeout(5))

    async def presence(self, *members: str) -> None:
        while (await self.next("presence"))["members"] != sorted(members):
            pass

    async def say(self, message_id: str, text: str) -> Any:
        message = {"id": message_id, "text": text}
        return await self.client.call("message", message, namespace=NAMESPACE, timeout=timeout(5))


@contextlib.asynccontextmanager
async def chat_server(**limits: Any) -> AsyncIterator[str]:
    server = realtime.Server(connection_state_recovery=True)
    Chat(server, ChatLimits(**limits))
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield f"http://127.0.0.1:{http.port}"


async def test_conversation_presence_history_and_duplicates() -> None:
    async with chat_server(history=2) as url:
        ann, bob = User(url, "ann", "general"), User(url, "bob", "general")
        await ann.connect()
        assert (await ann.next("welcome"))["history"] == []
        await bob.connect()
        await ann.presence("ann", "bob")
        assert (await ann.next("notice"))["nick"] == "bob"
        try:
            for n in range(3):
                assert (await ann.say(f"m{n}", f"hello {n}"))["ok"]
                assert (await bob.next("message"))["text"] == f"hello {n}"
            # A retry of a delivered message is acknowledged, not delivered again.
            assert await ann.say("m2", "hello 2") == {"ok": True, "duplicate": True}
            late = User(url, "cid", "general")
            await late.connect()
            welcome = await late.next("welcome")
            assert [m["text"] for m in welcome["history"]] == ["hello 1", "hello 2"]
            await late.client.disconnect()
            assert bob.events["message"].empty()
        finally:
            await ann.client.disconnect()
            await bob.client.disconnect()


async def test_limits() -> None:
    async with chat_server(max_text=10, burst=2, per_second=0.01) as url:
        ann = User(url, "ann", "nowhere")
        await ann.connect()
        assert (await ann.next("welcome"))["room"] == "general"  # unknown rooms: the first
        try:
            assert "1 to 10 characters" in (await ann.say("a", "x" * 11))["error"]
            assert (await ann.say("b", "ok"))["ok"]
            assert (await ann.say("c", "ok"))["ok"]
            assert "Slow down" in (await ann.say("d", "ok"))["error"]
            assert "id" in (await ann.say("", "ok"))["error"]
        finally:
            await ann.client.disconnect()


async def test_a_bad_nickname_is_refused() -> None:
    async with chat_server() as url:
        user = User(url, " ", "general")
        errors: list[Any] = []
        user.client.on("connect_error", errors.append, NAMESPACE)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await user.connect()
        assert "nickname" in errors[0]["message"]
        assert errors[0]["data"] == {"field": "nick"}
