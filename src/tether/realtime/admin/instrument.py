"""The server half of the Socket.IO Admin UI, on the observer seam.

:func:`instrument` gives a :class:`~tether.realtime.Server` the admin
namespace that the official ``@socket.io/admin-ui`` dashboard connects to:
the credentials check on connect, the ``config`` event, ``server_stats``
every ``stats_interval`` seconds, and in development mode every socket
(``all_sockets``) and what happens to them (``socket_connected``,
``room_joined``, ``event_received``...), told to the UI as it happens by an
:class:`~tether.realtime.server.observe.Observer`. The UI's actions
(``emit``, ``join``, ``leave``, ``_disconnect``) become broadcasts and
``sockets_join``/``sockets_leave``/``disconnect_sockets`` calls.

Across nodes (a distributed adapter, every node instrumented alike), each
node emits its own stats and events to the admin namespace, which the adapter
carries to the UI wherever it is connected; ``all_sockets`` and the actions go
through ``fetch_sockets`` and the other selections, which reach every node.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket as _host
import time
from typing import TYPE_CHECKING, Any, Literal

from ...exceptions import ConnectionRefused
from ..adapters.base import Adapter
from ..server.observe import Observer
from ..server.server import Server  # at run time: the API reference resolves it
from .auth import Sessions, make_auth
from .wire import ACTIONS, ADMIN_KEY, EventBuffer, Feature, serialize, timestamp

if TYPE_CHECKING:
    from ..adapters.base import BroadcastOptions
    from ..server.namespace import Namespace
    from ..server.observe import Session, Socket
    from ..server.sockets import BroadcastOperator
    from ..server.sockets import Socket as ServerSocket

__all__ = ["AdminUI", "instrument"]

Mode = Literal["development", "production"]

# Messages for the UI waiting to be emitted: past this many, new ones are
# dropped (and counted) until the UI's namespace catches up.
MAX_OUTBOX = 10_000


def instrument(
    server: Server,
    *,
    auth: Any = None,
    mode: Mode = "development",
    namespace: str = "/admin",
    readonly: bool = False,
    server_id: str | None = None,
    stats_interval: float = 2.0,
) -> AdminUI:
    """Let the official Socket.IO Admin UI watch and act on ``server``.

    ``auth`` is required: a :class:`~.auth.BasicAuth` (or a ``(username,
    password)`` pair, or the Node server's dict), a ``check(username,
    password)`` function (may be async), or ``False`` to let anyone in.
    ``mode="production"`` sends only the server stats (no socket list, no
    per-event messages: cheaper); ``readonly`` refuses every action.
    ``server_id`` names this node in the UI (default ``hostname#pid``).
    Call it on every node of a deployment, alike::

        from tether.realtime.admin import instrument

        instrument(server, auth=("admin", os.environ["ADMIN_PASSWORD"]))
    """
    if mode not in ("development", "production"):
        raise ValueError(f"mode must be 'development' or 'production', not {mode!r}")
    return AdminUI(
        server,
        auth=auth,
        development=mode == "development",
        namespace=namespace,
        readonly=readonly,
        server_id=server_id,
        stats_interval=stats_interval,
    )


class AdminUI(Observer):
    """What :func:`instrument` installs: the admin namespace's handlers and the
    observer that reports to it. :meth:`close` uninstalls the observer."""

    def __init__(
        self,
        server: Server,
        *,
        auth: Any,
        development: bool,
        namespace: str,
        readonly: bool,
        server_id: str | None,
        stats_interval: float,
    ) -> None:
        self.server = server
        self._auth = make_auth(auth)
        self.sessions = Sessions()
        self.development = development
        self.readonly = readonly
        self.server_id = server_id or f"{_host.gethostname()}#{os.getpid()}"
        self.stats_interval = stats_interval
        self.features = [] if readonly else [f.value for f in ACTIONS]
        self.features.append(Feature.AGGREGATED_EVENTS.value)
        if development:
            self.features.append(Feature.ALL_EVENTS.value)
        self.events = EventBuffer()
        #: Messages for the UI dropped because too many waited (see MAX_OUTBOX).
        self.dropped = 0
        self._outbox: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._sending: asyncio.Task[None] | None = None
        self._stats: asyncio.Task[None] | None = None
        self._since = time.monotonic()
        self._logged_in: dict[str, str] = {}  # admin sid -> its new session id
        # (namespace, sid) -> the data the UI was last told of, per local socket.
        self._told: dict[tuple[str, str], dict[str, Any]] = {}
        self.namespace: Namespace = server.of(namespace)
        # With the in-memory adapter only this process's UIs can listen: the
        # live events are not even built while none is connected.
        self._alone = type(server.adapter) is Adapter
        self.name = self.namespace.name
        self.namespace.use(self._authenticate)
        self.namespace.on("connect", self._connected)
        if not readonly:
            self.namespace.on("emit", self._emit)
            self.namespace.on("join", self._join)
            self.namespace.on("leave", self._leave)
            self.namespace.on("_disconnect", self._disconnect)
        server.observe(self)

    def close(self) -> None:
        """Stop reporting (the admin namespace stays, its handlers too)."""
        self.server.unobserve(self)
        self.server_stopping()

    # -- the admin namespace ------------------------------------------------------------

    async def _authenticate(self, socket: ServerSocket, auth: dict[str, Any]) -> None:
        if not self._auth.enabled or self.sessions.valid(auth.get("sessionId")):
            return
        if await self._auth.accepts(auth):
            self._logged_in[socket.sid] = self.sessions.new()
            return
        self.server.logger.info("Admin UI: invalid credentials from %s", socket.handshake.address)
        raise ConnectionRefused("invalid credentials")

    async def _connected(self, socket: ServerSocket) -> None:
        session_id = self._logged_in.pop(socket.sid, None)
        if session_id is not None:
            await socket.emit("session", session_id)
        await socket.emit("config", {"supportedFeatures": self.features})
        await socket.emit("server_stats", self._stats_now(aggregated=False))
        if self.development:
            await socket.emit("all_sockets", await self._all_sockets())

    async def _all_sockets(self) -> list[dict[str, Any]]:
        found = []
        for namespace in list(self.server.namespaces.values()):
            found += [serialize(info) for info in await namespace.fetch_sockets()]
        return found

    def _select(self, nsp: Any, filter_: Any) -> BroadcastOperator | None:
        """The sockets of namespace ``nsp`` (existing on this node), in room
        (or with sid) ``filter_`` if one is given."""
        namespace = self.server.namespaces.get(nsp) if isinstance(nsp, str) else None
        if namespace is None:
            return None
        if isinstance(filter_, str) and filter_:
            return namespace.to(filter_)
        return namespace.except_(())

    async def _emit(
        self, socket: ServerSocket, nsp: Any, filter_: Any, event: Any, *args: Any
    ) -> None:
        selection = self._select(nsp, filter_)
        if selection is not None and isinstance(event, str):
            await selection.emit(event, *args)

    async def _join(self, socket: ServerSocket, nsp: Any, room: Any, filter_: Any = None) -> None:
        selection = self._select(nsp, filter_)
        if selection is not None and isinstance(room, str):
            await selection.sockets_join(room)

    async def _leave(self, socket: ServerSocket, nsp: Any, room: Any, filter_: Any = None) -> None:
        selection = self._select(nsp, filter_)
        if selection is not None and isinstance(room, str):
            await selection.sockets_leave(room)

    async def _disconnect(
        self, socket: ServerSocket, nsp: Any, close: Any = False, filter_: Any = None
    ) -> None:
        selection = self._select(nsp, filter_)
        if selection is not None:
            await selection.disconnect_sockets(close is True)

    # -- sending to the UI ---------------------------------------------------------------

    def _live(self) -> bool:
        """Whether the per-socket events are wanted now: development mode, and
        a UI may be connected (on this node, or on another one)."""
        return self.development and (not self._alone or bool(self.namespace.sockets))

    def _send(self, event: str, *args: Any) -> None:
        """Emit ``event`` to the admin namespace (every node's UIs), in order,
        from a task: hooks are synchronous."""
        if len(self._outbox) >= MAX_OUTBOX:
            self.dropped += 1
            return
        self._outbox.append((event, args))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._outbox:
                event, args = self._outbox.popleft()
                try:
                    await self.namespace.emit(event, *args)
                except Exception:
                    self.server.runner.limiter.exception(
                        "admin emit", "Admin UI: emitting %s failed", event
                    )
        finally:
            self._sending = None

    def _stats_now(self, *, aggregated: bool = True) -> dict[str, Any]:
        server = self.server
        sessions = list(server.engine.sessions.values())
        stats: dict[str, Any] = {
            "serverId": self.server_id,
            "hostname": _host.gethostname(),
            "pid": os.getpid(),
            "uptime": time.monotonic() - self._since,
            "clientsCount": len(sessions),
            "pollingClientsCount": sum(s.transport == "polling" for s in sessions),
            "namespaces": [
                {"name": name, "socketsCount": len(namespace.sockets)}
                for name, namespace in list(server.namespaces.items())
            ],
        }
        if aggregated:
            stats["aggregatedEvents"] = self.events.take()
        return stats

    async def _report(self) -> None:
        while True:
            if self._live():
                self._check_updates()
            self._send("server_stats", self._stats_now())
            await asyncio.sleep(self.stats_interval)

    def _check_updates(self) -> None:
        """Tell the UI about the sockets whose session upgraded, or whose
        ``data`` changed, since the last report (no hook reports either: the
        Node server wraps ``socket.data`` in a Proxy; each report looks)."""
        for namespace in list(self.server.namespaces.values()):
            for sid, socket in list(namespace.sockets.items()):
                admin = socket.data.get(ADMIN_KEY)
                if not isinstance(admin, dict):
                    continue  # connected before instrument(), or data replaced
                update: dict[str, Any] = {}
                transport = socket.session.transport
                if admin.get("transport") != transport:
                    admin["transport"] = update["transport"] = transport
                data = {k: v for k, v in socket.data.items() if k != ADMIN_KEY}
                key = (namespace.name, sid)
                if key in self._told and self._told[key] != data:
                    self._told[key] = update["data"] = data
                if update:
                    self._send("socket_updated", {"id": sid, "nsp": namespace.name, **update})

    # -- hooks ------------------------------------------------------------------------

    def server_started(self) -> None:
        if self._stats is None:
            self._since = time.monotonic()
            self._stats = asyncio.get_running_loop().create_task(self._report())

    def server_stopping(self) -> None:
        # What was not sent yet is dropped: the UIs are being disconnected.
        for task in (self._stats, self._sending):
            if task is not None:
                task.cancel()
        self._stats = self._sending = None
        self._outbox.clear()

    def session_opened(self, session: Session) -> None:
        self.events.push("rawConnection")

    def session_closed(self, session: Session, reason: str) -> None:
        self.events.push("rawDisconnection", reason)

    def message_received(self, session: Session, size: int) -> None:
        self.events.push("packetsIn")
        self.events.push("bytesIn", count=size)

    def messages_sent(self, count: int, size: int) -> None:
        self.events.push("packetsOut", count=count)
        self.events.push("bytesOut", count=count * size)

    def socket_connected(self, socket: Socket, recovered: bool) -> None:
        if not self.development:
            return
        session = socket.conn
        self._told[socket.nsp, socket.sid] = dict(socket.data)  # to see changes
        socket.data[ADMIN_KEY] = {"clientId": session.sid[:12], "transport": session.transport}
        if not self._live():
            return
        for info in self.server.local_sockets.socket_infos(socket.nsp, [socket.sid]):
            self._send("socket_connected", serialize(info), timestamp())

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        self._told.pop((socket.nsp, socket.sid), None)
        if self._live():
            self._send("socket_disconnected", socket.nsp, socket.sid, reason, timestamp())

    def room_joined(self, nsp: str, room: str, sid: str) -> None:
        if self._live():
            self._send("room_joined", nsp, room, sid, timestamp())

    def room_left(self, nsp: str, room: str, sid: str) -> None:
        if self._live():
            self._send("room_left", nsp, room, sid, timestamp())

    def event_received(self, socket: Socket, event: str, args: Any) -> None:
        if socket.nsp != self.name and self._live():
            self._send("event_received", socket.nsp, socket.sid, [event, *args], timestamp())

    def event_sent(
        self,
        nsp: str,
        event: str,
        args: Any,
        *,
        sid: str | None = None,
        opts: BroadcastOptions | None = None,
    ) -> None:
        # As the Node server: what is emitted to one socket (a broadcast is
        # not listed per socket).
        if sid is not None and nsp != self.name and self._live():
            self._send("event_sent", nsp, sid, [event, *args], timestamp())
