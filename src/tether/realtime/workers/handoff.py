"""Handing a connection to the worker process that owns its session.

Every worker of ``tether run --workers N`` accepts connections on the one
listening socket, so a client's requests land on any of them. A session's
sid starts with one character naming its worker (:func:`sid_prefix`); when a
request head names another worker's session, :meth:`Handoff.route` takes the
connection away from this process (:meth:`tether.Connection.detach`) and
sends its socket and the bytes already read to the owner over a Unix datagram
socket (``SCM_RIGHTS``), where :meth:`tether.Server.handle_socket` serves it
on as if it had read them itself. docs/workers.md explains the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...connection import Connection
from ...exceptions import ConnectionClosed
from ...protocol.http import Request
from ...ratelimit import LogLimiter
from ...server import Server

__all__ = ["ALPHABET", "MAX_WORKERS", "Handoff", "set_done", "sid_prefix", "worker_of"]

_log = logging.getLogger("tether.workers")

#: One sid character per worker index (URL-safe base64's alphabet, in order).
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_WORKERS = len(ALPHABET)

#: How long a worker that could not take a connection is skipped: its
#: sessions' requests are answered here meanwhile (400, unknown sid).
_SKIP_FAILED = 1.0


def sid_prefix(index: int) -> str:
    """The one character that starts the sids of worker ``index``."""
    return ALPHABET[index]


def worker_of(request: Request) -> int | None:
    """The worker index the request's ``sid`` names, if it names one."""
    path = request.path
    if "sid=" not in path:  # most requests: no parsing
        return None
    sids = parse_qs(urlsplit(path).query).get("sid")
    if not sids or not sids[-1]:
        return None
    index = ALPHABET.find(sids[-1][0])
    return index if index >= 0 else None


def socket_path(directory: Path, index: int) -> Path:
    """Where worker ``index`` receives connections."""
    return directory / f"worker-{index}.sock"


