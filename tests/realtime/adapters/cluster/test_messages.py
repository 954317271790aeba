"""The cluster messages: built from a decoded frame with every field's type
checked, and back. No I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tether.exceptions import PacketError
from tether.realtime.adapters.cluster import messages
from tether.realtime.adapters.cluster.messages import (
    AckRequest,
    Broadcast,
    Reply,
    Restored,
    as_wire,
    parse,
)


@pytest.mark.parametrize(
    "message",
    [
        Broadcast("/", ["e", b"\x01"], {"rooms": ["r"]}, store=True),
        Broadcast("/", ["e"], off="1-2"),
        AckRequest("w:1", "/", {}, 2.5, ["q"]),
        Reply("w:1", False, -1),
        Restored("w:2", {"sid": "s"}, [["e", "1-3"]]),
        Restored("w:3"),
    ],
)
def test_messages_round_trip(message: messages.Message) -> None:
    assert parse(as_wire(message)) == message


def test_fields_at_their_default_do_not_travel() -> None:
    assert as_wire(Broadcast("/", ["e"])) == {"t": "bc", "nsp": "/", "data": ["e"]}
    assert as_wire(Reply("x", True)) == {"t": "rep", "id": "x", "receipt": True}


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        ({"t": "nonsense"}, "unknown message kind"),
        ({}, "unknown message kind"),
        ({"t": "bc", "nsp": "/"}, "missing 1 required"),
        ({"t": "bc", "nsp": "/", "data": "e"}, "bc.data must be list"),
        ({"t": "bc", "nsp": 1, "data": []}, "bc.nsp must be str"),
        ({"t": "sent", "id": "x", "n": True}, "sent.n must be int, not bool"),
        ({"t": "sent", "id": "x", "n": 1.5}, "sent.n must be int"),
        ({"t": "restore", "id": "x", "nsp": "/", "pid": "p", "offset": 3}, "offset must be"),
        ({"t": "ack", "id": "x", "nsp": "/", "o": {}, "timeout": "1"}, "timeout must be"),
    ],
)
def test_ill_typed_messages_are_refused(wire: dict[str, Any], error: str) -> None:
    with pytest.raises(PacketError, match=error):
        parse(wire)


def test_every_field_type_is_checked_at_run_time() -> None:
    """No annotation the checker does not know (it would raise KeyError)."""
    for cls in messages._KINDS.values():
        for f in dataclasses.fields(cls):
            messages._accepts(str(f.type), None)
