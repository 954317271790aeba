"""Which sockets are in which rooms: a plain data structure, no I/O.

The in-memory adapter uses it directly and the Redis adapter keeps one per
node for its local sockets, so the selection rules below are written once.

Socket.IO semantics: every socket is in the room named by its own id (so
"emit to a sid" and "emit to a room" are the same operation); a broadcast
goes to the union of the rooms named (every socket when none is named),
minus the members of the excluded rooms and the excluded sockets.
Insertion-ordered dicts stand in for sets, so targets come out in the order
sockets joined: deterministic, which keeps broadcasts and tests repeatable.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RoomRegistry"]


class RoomRegistry:
    """Rooms of one namespace: room name -> socket ids, and socket id -> room names."""

    __slots__ = ("_rooms", "_sockets")

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, None]] = {}
        self._sockets: dict[str, dict[str, None]] = {}

    def add(self, sid: str) -> None:
        """Register a socket; it joins the room named by its own id."""
        if sid not in self._sockets:
            self._sockets[sid] = {}
            self.join(sid, sid)

    def remove(self, sid: str) -> list[str]:
        """Forget a socket (it disconnected); return the rooms it was in."""
        rooms = self._sockets.pop(sid, None)
        if rooms is None:
            return []
        for room in rooms:
            self._discard(room, sid)
        return list(rooms)

    def join(self, sid: str, *rooms: str) -> None:
        """Add a registered socket to rooms; joining twice is harmless."""
        mine = self._sockets[sid]  # KeyError for an unknown socket: a caller bug
        for room in rooms:
            mine[room] = None
            self._rooms.setdefault(room, {})[sid] = None

    def leave(self, sid: str, *rooms: str) -> None:
        """Take a socket out of rooms; leaving a room it is not in is harmless."""
        mine = self._sockets.get(sid)
        if mine is None:
            return
        for room in rooms:
            if mine.pop(room, 0) is None:
                self._discard(room, sid)

    def _discard(self, room: str, sid: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(sid, None)
            if not members:
                del self._rooms[room]  # empty rooms do not linger

    def __contains__(self, sid: object) -> bool:
        return sid in self._sockets

    def __len__(self) -> int:
        return len(self._sockets)

    def rooms_of(self, sid: str) -> list[str]:
        """The rooms a socket is in, in the order it joined them."""
        return list(self._sockets.get(sid, ()))

    def members(self, room: str) -> list[str]:
        """The sockets in a room, in the order they joined it."""
        return list(self._rooms.get(room, ()))

    def rooms(self) -> list[str]:
        """Every room with at least one member (sockets' own rooms included)."""
        return list(self._rooms)

    def select(
        self,
        rooms: Iterable[str] = (),
        except_rooms: Iterable[str] = (),
        except_sids: Iterable[str] = (),
    ) -> list[str]:
        """The sockets a broadcast reaches, each once.

        ``rooms`` empty means every socket; otherwise the union of those rooms.
        Members of ``except_rooms`` and the ``except_sids`` are left out.
        """
        wanted = list(rooms)
        if wanted:
            targets: dict[str, None] = {}
            for room in wanted:
                targets.update(self._rooms.get(room, {}))
        else:
            targets = dict.fromkeys(self._sockets)
        for room in except_rooms:
            for sid in self._rooms.get(room, ()):
                targets.pop(sid, None)
        for sid in except_sids:
            targets.pop(sid, None)
        return list(targets)
