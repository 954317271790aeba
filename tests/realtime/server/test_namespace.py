"""tether.realtime.server.namespace: handler matching and dynamic namespaces."""

from __future__ import annotations

import re
from typing import Any

from tether import realtime
from tether.realtime.protocol import socketio
from tether.realtime.server.namespace import Handlers


async def on_chat(socket: Any, text: str) -> None:
    pass


def catch_all(socket: Any, event: str, *args: Any) -> None:
    pass


def test_an_event_matches_its_handler_with_its_arguments_and_ack() -> None:
    handlers = Handlers()
    handlers.add("chat", on_chat)
    event = handlers.match(socketio.Packet.event("chat", "hi", id=7))
    assert event is not None
    assert (event.handler, event.args, event.ack_id, event.event) == (on_chat, ["hi"], 7, "chat")
    assert event.is_async
    assert handlers.match(socketio.Packet.event("other")) is None


def test_the_catch_all_gets_the_event_name_first() -> None:
    handlers = Handlers()
    handlers.add("*", catch_all)
    event = handlers.match(socketio.Packet.event("anything", 1))
    assert event is not None
    assert (event.args, event.event, event.is_async) == (["anything", 1], "*", False)


async def test_a_dynamic_parent_shares_its_handlers_and_emits_to_its_children() -> None:
    server = realtime.Server()
    parent = server.of(re.compile(r"/team-\d+"))
    parent.on("chat", on_chat)
    assert parent.dynamic and parent.targets() == []
    child = await server.resolve_namespace("/team-1", {})
    assert child is not None and child.parent is parent
    assert child.handlers is parent.handlers
    assert parent.targets() == [child]
    assert child.targets() == [child]
    assert await server.resolve_namespace("/other", {}) is None
    server.release_namespace(child)  # no sockets: removed
    assert "/team-1" not in server.namespaces and parent.children == {}


def test_ack_ids_count_per_namespace() -> None:
    server = realtime.Server()
    other = server.of("/other")
    assert [server.next_ack_id(), server.next_ack_id(), other.next_ack_id()] == [1, 2, 1]
