"""The in-memory adapter's own bookkeeping (tether.realtime.adapters.base):
what a stored event counts against ``max_stored_bytes``. Its behaviour as an
adapter is held to the contract in test_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from tether import realtime
from tether.realtime.adapters import base
from tether.realtime.adapters.base import BroadcastOptions
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
