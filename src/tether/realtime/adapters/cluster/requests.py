"""Requests between workers through the hub: a broadcast with acks,
``fetch_sockets``, ``sockets_join/leave``, ``disconnect_sockets``,
``save_data``.

The requester is told by the hub how many workers the request went to
(``sent``); each answers with one receipt (and how many replies follow:
acks come one by one) and those replies. The requester is done when every
receipt and every reply announced is in, at its timeout, or when the hub
goes away (what came so far is the answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ....ratelimit import LogLimiter
from ...protocol import socketio
from ..interface import LocalSockets, replace_data
from . import messages as msg
from .memory import opts_from_wire
from .wire import to_wire

__all__ = ["Answers", "Pending"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

Send = Callable[[msg.Message], bool]
Select = Callable[[str, dict[str, Any]], list[str]]


@dataclass(slots=True)
class Pending:
    """One of this worker's requests, waiting for its replies."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    needed: int | None = None  # receipts: one per worker it went to
    receipts: int = 0
    expect: int = 0
    replies: int = 0
    items: list[Any] = field(default_factory=list)

    def on_sent(self, workers: int) -> None:
        self.needed = workers
        self.check()

    def on_reply(self, reply: msg.Reply) -> None:
        if reply.receipt:
            self.receipts += 1
        else:
            self.replies += len(reply.items)
        self.expect += reply.expect
        self.items += reply.items
        self.check()

    def check(self) -> None:
        if self.needed is not None and self.receipts >= self.needed and self.replies >= self.expect:
            self.done.set()


class Answers:
    """Answering the requests of other workers, for their sockets here."""

    def __init__(
        self,
        sockets: Callable[[], LocalSockets],
        select: Select,
        send: Send,
        settle: Callable[[], None],
        touch: Callable[[str, str], None],
    ) -> None:
        self._sockets = sockets
        self._select = select
        self._send = send
        self._settle = settle
        self._touch = touch
        self._logs = LogLimiter(_log)
        self._handlers: dict[type[msg.Request], Callable[[Any, list[str]], None]] = {
            msg.AckRequest: self._ack,
            msg.FetchRequest: self._fetch,
            msg.RoomsRequest: self._rooms,
            msg.DisconnectRequest: self._disconnect,
            msg.DataRequest: self._data,
        }

    def answer(self, request: msg.Request) -> None:
        self._handlers[type(request)](request, self._select(request.nsp, request.o))

    def _reply(self, request: msg.Request, reply: msg.Reply) -> None:
        if not self._send(reply) and reply.items:
            # Not JSON-able, or too large: the requester must still count us.
            self._send(msg.Reply(request.id, reply.receipt, reply.expect))

    def _ack(self, request: msg.AckRequest, targets: list[str]) -> None:
        sockets = self._sockets()
        ack_id = sockets.next_ack_id(request.nsp)
        if ack_id is None or not targets:
            self._reply(request, msg.Reply(request.id, True))
            return
        packet = socketio.Packet.event(*request.data, namespace=request.nsp, id=ack_id)
        waiters = sockets.deliver_with_ack(request.nsp, packet, targets, opts_from_wire(request.o))
        self._reply(request, msg.Reply(request.id, True, len(waiters)))

        def answered(waiter: asyncio.Future[Any]) -> None:
            value: list[Any] = []
            if not waiter.cancelled() and waiter.exception() is None:
                value = [waiter.result()]
            # A socket that left or did not answer still counts, as no reply.
            self._reply(request, msg.Reply(request.id, False, len(value) - 1, value))

        for waiter in waiters:
            waiter.add_done_callback(answered)
        asyncio.get_running_loop().call_later(
            request.timeout, lambda: [w.cancel() for w in waiters if not w.done()]
        )

    def _fetch(self, request: msg.FetchRequest, targets: list[str]) -> None:
        infos = self._sockets().socket_infos(request.nsp, targets)
        self._reply(request, msg.Reply(request.id, True, items=[to_wire(info) for info in infos]))

    def _rooms(self, request: msg.RoomsRequest, targets: list[str]) -> None:
        sockets = self._sockets()
        for sid in targets:
            if request.join:
                try:
                    sockets.join(request.nsp, sid, request.rooms)
                except ValueError as exc:  # a room named after a sid: refused
                    self._logs.log(logging.WARNING, "join", "sockets_join refused: %s", exc)
            else:
                sockets.leave(request.nsp, sid, request.rooms)
        # The hub hears of the new rooms before the requester hears back.
        self._settle()
        self._reply(request, msg.Reply(request.id, True))

    def _disconnect(self, request: msg.DisconnectRequest, targets: list[str]) -> None:
        sockets = self._sockets()
        for sid in targets:
            sockets.disconnect(request.nsp, sid, request.close)
        self._settle()
        self._reply(request, msg.Reply(request.id, True))

    def _data(self, request: msg.DataRequest, targets: list[str]) -> None:
        sockets = self._sockets()
        saved = [sid for sid in targets if replace_data(sockets, request.nsp, sid, request.data)]
        for sid in saved:
            self._touch(request.nsp, sid)  # the hub keeps its data for recovery
        self._settle()
        self._reply(request, msg.Reply(request.id, True, items=saved))
