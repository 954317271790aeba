"""What the hub remembers for connection state recovery: the sockets of
every worker, the sessions of those that left, and the events they may have
missed. No I/O.

It is an in-memory :class:`~tether.realtime.Adapter` with no sockets of its
own, driven by what the workers report: the same offsets, room marks, bounds
(in time, bytes and count, from the workers' :class:`RecoveryOptions`) and
replay rules as one process has, applied to all of them.

The hub gives out the offsets: every stored event passes through it, so one
counter orders them all, without clocks, and a worker delivers events in
that order (it gets its own stored events back from the hub too). A hub that
restarts starts a new epoch: offsets it gave out before are unknown to it
and their clients reconnect as new sockets, as after
``max_disconnection_duration``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ...protocol import socketio
from ..base import Adapter, BroadcastOptions, RecoveryOptions, SavedSession
from .wire import from_wire, to_wire

__all__ = ["Memory", "Owned", "opts_from_wire", "opts_to_wire"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

Key = tuple[str, str]  # (namespace, sid)


def opts_to_wire(opts: BroadcastOptions) -> dict[str, Any]:
    """A selection as JSON (``local`` stays on its node)."""
    return to_wire(opts, skip=("local",))


def opts_from_wire(wire: dict[str, Any]) -> BroadcastOptions:
    return from_wire(BroadcastOptions, wire)


class _Log(Adapter):
    """The in-memory adapter, with what the hub reads of it besides."""

    @property
    def seq(self) -> int:
        """The number of the newest offset given out."""
        return self._seq

    def unsave(self, pid: str) -> None:
        """Forget the saved session of ``pid``, if any."""
        kept = self._sessions.pop(pid, None)
        if kept is not None:
            self._forget(kept)


@dataclass(slots=True)
class Owned:
    """The live sockets one worker reported: (nsp, sid) -> (pid, data)."""

    sockets: dict[Key, tuple[str | None, dict[str, Any]]] = field(default_factory=dict)


class Memory:
    """The hub's recovery state, for every worker."""

    def __init__(self, max_sockets: int) -> None:
        self.inner = _Log()
        self.max_sockets = max_sockets
        self.count = 0  # live sockets tracked, every worker together

    def configure(self, recovery: RecoveryOptions | None) -> None:
        """The workers' recovery options (they run one application: the
        latest hello wins)."""
        self.inner.recovery = recovery

    @property
    def recovering(self) -> bool:
        return self.inner.recovery is not None

    def store(self, nsp: str, data: list[Any], opts: BroadcastOptions) -> list[Any] | None:
        """Keep an event and return its data with its new offset appended, or
        None (recovery off, or not an event that is kept)."""
        if not self.recovering:
            return None
        packet = socketio.Packet.event(*data, namespace=nsp)
        stored = self.inner.store(nsp, packet, opts)
        return None if stored is packet else list(stored.data)

    @property
    def last_offset(self) -> str | None:
        return self.inner.last_offset

    def live(self, owned: Owned, entry: dict[str, Any]) -> None:
        """A worker's socket connected or changed rooms (or data)."""
        nsp, sid = str(entry["nsp"]), str(entry["sid"])
        rooms = {str(room) for room in entry.get("rooms", ())} - {sid}
        pid = entry.get("pid")
        key = (nsp, sid)
        registry = self.inner.registry(nsp)
        if key not in owned.sockets:
            if self.count >= self.max_sockets:
                _log.warning("tracking %d sockets already: %s is not tracked", self.count, sid)
                return
            self.count += 1
        owned.sockets[key] = (pid if isinstance(pid, str) else None, dict(entry.get("data") or {}))
        if sid not in registry:
            registry.add(sid, self.inner.seq)
            if isinstance(pid, str):
                # Live again after its worker lost the hub for a moment (the
                # hub saved its sockets then): restoring it elsewhere would
                # make two sockets of one.
                self.inner.unsave(pid)
        have = set(registry.rooms_of(sid)) - {sid}
        for room in have - rooms:
            registry.leave(sid, room)
        registry.join(sid, *sorted(rooms - have), mark=self.inner.seq)

    def gone(self, owned: Owned, nsp: str, sid: str) -> None:
        """A worker's socket left for good."""
        if owned.sockets.pop((nsp, sid), None) is not None:
            self.count -= 1
        self.inner.lookup(nsp).remove(sid)
        self.inner.remove_namespace(nsp)

    async def persist(self, owned: Owned, session: SavedSession) -> None:
        """A worker's socket left and may come back: keep its session (with
        where it started listening, if it was seen live)."""
        if owned.sockets.pop((session.namespace, session.sid), None) is not None:
            self.count -= 1
        self.inner.delete_all(session.namespace, session.sid)
        self.inner.remove_namespace(session.namespace)
        await self.inner.persist_session(session)

    async def orphan(self, owned: Owned) -> int:
        """A worker died: its sockets count as disconnected now, each kept for
        recovery as if its worker had persisted it. The number kept."""
        kept = 0
        for (nsp, sid), (pid, data) in list(owned.sockets.items()):
            rooms = [room for room in self.inner.rooms_of(nsp, sid) if room != sid]
            if pid is not None and self.recovering:
                await self.persist(owned, SavedSession(sid, pid, nsp, rooms, data, None))
                kept += 1
            else:
                self.gone(owned, nsp, sid)
        owned.sockets.clear()
        return kept

    def taken(self, nsp: str, sid: str, rooms: list[str]) -> str | None:
        """The first of ``rooms`` that is another socket's sid, on any worker."""
        for room in rooms:
            try:
                self.inner.check_rooms(nsp, sid, [room])
            except ValueError:
                return room
        return None

    async def restore(
        self, nsp: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        return await self.inner.restore_session(nsp, pid, offset)