class Handoff:
    """The connections of one worker going to and coming from the others.

    ``server`` is the worker's :class:`tether.Server` (it adopts what
    arrives); ``directory`` holds one Unix datagram socket per worker.
    """

    def __init__(self, server: Server, index: int, count: int, directory: Path) -> None:
        if not 0 <= index < count <= MAX_WORKERS:
            raise ValueError(f"worker {index} of {count} (at most {MAX_WORKERS})")
        self.server = server
        self.index = index
        self.count = count
        self.directory = directory
        # Each datagram holds one request head and its read-ahead.
        self._size = server.limits.max_header_bytes
        self._inbox: socket.socket | None = None
        self._outboxes: dict[int, socket.socket] = {}
        self._failed: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # While a worker is down, each of its clients' requests fails to go
        # there: one line a minute per worker, with counts.
        self._logs = LogLimiter(_log)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections handed to other workers, and adopted from them.
        self.sent = 0
        self.adopted = 0

    # -- receiving -----------------------------------------------------------

    def start(self) -> None:
        """Bind this worker's socket (replacing a dead predecessor's) and adopt
        what arrives on it."""
        path = socket_path(self.directory, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * (self._size + 4096))
        inbox.bind(str(path))
        inbox.setblocking(False)
        self._inbox = inbox
        asyncio.get_running_loop().add_reader(inbox.fileno(), self._receive)

    def _receive(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(inbox, self._size + 1, 1)
            except (BlockingIOError, InterruptedError):
                return
            if not fds:
                continue
            sock = socket.socket(fileno=fds[0])
            for extra in fds[1:]:
                os.close(extra)
            if len(data) > self._size or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                message = "dropped a handed-over connection: %d bytes"
                self._logs.log(logging.WARNING, "truncated", message, len(data))
                sock.close()
                continue
            self.adopted += 1
            self._spawn(self._adopt(sock, data))

    async def _adopt(self, sock: socket.socket, data: bytes) -> None:
        try:
            await self.server.handle_socket(sock, initial=data)
        except OSError as exc:  # the client left meanwhile
            self._logs.log(logging.INFO, "adopt", "could not adopt a connection: %s", exc)
            sock.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending -------------------------------------------------------------

    def route(self, connection: Connection, request: Request) -> bool | asyncio.Future[bool]:
        """The ``route`` hook of :func:`tether.serve`: True (awaitable) when
        the request names a session of another live worker, which then gets
        the connection; False to serve it here (no sid, ours, or a worker
        that does not exist or failed to take one a moment ago)."""
        index = worker_of(request)
        if index is None or index == self.index or index >= self.count:
            return False
        failed = self._failed.get(index)
        if failed is not None and time.monotonic() - failed < _SKIP_FAILED:
            return False
        return asyncio.ensure_future(self._hand(connection, index))

    async def _hand(self, connection: Connection, index: int) -> bool:
        try:
            sock, data = await connection.detach(self.server.limits.open_timeout)
        except ConnectionClosed:
            return True  # gone: nothing to serve, here or there
        try:
            await self._send(index, sock, data)
        except OSError as exc:
            # Dead or overwhelmed: answer here (400 unknown sid, so that the
            # client starts a new session) rather than leave it hanging.
            message = "worker %d did not take a connection (%s): answered here"
            self._logs.log(logging.WARNING, f"send {index}", message, index, exc)
            self._failed[index] = time.monotonic()
            await self.server.handle_socket(sock, initial=data)
            return True
        sock.close()  # the owner holds it now
        self.sent += 1
        return True

    async def _send(self, index: int, sock: socket.socket, data: bytes) -> None:
        # One send at a time per worker: the kernel queues few datagrams per
        # socket (net.unix.max_dgram_qlen, 10 by default), and the loop has one
        # writer callback per descriptor, so the waiters take turns.
        lock = self._locks.setdefault(index, asyncio.Lock())
        async with lock:
            await self._send_locked(index, sock, data)

    async def _send_locked(self, index: int, sock: socket.socket, data: bytes) -> None:
        for attempt in (1, 2):
            outbox = self._outbox(index)
            try:
                await self._send_once(outbox, sock, data)
                return
            except (ConnectionRefusedError, FileNotFoundError):
                # A worker that was replaced binds a new socket: connect again once.
                self._drop_outbox(index)
                if attempt == 2:
                    raise
            except OSError:
                self._drop_outbox(index)
                raise

    def _outbox(self, index: int) -> socket.socket:
        outbox = self._outboxes.get(index)
        if outbox is None:
            outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            outbox.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * (self._size + 4096))
            outbox.setblocking(False)
            try:
                outbox.connect(str(socket_path(self.directory, index)))
            except OSError:
                outbox.close()
                raise
            self._outboxes[index] = outbox
        return outbox

    def _drop_outbox(self, index: int) -> None:
        outbox = self._outboxes.pop(index, None)
        if outbox is not None:
            outbox.close()

    async def _send_once(self, outbox: socket.socket, sock: socket.socket, data: bytes) -> None:
        """One datagram: the bytes, with the socket's descriptor attached.
        A full queue at the owner is waited out (connected datagram sockets
        poll writable once the peer's queue has room), at most open_timeout."""
        loop = asyncio.get_running_loop()
        deadline = self.server.limits.open_timeout
        while True:
            try:
                socket.send_fds(outbox, [data], [sock.fileno()])
                return
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(outbox.fileno(), set_done, writable)
                try:
                    await asyncio.wait_for(writable, deadline)
                except TimeoutError as exc:
                    raise BlockingIOError("the worker's queue stayed full") from exc
                finally:
                    loop.remove_writer(outbox.fileno())

    def close(self) -> None:
        """Stop receiving; close the sockets."""
        if self._inbox is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._inbox.fileno())
            self._inbox.close()
            self._inbox = None
        for index in list(self._outboxes):
            self._drop_outbox(index)


def set_done(future: asyncio.Future[None]) -> None:
    """Complete ``future`` unless it is already (a reader's or writer's callback)."""
    if not future.done():
        future.set_result(None)
