"""The hub: the one process every worker's :class:`~.adapter.ClusterAdapter`
connects to, over a Unix-domain socket. It relays what concerns other
workers and keeps what connection state recovery needs (:mod:`.memory`).

The messages are those of :mod:`.messages`, framed by :mod:`.wire`.

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
from . import messages as msg
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


Handler = Callable[[_Worker, Any], Awaitable[None]]


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
        self._handlers: dict[type[msg.Message], Handler] = {
            msg.Broadcast: self._on_broadcast,
            msg.ServerEvent: self._on_server_event,
            msg.AckRequest: self._on_request,
            msg.FetchRequest: self._on_request,
            msg.RoomsRequest: self._on_request,
            msg.DisconnectRequest: self._on_request,
            msg.DataRequest: self._on_request,
            msg.Reply: self._on_reply,
            msg.Live: self._on_live,
            msg.Gone: self._on_gone,
            msg.Persist: self._on_persist,
            msg.Restore: self._on_restore,
            msg.Check: self._on_check,
            msg.Flush: self._on_flush,
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
            if not isinstance(hello, msg.Hello):
                raise PacketError("a worker must say hello first")
            worker = self._join(peer, hello)
            while True:
                message = await peer.receive()
                handler = self._handlers.get(type(message))
                if handler is None:
                    raise PacketError(f"a worker may not send {message.kind!r}")
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

    def _join(self, peer: Peer, hello: msg.Hello) -> _Worker:
        node = hello.node
        worker = _Worker(node, peer)
        old = self.workers.pop(node, None)
        if old is not None:
            # The same worker again, before its old link was seen to close:
            # its sockets are live, they go with it (not saved as orphans).
            old.peer.abort()
            worker.owned, old.owned = old.owned, worker.owned
        rec = hello.rec
        if rec is not None:
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
        request.requester.peer.send(msg.Reply(request_id, not owed.receipt, -missing))
        if not request.owed:
            self._requests.pop(request_id, None)

    def _others(self, worker: _Worker) -> list[_Worker]:
        return [other for other in self.workers.values() if other is not worker]

    # -- relaying -----------------------------------------------------------------------

    async def _on_broadcast(self, worker: _Worker, message: msg.Broadcast) -> None:
        if not message.store:
            self._relay(self._others(worker), msg.Broadcast(message.nsp, message.data, message.o))
            return
        data = message.data
        stored = self.memory.store(message.nsp, data, opts_from_wire(message.o))
        offset = None
        if stored is not None:
            data, offset = stored, stored[-1]
        # Kept or not, the sender has not delivered it: back to it too.
        targets = [worker] if message.local else list(self.workers.values())
        self._relay(targets, msg.Broadcast(message.nsp, data, message.o, off=offset))

    def _relay(self, targets: list[_Worker], message: msg.Message) -> None:
        """Send ``message`` to ``targets``, encoded once."""
        if not targets:
            return
        frame = frame_of(message, self.max_frame, "workers")
        if frame is not None:
            for target in targets:
                target.peer.send_frame(frame)

    async def _on_server_event(self, worker: _Worker, message: msg.ServerEvent) -> None:
        self._relay(self._others(worker), message)

    async def _on_request(self, worker: _Worker, message: msg.Request) -> None:
        now = time.monotonic()
        self._expire(now)
        targets = self._others(worker)
        if targets:
            owed = {target.node: _Owed() for target in targets}
            deadline = now + min(max(message.timeout, 0.0), _REQUEST_TTL) + 1.0
            self._requests[message.id] = _Request(worker, deadline, owed)
        worker.peer.send(msg.Sent(message.id, len(targets)))
        self._relay(targets, message)

    def _expire(self, now: float) -> None:
        requests = self._requests
        while requests and (
            len(requests) >= MAX_REQUESTS or next(iter(requests.values())).deadline < now
        ):
            requests.popitem(last=False)

    async def _on_reply(self, worker: _Worker, message: msg.Reply) -> None:
        request = self._requests.get(message.id)
        if request is None:
            return  # too late: its requester gave up (or left)
        owed = request.owed.get(worker.node)
        if owed is None:
            return
        owed.expect += message.expect
        if message.receipt:
            owed.receipt = True
        else:
            owed.got += len(message.items)
        request.requester.peer.send(message)
        if owed.done:
            del request.owed[worker.node]
            if not request.owed:
                del self._requests[message.id]

    # -- sessions and recovery ---------------------------------------------------------

    async def _on_live(self, worker: _Worker, message: msg.Live) -> None:
        for entry in message.sockets:
            self.memory.live(worker.owned, entry)

    async def _on_gone(self, worker: _Worker, message: msg.Gone) -> None:
        for nsp, sid in message.sockets:
            self.memory.gone(worker.owned, str(nsp), str(sid))

    async def _on_persist(self, worker: _Worker, message: msg.Persist) -> None:
        session = from_wire(SavedSession, message.session)
        await self.memory.persist(worker.owned, session)

    async def _on_restore(self, worker: _Worker, message: msg.Restore) -> None:
        restored = await self.memory.restore(message.nsp, message.pid, message.offset)
        if restored is None:
            worker.peer.send(msg.Restored(message.id))
            return
        session, missed = restored
        reply = msg.Restored(message.id, to_wire(session, skip=("saved_at",)), missed)
        if not worker.peer.send(reply):
            self._logs.log(logging.WARNING, "restore", "a restored session was too large to send")
            worker.peer.send(msg.Restored(message.id))

    async def _on_check(self, worker: _Worker, message: msg.Check) -> None:
        taken = self.memory.taken(message.nsp, message.sid, message.rooms)
        worker.peer.send(msg.Checked(message.id, taken))

    async def _on_flush(self, worker: _Worker, message: msg.Flush) -> None:
        worker.peer.send(msg.Flushed(message.id))
