"""Which sockets are in which rooms: a plain data structure, no I/O.

The in-memory adapter uses it directly and the Redis adapter keeps one per
node for its local sockets, so the selection rules below are written once.

Socket.IO semantics: every socket is in the room named by its own id (so
"emit to a sid" and "emit to a room" are the same operation); a broadcast
goes to the union of the rooms named (every socket when none is named),
minus the members of the excluded rooms and the excluded sockets.
Insertion-ordered dicts stand in for sets, so targets come out in the order
sockets joined: deterministic, which keeps broadcasts and tests repeatable.

Each membership carries a *mark*, an integer the caller chooses when the
socket joins (the in-memory adapter passes the sequence number of the newest
event kept for recovery): connection state recovery replays an event through
a room only if the socket had joined it before the event was sent.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RoomRegistry"]


class RoomRegistry:
    """Rooms of one namespace: room name -> socket ids, and socket id -> room names."""

    __slots__ = ("_rooms", "_sockets")

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, None]] = {}
        self._sockets: dict[str, dict[str, int]] = {}  # sid -> room -> mark

    def add(self, sid: str, mark: int = 0) -> None:
        """Register a socket; it joins the room named by its own id."""
        if sid not in self._sockets:
            self._sockets[sid] = {}
            self.join(sid, sid, mark=mark)

    def remove(self, sid: str) -> list[str]:
        """Forget a socket (it disconnected); return the rooms it was in."""
        rooms = self._sockets.pop(sid, None)
        if rooms is None:
            return []
        for room in rooms:
            self._discard(room, sid)
        return list(rooms)

    def join(self, sid: str, *rooms: str, mark: int = 0) -> None:
        """Add a registered socket to rooms, noting ``mark``; joining twice is
        harmless (the first mark stays)."""
        mine = self._sockets[sid]  # KeyError for an unknown socket: a caller bug
        for room in rooms:
            if room not in mine:
                mine[room] = mark
                self._rooms.setdefault(room, {})[sid] = None

    def leave(self, sid: str, *rooms: str) -> None:
        """Take a socket out of rooms; leaving a room it is not in is harmless."""
        mine = self._sockets.get(sid)
        if mine is None:
            return
        for room in rooms:
            if mine.pop(room, None) is not None:
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

    def marks(self, sid: str) -> dict[str, int]:
        """The rooms a socket is in (its own included), each with its mark."""
        return dict(self._sockets.get(sid, ()))

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
        sids: Iterable[str] = (),
    ) -> list[str]:
        """The sockets a broadcast reaches, each once.

        ``rooms`` and ``sids`` both empty means every socket; otherwise the
        members of those rooms and the registered ``sids`` (by identity: a
        room is only as private as who may join it). Members of
        ``except_rooms`` and the ``except_sids`` are left out.
        """
        wanted = list(rooms)
        chosen = [sid for sid in sids if sid in self._sockets]
        if wanted or chosen:
            targets: dict[str, None] = {}
            for room in wanted:
                targets.update(self._rooms.get(room, {}))
            targets.update(dict.fromkeys(chosen))
        elif sids:
            return []  # only unknown sids: nobody here
        else:
            targets = dict.fromkeys(self._sockets)
        for room in except_rooms:
            for sid in self._rooms.get(room, ()):
                targets.pop(sid, None)
        for sid in except_sids:
            targets.pop(sid, None)
        return list(targets)
