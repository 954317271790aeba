"""What a node writes to Redis about its sockets: sessions and presence.

One task writes, in order, in batches (one pipeline per batch): the sessions
of live sockets (at connect, on join/leave, and every heartbeat to refresh
their TTL), the sessions kept after a recoverable disconnection, the sessions
forgotten after any other disconnection, and the presence entries of
:mod:`.presence`. A failed batch is put back and written again on the next
heartbeat or reconnection.

:meth:`Store.settle` waits until what was touched so far is written:
``RedisAdapter.flush`` (so ``await socket.join(room)``) awaits it, so presence
read on any node right after a join shows the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..base import SavedSession
from ..interface import LocalSocket
from . import scripts
from .presence import Change, Presence
from .publisher import Keys
from .stats import RedisStats
from .subscriber import wait_for_answer

__all__ = ["Owner", "Store"]

_log = logging.getLogger("tether.realtime.adapters.redis")

_FAILURES = (RedisError, OSError)

Key = tuple[str, str]  # (namespace, sid)


@dataclass(frozen=True, slots=True)
class _Written:
    """What presence in Redis says about one local socket."""

    rooms: frozenset[str] = frozenset()
    user: str | None = None


_NOTHING = _Written()


class Owner(Protocol):
    """What the store needs of its adapter (a :class:`~.adapter.RedisAdapter`):
    named here, below the adapter, so neither module imports the other's."""

    @property
    def client(self) -> aioredis.Redis: ...
    @property
    def keys(self) -> Keys: ...
    @property
    def node(self) -> str: ...
    @property
    def heartbeat(self) -> float: ...
    @property
    def user_key(self) -> str: ...
    @property
    def stats(self) -> RedisStats: ...
    @property
    def presence(self) -> Presence | None: ...
    @property
    def window_ms(self) -> int: ...

    def rooms_of(self, namespace: str, sid: str) -> set[str]: ...
    def local_socket(self, namespace: str, sid: str) -> LocalSocket | None: ...
    def run_in_order(self, awaitable: Any) -> None: ...


