"""One namespace of a Socket.IO client: its state across connections.

Section names refer to https://github.com/socketio/socket.io-protocol
(README). A :class:`ClientNamespace` outlives the Engine.IO sessions the
client opens and loses: it keeps the ids the server gave it (§Connection to a
namespace), the offset of the last event for connection state recovery, the
packets emitted while disconnected (:class:`Encoded`, sent once connected
again) and the acknowledgements still awaited.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any

from ..protocol.parsers import Parser
from ..protocol.socketio import Packet

__all__ = ["ClientNamespace", "Encoded"]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A packet ready to send: the Engine.IO messages its parser made of it
    (with the JSON parser: its text, then its attachments, §Packet encoding)."""

    id: int | None
    payloads: list[str | bytes]

    @classmethod
    def of(cls, packet: Packet, parser: Parser) -> Encoded:
        """Encode ``packet``; raise TypeError or ValueError when it cannot be."""
        return cls(packet.id, parser.encode(packet))


@dataclass(eq=False)
class ClientNamespace:
    """The state of one namespace of the client."""

    name: str
    sid: str | None = None
    pid: str | None = None  # connection state recovery session id (§CONNECT reply)
    offset: str | None = None  # offset of the last event received, for recovery
    recovered: bool = False
    connected: bool = False
    active: bool = True  # False once the server refused or ended it: no reconnection
    # The pending CONNECT: the reply's error (ConnectionRefused, Disconnected) or None.
    ready: asyncio.Future[BaseException | None] | None = None
    buffer: collections.deque[Encoded] = field(default_factory=collections.deque)
    acks: dict[int, asyncio.Future[list[Any]]] = field(default_factory=dict)

    def settle(self, error: BaseException | None) -> None:
        """Answer the pending CONNECT, if any: None when accepted, else why not."""
        ready = self.ready
        if ready is not None and not ready.done():
            ready.set_result(error)

    def give_up(self, error: BaseException) -> None:
        """No more of this namespace: fail its acks, drop its buffer."""
        self.active = self.connected = False
        for future in self.acks.values():
            if not future.done():
                future.set_exception(error)
        self.acks.clear()
        self.buffer.clear()

    def lose(self, error: BaseException) -> bool:
        """The session under it ended: fail what cannot be answered any more;
        whether the namespace was connected."""
        was_connected, self.connected = self.connected, False
        self.settle(error)
        # Buffered packets are sent again after reconnecting, so their
        # acks may still come; the others' cannot (the reference client too).
        buffered = {encoded.id for encoded in self.buffer}
        for ack_id in [i for i in self.acks if i not in buffered]:
            future = self.acks.pop(ack_id)
            if not future.done():
                future.set_exception(error)
        return was_connected
