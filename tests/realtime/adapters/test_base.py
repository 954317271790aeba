"""The in-memory adapter's own bookkeeping (tether.realtime.adapters.base):
what a stored event counts against ``max_stored_bytes``, and how long a
departed socket's room marks are kept. Its behaviour as an
adapter is held to the contract in test_contract.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import timeout
from realtime.sio_helpers import eventually
from tether import realtime
from tether.realtime.adapters import base
from tether.realtime.adapters.base import BroadcastOptions, SavedSession
from tether.realtime.protocol import socketio


@pytest.mark.parametrize(
    "args",
    [("plain", 1, {"k": [None, 2.5]}), ("é\x1e",), (b"\x01", {"b": b"\x02"})],
    ids=["json", "non-ascii", "binary"],
)
def test_a_stored_event_counts_its_encoded_bytes(args: tuple[Any, ...]) -> None:
    adapter = realtime.Server(connection_state_recovery={}).adapter
    stored = adapter.store(
        "/chat", socketio.Packet.event("e", *args, namespace="/chat"), BroadcastOptions()
    )
    # What the general encoder writes for it (the offset included), plus the entry.
    text, attachments = socketio.encode(stored)
    expected = len(text) + sum(map(len, attachments)) + base._ENTRY_OVERHEAD
    assert adapter._packets[-1].size == adapter._stored_bytes == expected


async def test_the_marks_of_a_socket_that_cannot_come_back_are_not_kept() -> None:
    adapter = realtime.Server(connection_state_recovery={}).adapter
    adapter.add_all("/", "a", ["lobby"])
    adapter.add_all("/", "b", ["lobby"])
    # "a" sent its own DISCONNECT: nothing follows. "b" lost its transport:
    # the server saves its session in a task, as disconnect_socket does.
    adapter.delete_all("/", "a")
    adapter.delete_all("/", "b")
    saved = SavedSession("b", "pid-b", "/", ["lobby"], {}, None)
    task = asyncio.get_running_loop().create_task(adapter.persist_session(saved))
    assert set(adapter._departed) == {("/", "a"), ("/", "b")}
    await asyncio.wait_for(task, timeout(1))
    # Long before max_disconnection_duration: "a"'s marks are gone, "b"'s
    # went into its saved session.
    await eventually(lambda: not adapter._departed, wait=1)
    assert list(adapter._sessions) == ["pid-b"]
    assert set(adapter._sessions["pid-b"].marks) == {"lobby", "b"}
