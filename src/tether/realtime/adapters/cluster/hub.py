"""The hub: the one process every worker's :class:`~.adapter.ClusterAdapter`
connects to, over a Unix-domain socket. It relays what concerns other
workers and keeps what connection state recovery needs (:mod:`.memory`).

Messages (JSON objects framed by :mod:`.wire`; ``t`` names the kind)::

    worker -> hub                         hub -> worker
    hello  {node, rec}                    bc        an event to deliver (off: its offset)
    bc     {nsp, data, o, store, local}   se        a server-side event
    se     {event, args}                  req       a request of another worker
    req    {id, k, nsp, o, ...}           sent      {id, n}: to how many workers it went
    rep    {id, receipt, expect, items}   rep       a reply to one of its requests
    live   {sockets: [...]}               restored  {id, session, missed}
    gone   {sockets: [[nsp, sid]...]}     checked   {id, taken}
    persist {session}                     flushed   {id}
    restore {id, nsp, pid, offset}
    check  {id, nsp, sid, rooms}
    flush  {id}

A worker's messages are handled in the order it sent them, and what the hub
sends a worker arrives in the order it was sent: an event stored (given an
offset) before a restore was answered is in the replay, one stored after it
comes after the reply.

A request goes to every other live worker; each answers with one receipt
(``expect``: how many more replies follow) and those replies. A worker that
dies before it has answered in full is answered for by the hub (a receipt
and the replies it still owed, as none), so its requester does not wait for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ....exceptions import PacketError
from ....ratelimit import LogLimiter
from ..base import RecoveryOptions, SavedSession
from .memory import Memory, Owned, opts_from_wire
from .peer import MAX_QUEUED, Peer, PeerGone, frame_of
from .wire import MAX_FRAME, from_wire, to_wire

__all__ = ["ClusterHub"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

#: Requests waiting for replies at once, all workers together; past it the
#: oldest is forgotten (its requester times out on its own).
MAX_REQUESTS = 10_000
#: How long the hub keeps a request whose timeout it was not told.
_REQUEST_TTL = 60.0


@dataclass(slots=True)
class _Worker:
    node: str
    peer: Peer
    owned: Owned = field(default_factory=Owned)


@dataclass(slots=True)
class _Owed:
    """What one worker still owes a request: its receipt, then replies."""

    receipt: bool = False
    expect: int = 0
    got: int = 0

    @property
    def done(self) -> bool:
        return self.receipt and self.got >= self.expect


@dataclass(slots=True)
class _Request:
    requester: _Worker
    deadline: float
    owed: dict[str, _Owed]


Handler = Callable[[_Worker, dict[str, Any]], Awaitable[None]]


class ClusterHub:
    """The hub of the workers of one machine, in the supervisor::

        hub = ClusterHub("/run/app/cluster.sock")
        await hub.start()
        ...  # workers run realtime.Server(adapter=ClusterAdapter(path))
        await hub.close()

    ``max_frame`` bounds one message (bytes), ``max_queued`` the bytes waiting
    for one worker to read (past it that worker's link is dropped, as if it
    had died, and logged), ``max_sockets`` the live sockets tracked for
    recovery, every worker together.
    """

    def __init__(
        self,
        path: str,
        *,
        max_frame: int = MAX_FRAME,
        max_queued: int = MAX_QUEUED,
        max_sockets: int = 1_000_000,
    ) -> None:
        self.path = path
        self.max_frame = max_frame
        self.max_queued = max_queued
        self.memory = Memory(max_sockets)
        self.workers: dict[str, _Worker] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._peers: set[Peer] = set()
        self._requests: collections.OrderedDict[str, _Request] = collections.OrderedDict()
        self._logs = LogLimiter(_log)
        self._anonymous = itertools.count(1)
        self._handlers: dict[str, Handler] = {
            "bc": self._on_broadcast,
            "se": self._on_server_event,
            "req": self._on_request,
            "rep": self._on_reply,
            "live": self._on_live,
            "gone": self._on_gone,
            "persist": self._on_persist,
            "restore": self._on_restore,
            "check": self._on_check,
            "flush": self._on_flush,
        }

    @property
    def nodes(self) -> list[str]:
        """The workers connected now, by node id."""
        return list(self.workers)

    async def start(self) -> None:
        """Listen on :attr:`path`. A stale socket file there (left by a hub
        that died) is replaced; :class:`OSError` (``EADDRINUSE``) if a hub
        answers there."""
        try:
            _, writer = await asyncio.open_unix_connection(self.path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # nothing listens: stale, or nothing there
        else:
            writer.transport.abort()
            raise OSError(errno.EADDRINUSE, f"a cluster hub listens at {self.path} already")
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def close(self) -> None:
        """Stop listening and drop every worker's link; never waits on a worker."""
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers):
            peer.abort()  # each link's task then ends by itself
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            # The listening socket is closed; wait_closed() would also wait
            # for every handler, which are gone already.
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    # -- one worker's link --------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(
            reader,
            writer,
            name=f"worker #{next(self._anonymous)}",
            max_frame=self.max_frame,
            max_queued=self.max_queued,
        )
        worker: _Worker | None = None
        self._peers.add(peer)
        try:
            hello = await peer.receive()
            if hello.get("t") != "hello" or not isinstance(hello.get("node"), str):
                raise PacketError("a worker must say hello first")
            worker = self._join(peer, hello)
            while True:
                message = await peer.receive()
                handler = self._handlers.get(message["t"])
                if handler is None:
                    raise PacketError(f"unknown message kind {message['t']!r}")
                await handler(worker, message)
        except PeerGone:
            pass
        except (PacketError, ValueError, TypeError, KeyError, AttributeError) as exc:
            _log.warning("dropping the link of %s: %s", peer.name, exc)
            peer.abort()
        finally:
            peer.abort()
            self._peers.discard(peer)
            if worker is not None:
                await self._leave(worker)
            self._tasks.discard(task)

    def _join(self, peer: Peer, hello: dict[str, Any]) -> _Worker:
        node: str = hello["node"]
        worker = _Worker(node, peer)
        old = self.workers.pop(node, None)
        if old is not None:
            # The same worker again, before its old link was seen to close:
            # its sockets are live, they go with it (not saved as orphans).
            old.peer.abort()
            worker.owned, old.owned = old.owned, worker.owned
        rec = hello.get("rec")
        if isinstance(rec, dict):
            self.memory.configure(
                RecoveryOptions(float(rec["window"]), True, int(rec["bytes"]), int(rec["sessions"]))
            )
        peer.name = f"worker {node}"
        self.workers[node] = worker
        _log.info("%s connected (%d workers)", peer.name, len(self.workers))
        return worker

    async def _leave(self, worker: _Worker) -> None:
        if self.workers.get(worker.node) is worker:
            del self.workers[worker.node]
        kept = await self.memory.orphan(worker.owned)
        _log.info(
            "%s disconnected (%d workers left; %d of its sessions kept for recovery)",
            worker.peer.name,
            len(self.workers),
            kept,
        )
        for request_id, request in list(self._requests.items()):
            if request.requester is worker:
                del self._requests[request_id]
                continue
            owed = request.owed.pop(worker.node, None)
            if owed is not None:
                # Answered for it: the receipt (if not sent) and nothing more.
                self._reply_for(request, request_id, owed)

    def _reply_for(self, request: _Request, request_id: str, owed: _Owed) -> None:
        missing = owed.expect - owed.got
        reply = {"t": "rep", "id": request_id, "receipt": not owed.receipt, "expect": -missing}
        request.requester.peer.send(reply)
        if not request.owed:
            self._requests.pop(request_id, None)

    def _others(self, worker: _Worker) -> list[_Worker]:
        return [other for other in self.workers.values() if other is not worker]

    # -- relaying -----------------------------------------------------------------------

    async def _on_broadcast(self, worker: _Worker, message: dict[str, Any]) -> None:
        nsp = str(message["nsp"])
        data = message["data"]
        if not isinstance(data, list):
            raise PacketError("an event's data must be a list")
        out: dict[str, Any] = {"t": "bc", "nsp": nsp, "data": data, "o": message.get("o", {})}
        if message.get("store"):
            stored = self.memory.store(nsp, data, opts_from_wire(out["o"]))
            if stored is not None:
                out["data"] = stored
                out["off"] = stored[-1]
            # Kept or not, the sender has not delivered it: back to it too.
            targets = [worker] if message.get("local") else list(self.workers.values())
        else:
            targets = self._others(worker)
        self._relay(targets, out)

    def _relay(self, targets: list[_Worker], message: dict[str, Any]) -> None:
        """Send ``message`` to ``targets``, encoded once."""
        if not targets:
            return
        frame = frame_of(message, self.max_frame, "workers")
        if frame is not None:
            for target in targets:
                target.peer.send_frame(frame)

    async def _on_server_event(self, worker: _Worker, message: dict[str, Any]) -> None:
        self._relay(self._others(worker), message)

    async def _on_request(self, worker: _Worker, message: dict[str, Any]) -> None:
        request_id = str(message["id"])
        now = time.monotonic()
        self._expire(now)
        targets = self._others(worker)
        timeout = message.get("timeout")
        ttl = float(timeout) + 1.0 if isinstance(timeout, (int, float)) else _REQUEST_TTL
        if targets:
            owed = {target.node: _Owed() for target in targets}
            self._requests[request_id] = _Request(worker, now + ttl, owed)
        worker.peer.send({"t": "sent", "id": request_id, "n": len(targets)})
        self._relay(targets, message)

    def _expire(self, now: float) -> None:
        requests = self._requests
        while requests and (
            len(requests) >= MAX_REQUESTS or next(iter(requests.values())).deadline < now
        ):
            requests.popitem(last=False)

    async def _on_reply(self, worker: _Worker, message: dict[str, Any]) -> None:
        request_id = str(message["id"])
        request = self._requests.get(request_id)
        if request is None:
            return  # too late: its requester gave up (or left)
        owed = request.owed.get(worker.node)
        if owed is None:
            return
        owed.expect += int(message.get("expect", 0))
        if message.get("receipt"):
            owed.receipt = True
        else:
            owed.got += len(message.get("items", ()))
        request.requester.peer.send(message)
        if owed.done:
            del request.owed[worker.node]
            if not request.owed:
                del self._requests[request_id]

    # -- sessions and recovery ---------------------------------------------------------

    async def _on_live(self, worker: _Worker, message: dict[str, Any]) -> None:
        for entry in message["sockets"]:
            self.memory.live(worker.owned, entry)

    async def _on_gone(self, worker: _Worker, message: dict[str, Any]) -> None:
        for nsp, sid in message["sockets"]:
            self.memory.gone(worker.owned, str(nsp), str(sid))

    async def _on_persist(self, worker: _Worker, message: dict[str, Any]) -> None:
        session = from_wire(SavedSession, message["session"])
        await self.memory.persist(worker.owned, session)

    async def _on_restore(self, worker: _Worker, message: dict[str, Any]) -> None:
        offset = message.get("offset")
        restored = await self.memory.restore(
            str(message["nsp"]), str(message["pid"]), offset if isinstance(offset, str) else None
        )
        reply: dict[str, Any] = {"t": "restored", "id": message["id"], "session": None}
        if restored is not None:
            session, missed = restored
            reply["session"] = to_wire(session, skip=("saved_at",))
            reply["missed"] = missed
        if not worker.peer.send(reply) and restored is not None:
            self._logs.log(logging.WARNING, "restore", "a restored session was too large to send")
            worker.peer.send({"t": "restored", "id": message["id"], "session": None})

    async def _on_check(self, worker: _Worker, message: dict[str, Any]) -> None:
        rooms = [str(room) for room in message["rooms"]]
        taken = self.memory.taken(str(message["nsp"]), str(message["sid"]), rooms)
        worker.peer.send({"t": "checked", "id": message["id"], "taken": taken})

    async def _on_flush(self, worker: _Worker, message: dict[str, Any]) -> None:
        worker.peer.send({"t": "flushed", "id": message["id"]})
