"""A client namespace's state across connections (:mod:`tether.realtime.client.namespaces`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether.exceptions import Disconnected
from tether.realtime.client.namespaces import ClientNamespace, Encoded
from tether.realtime.protocol.parsers import JsonParser, MsgpackParser
from tether.realtime.protocol.socketio import Packet

JSON = JsonParser()


def test_encoded_keeps_the_ack_id_and_attachments() -> None:
    encoded = Encoded.of(Packet.event("e", b"\x01", id=7), JSON)
    assert encoded.id == 7
    assert encoded.payloads == ['51-7["e",{"_placeholder":true,"num":0}]', b"\x01"]


def test_encoded_with_msgpack_is_one_binary_message() -> None:
    encoded = Encoded.of(Packet.event("e", b"\x01", id=7), MsgpackParser())
    assert encoded.id == 7
    [payload] = encoded.payloads
    assert isinstance(payload, bytes)


async def test_losing_the_session_keeps_the_acks_of_buffered_packets() -> None:
    loop = asyncio.get_running_loop()
    ns = ClientNamespace("/", connected=True)
    sent: asyncio.Future[list[Any]] = loop.create_future()
    buffered: asyncio.Future[list[Any]] = loop.create_future()
    ns.acks = {1: sent, 2: buffered}
    ns.buffer.append(Encoded.of(Packet.event("e", id=2), JSON))
    ns.ready = loop.create_future()
    assert ns.lose(Disconnected("lost")) is True
    assert not ns.connected and ns.active
    assert ns.ready.result() is not None
    with pytest.raises(Disconnected):
        sent.result()
    assert ns.acks == {2: buffered} and not buffered.done()
    assert ns.lose(Disconnected("again")) is False


async def test_giving_up_fails_every_ack_and_drops_the_buffer() -> None:
    ns = ClientNamespace("/chat", connected=True)
    waiting: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
    ns.acks[3] = waiting
    ns.buffer.append(Encoded.of(Packet.event("e", id=3), JSON))
    ns.give_up(Disconnected("refused"))
    assert not ns.active and not ns.connected
    assert not ns.acks and not ns.buffer
    with pytest.raises(Disconnected):
        waiting.result()
