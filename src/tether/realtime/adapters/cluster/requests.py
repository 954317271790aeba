"""Requests between workers through the hub: a broadcast with acks,
``fetch_sockets``, ``sockets_join/leave``, ``disconnect_sockets``.

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
from ..interface import LocalSockets
from .memory import opts_from_wire
from .wire import to_wire

__all__ = ["Answers", "Pending"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

Send = Callable[[dict[str, Any]], bool]
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

    def on_reply(self, message: dict[str, Any]) -> None:
        items = list(message.get("items") or ())
        if message.get("receipt"):
            self.receipts += 1
        else:
            self.replies += len(items)
        self.expect += int(message.get("expect", 0))
        self.items += items
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
    ) -> None:
        self._sockets = sockets
        self._select = select
        self._send = send
        self._settle = settle
        self._logs = LogLimiter(_log)

    def answer(self, request: dict[str, Any]) -> None:
        kind = request["k"]
        handler = {
            "ack": self._ack,
            "fetch": self._fetch,
            "rooms": self._rooms,
            "disconnect": self._disconnect,
        }.get(kind)
        if handler is None:
            self._logs.log(logging.WARNING, "kind", "unknown request kind %r", kind)
            self._reply(request, receipt=True)
            return
        handler(request, self._select(str(request["nsp"]), request.get("o") or {}))

    def _reply(
        self,
        request: dict[str, Any],
        *,
        receipt: bool,
        expect: int = 0,
        items: list[Any] | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "t": "rep",
            "id": request["id"],
            "receipt": receipt,
            "expect": expect,
        }
        if items:
            message["items"] = items
        if not self._send(message) and items:
            # Not JSON-able, or too large: the requester must still count us.
            self._send({"t": "rep", "id": request["id"], "receipt": receipt, "expect": expect})

    def _ack(self, request: dict[str, Any], targets: list[str]) -> None:
        sockets = self._sockets()
        nsp = str(request["nsp"])
        ack_id = sockets.next_ack_id(nsp)
        if ack_id is None or not targets:
            self._reply(request, receipt=True)
            return
        packet = socketio.Packet.event(*request["data"], namespace=nsp, id=ack_id)
        waiters = sockets.deliver_with_ack(
            nsp, packet, targets, opts_from_wire(request.get("o") or {})
        )
        self._reply(request, receipt=True, expect=len(waiters))

        def answered(waiter: asyncio.Future[Any]) -> None:
            value: list[Any] = []
            if not waiter.cancelled() and waiter.exception() is None:
                value = [waiter.result()]
            # A socket that left or did not answer still counts, as no reply.
            self._reply(request, receipt=False, expect=len(value) - 1, items=value)

        for waiter in waiters:
            waiter.add_done_callback(answered)
        timeout = float(request.get("timeout") or 0)
        asyncio.get_running_loop().call_later(
            timeout, lambda: [w.cancel() for w in waiters if not w.done()]
        )

    def _fetch(self, request: dict[str, Any], targets: list[str]) -> None:
        infos = self._sockets().socket_infos(str(request["nsp"]), targets)
        self._reply(request, receipt=True, items=[to_wire(info) for info in infos])

    def _rooms(self, request: dict[str, Any], targets: list[str]) -> None:
        sockets = self._sockets()
        nsp = str(request["nsp"])
        rooms = [str(room) for room in request["rooms"]]
        for sid in targets:
            if request.get("join"):
                try:
                    sockets.join(nsp, sid, rooms)
                except ValueError as exc:  # a room named after a sid: refused
                    self._logs.log(logging.WARNING, "join", "sockets_join refused: %s", exc)
            else:
                sockets.leave(nsp, sid, rooms)
        # The hub hears of the new rooms before the requester hears back.
        self._settle()
        self._reply(request, receipt=True)

    def _disconnect(self, request: dict[str, Any], targets: list[str]) -> None:
        sockets = self._sockets()
        for sid in targets:
            sockets.disconnect(str(request["nsp"]), sid, bool(request.get("close")))
        self._settle()
        self._reply(request, receipt=True)