class Store:
    """The writer of one :class:`~tether.realtime.adapters.redis.RedisAdapter`."""

    def __init__(self, adapter: Owner) -> None:
        self.adapter = adapter
        self._save = adapter.client.register_script(scripts.SAVE_SESSION)
        self._heartbeat = adapter.client.register_script(scripts.HEARTBEAT)
        self._dirty: dict[Key, None] = {}
        self._written: dict[Key, _Written] = {}
        self._persist: list[SavedSession] = []
        self._persisting: set[str] = set()
        self._forget: list[str] = []
        self._resync = False
        self._wake = asyncio.Event()
        # Every touch bumps the version; a batch, once written, marks the
        # version it started from as written (batches run one at a time).
        self._version = 0
        self._written_version = 0
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._lock = asyncio.Lock()

    # -- what the adapter tells it ------------------------------------------------------

    def touch(self, key: Key) -> None:
        """A socket connected, left, or changed rooms."""
        self._dirty[key] = None
        self._version += 1
        self._wake.set()

    def touch_all(self, keys: list[Key], *, resync: bool = False) -> None:
        """Write every socket again (TTL refresh; ``resync``: Redis may have lost it all)."""
        for key in keys:
            self._dirty[key] = None
        self._resync = self._resync or resync
        self._version += 1
        self._wake.set()

    def persist(self, session: SavedSession) -> None:
        """Keep a session after a recoverable disconnection."""
        self._persisting.add(session.pid)
        self._persist.append(session)
        self._wake.set()

    def departed(self, pid: str) -> None:
        """A socket left; forget its session unless it is being kept."""
        if pid in self._persisting:
            self._persisting.discard(pid)
        else:
            self._forget.append(pid)
            self._wake.set()

    async def settle(self, timeout: float) -> bool:
        """Wait until every socket touched so far is written to Redis; False
        on timeout or when a write fails (it is retried later: callers carry on)."""
        target = self._version
        if self._written_version >= target:
            return True
        return await wait_for_answer(self._waiters, target, timeout)

    def _release(self, ok: bool) -> None:
        """Answer the waiters the last batch settles: those it covered, or all
        of them when it failed."""
        for target, future in self._waiters:
            if not future.done() and (not ok or target <= self._written_version):
                future.set_result(ok)

    # -- writing --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.write_all()
            except _FAILURES as exc:
                self.adapter.stats.write_failures += 1
                _log.warning("could not save sessions/presence to redis: %s", exc)
                self._resync = True
                # The next heartbeat or reconnection wakes it up again.

    async def write_all(self) -> None:
        # One batch at a time (the writer task and ``close``): a batch that
        # finds nothing to write then knows every earlier touch is written.
        async with self._lock:
            version = self._version
            try:
                await self._write_batch()
            except _FAILURES:
                self._release(False)
                raise
            self._written_version = max(self._written_version, version)
            self._release(True)

    async def _write_batch(self) -> None:
        dirty, self._dirty = list(self._dirty), {}
        persist, self._persist = self._persist, []
        forget, self._forget = self._forget, []
        resync, self._resync = self._resync, False
        if not (dirty or persist or forget):
            return
        adapter = self.adapter
        presence = adapter.presence
        changes: list[Change] = []
        states: dict[Key, _Written] = {}
        try:
            async with adapter.client.pipeline(transaction=False) as pipe:
                for key in dirty:
                    socket = adapter.local_socket(*key)
                    if socket is not None and not socket.connected:
                        socket = None
                    if presence is not None:
                        state = self._state(key, socket)
                        changes += self._presence_changes(key, state, resync)
                        states[key] = state
                    if socket is not None:
                        await self._save_live(pipe, socket)
                for saved in persist:
                    await self._save_kept(pipe, saved)
                for pid in forget:
                    pipe.delete(adapter.keys.session(pid))
                for change in changes:
                    assert presence is not None
                    await presence.queue(pipe, change)
                results = await pipe.execute()
        except _FAILURES:
            for key in dirty:
                self._dirty[key] = None
            self._persist = persist + self._persist
            self._forget = forget + self._forget
            self._resync = self._resync or resync
            raise
        for key, state in states.items():
            if state == _NOTHING:
                self._written.pop(key, None)
            else:
                self._written[key] = state
        if changes:
            assert presence is not None
            for change, result in zip(changes, results[-len(changes) :], strict=True):
                presence.settle(change, result, adapter.run_in_order)

    async def _save_live(self, pipe: Any, socket: Any) -> None:
        adapter = self.adapter
        window = adapter.window_ms
        if socket.pid is None or not window:
            return
        rooms = [r for r in adapter.rooms_of(socket.nsp, socket.sid) if r != socket.sid]
        session = {"sid": socket.sid, "pid": socket.pid, "nsp": socket.nsp, "rooms": rooms}
        try:
            text = json.dumps({**session, "data": socket.data})
        except (TypeError, ValueError):
            _log.warning("socket.data of %r is not JSON-able: not saved for recovery", socket)
            text = json.dumps({**session, "data": {}})
        # Live sockets' sessions outlive a missed refresh or two.
        ttl = window + int(2 * adapter.heartbeat * 1000)
        await self._save_session(pipe, socket.pid, socket.nsp, socket.sid, text, ttl, rooms)

    async def _save_kept(self, pipe: Any, saved: SavedSession) -> None:
        adapter = self.adapter
        session = dataclasses.asdict(saved)
        session = {k: session[k] for k in ("sid", "pid", "rooms", "data")}
        session["nsp"] = saved.namespace
        text = json.dumps(session, default=repr)
        await self._save_session(
            pipe, saved.pid, saved.namespace, saved.sid, text, adapter.window_ms, saved.rooms
        )

    async def _save_session(
        self, pipe: Any, pid: str, nsp: str, sid: str, text: str, ttl: int, rooms: list[str]
    ) -> None:
        keys = self.adapter.keys
        await self._save(
            keys=[keys.session(pid), keys.stream, keys.sid(nsp, sid)],
            args=[text, ttl, json.dumps(rooms)],
            client=pipe,
        )

    # -- presence --------------------------------------------------------------------------

    def _state(self, key: Key, socket: Any) -> _Written:
        if socket is None:
            return _NOTHING
        nsp, sid = key
        rooms = frozenset(r for r in self.adapter.rooms_of(nsp, sid) if r != sid)
        data = socket.data
        user = data.get(self.adapter.user_key) if isinstance(data, dict) else None
        return _Written(rooms, None if user is None else str(user))

    def _presence_changes(self, key: Key, want: _Written, resync: bool) -> list[Change]:
        """The writes from what Redis has to what it should have; after a
        resync everything wanted is written again (idempotent: no event
        unless Redis had lost it)."""
        presence = self.adapter.presence
        assert presence is not None
        have = self._written.get(key, _NOTHING)
        base = _NOTHING if resync else have
        nsp, sid = key
        changes = [
            presence.change(False, sid, nsp, room=room, member_user=have.user)
            for room in sorted(have.rooms - want.rooms)
        ]
        if have.user is not None and have.user != want.user:
            changes.append(presence.change(False, sid, nsp, user=have.user))
        if want.user is not None and want.user != base.user:
            changes.append(presence.change(True, sid, nsp, user=want.user))
        # A new user rewrites the room entries too: they name the user.
        rooms = want.rooms if want.user != have.user else want.rooms - base.rooms
        changes += [
            presence.change(True, sid, nsp, room=room, member_user=want.user)
            for room in sorted(rooms)
        ]
        return changes

    # -- heartbeat ------------------------------------------------------------------------

    async def beat(self, local_keys: Callable[[], list[Key]]) -> None:
        """Every ``heartbeat`` seconds: say this node is alive, reap the nodes
        that stopped saying so, and refresh the sessions (and presence) of the
        sockets ``local_keys()`` names."""
        adapter = self.adapter
        ttl = int(3 * adapter.heartbeat * 1000)
        while True:
            try:
                dead = await self._heartbeat(keys=[adapter.keys.nodes], args=[adapter.node, ttl])
                if adapter.window_ms:
                    await adapter.client.set(adapter.keys.recovery, adapter.window_ms)
                for node in dead:
                    name = node.decode() if isinstance(node, bytes) else str(node)
                    if name != adapter.node and adapter.presence is not None:
                        await adapter.presence.reap(name, adapter.run_in_order)
                # Refresh the TTL (and data) of the sessions of live sockets.
                if adapter.window_ms or adapter.presence is not None:
                    self.touch_all(local_keys())
            except _FAILURES as exc:
                _log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(adapter.heartbeat)
