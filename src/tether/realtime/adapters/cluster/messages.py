"""What workers and their hub say to each other: typed messages, no I/O.

Each message is a frozen dataclass; on the wire (:mod:`.wire`) it is a JSON
object of its fields with ``"t"`` naming its kind. :func:`parse` checks every
field's type as it builds the message, so a handler gets a well-typed
message or none (:class:`~tether.exceptions.PacketError`)::

    worker -> hub                          hub -> worker
    Hello      who it is, its recovery     Broadcast    an event (off: its offset)
    Broadcast  an event (store: kept?)     ServerEvent  another worker's
    ServerEvent                            Request      another worker's
    Request    ack/fetch/rooms/disconnect/ Sent         to how many workers it went
               data (save_session)
    Reply      to another's request        Reply        to one of its requests
    Live, Gone its sockets                 Restored     a saved session and its events
    Persist    a session to keep           Checked      a room that is a sid, or None
    Restore, Check, Flush                  Flushed      all before it is done
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ....exceptions import PacketError
from .wire import to_wire

__all__ = [
    "AckRequest",
    "Broadcast",
    "Check",
    "Checked",
    "DataRequest",
    "DisconnectRequest",
    "FetchRequest",
    "Flush",
    "Flushed",
    "Gone",
    "Hello",
    "Live",
    "Message",
    "Persist",
    "Reply",
    "Request",
    "Restore",
    "Restored",
    "RoomsRequest",
    "Sent",
    "ServerEvent",
    "as_wire",
    "parse",
]


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message; ``kind`` names it on the wire."""

    kind: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """A worker's first message: its node id and, with recovery on, its
    :class:`RecoveryOptions` (``window``, ``bytes``, ``sessions``)."""

    kind: ClassVar[str] = "hello"
    node: str
    rec: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Broadcast(Message):
    """An event for the sockets ``o`` selects in ``nsp``. From a worker,
    ``store`` asks the hub to keep it (and send it back to the sender too;
    ``local``: to the sender only); from the hub, ``off`` is its offset."""

    kind: ClassVar[str] = "bc"
    nsp: str
    data: list[Any]
    o: dict[str, Any] = field(default_factory=dict)
    store: bool = False
    local: bool = False
    off: str | None = None


@dataclass(frozen=True, slots=True)
class ServerEvent(Message):
    kind: ClassVar[str] = "se"
    event: str
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Request(Message):
    """Something every other worker answers: one receipt :class:`Reply`
    (``expect``: how many more follow), then those replies."""

    id: str
    nsp: str
    o: dict[str, Any]
    timeout: float


@dataclass(frozen=True, slots=True)
class AckRequest(Request):
    kind: ClassVar[str] = "ack"
    data: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FetchRequest(Request):
    kind: ClassVar[str] = "fetch"


@dataclass(frozen=True, slots=True)
class RoomsRequest(Request):
    kind: ClassVar[str] = "rooms"
    rooms: list[str] = field(default_factory=list)
    join: bool = True


@dataclass(frozen=True, slots=True)
class DisconnectRequest(Request):
    kind: ClassVar[str] = "disconnect"
    close: bool = False


@dataclass(frozen=True, slots=True)
class DataRequest(Request):
    """Replace the ``data`` of the selected socket; replied with the sids
    whose data was replaced."""

    kind: ClassVar[str] = "data"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent(Message):
    """To the requester: its request went to ``n`` workers."""

    kind: ClassVar[str] = "sent"
    id: str
    n: int


@dataclass(frozen=True, slots=True)
class Reply(Message):
    kind: ClassVar[str] = "rep"
    id: str
    receipt: bool
    expect: int = 0
    items: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Live(Message):
    """A worker's sockets, connected or changed: each ``{nsp, sid, rooms}``
    and, with recovery, ``pid`` and ``data``."""

    kind: ClassVar[str] = "live"
    sockets: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Gone(Message):
    """A worker's sockets that left for good, as ``[nsp, sid]`` pairs."""

    kind: ClassVar[str] = "gone"
    sockets: list[list[str]]


@dataclass(frozen=True, slots=True)
class Persist(Message):
    """A session to keep for recovery (a :class:`SavedSession` on the wire)."""

    kind: ClassVar[str] = "persist"
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Restore(Message):
    kind: ClassVar[str] = "restore"
    id: str
    nsp: str
    pid: str
    offset: str | None = None


@dataclass(frozen=True, slots=True)
class Restored(Message):
    """The saved session (None: not recoverable) and the events it missed."""

    kind: ClassVar[str] = "restored"
    id: str
    session: dict[str, Any] | None = None
    missed: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Check(Message):
    """Is one of ``rooms`` the sid of a socket other than ``sid``?"""

    kind: ClassVar[str] = "check"
    id: str
    nsp: str
    sid: str
    rooms: list[str]


@dataclass(frozen=True, slots=True)
class Checked(Message):
    kind: ClassVar[str] = "checked"
    id: str
    taken: str | None = None


@dataclass(frozen=True, slots=True)
class Flush(Message):
    """Answered with :class:`Flushed` once everything sent before is handled."""

    kind: ClassVar[str] = "flush"
    id: str


@dataclass(frozen=True, slots=True)
class Flushed(Message):
    kind: ClassVar[str] = "flushed"
    id: str


_KINDS: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        Hello,
        Broadcast,
        ServerEvent,
        AckRequest,
        FetchRequest,
        RoomsRequest,
        DisconnectRequest,
        DataRequest,
        Sent,
        Reply,
        Live,
        Gone,
        Persist,
        Restore,
        Restored,
        Check,
        Checked,
        Flush,
        Flushed,
    )
}

# What an annotation's outer type must be at run time.
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "None": (type(None),),
}


def _accepts(annotation: str, value: Any) -> bool:
    """Whether ``value`` has the outer type of ``annotation`` ("str | None",
    "list[Any]"...): a bool is not an int here, as JSON tells them apart."""
    for part in annotation.split("|"):
        types = _TYPES[part.strip().partition("[")[0]]
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            return True
    return False


def parse(wire: dict[str, Any]) -> Message:
    """The message a decoded frame carries; :class:`PacketError` for an
    unknown kind, a missing field or a field of the wrong type."""
    cls = _KINDS.get(wire.get("t", ""))
    if cls is None:
        raise PacketError(f"unknown message kind {wire.get('t')!r}")
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in wire:
            continue
        value = wire[f.name]
        if not _accepts(str(f.type), value):
            raise PacketError(f"{cls.kind}.{f.name} must be {f.type}, not {type(value).__name__}")
        fields[f.name] = value
    try:
        return cls(**fields)
    except TypeError as exc:  # a field without a default is missing
        raise PacketError(f"bad {cls.kind!r} message: {exc}") from None


def as_wire(message: Message) -> dict[str, Any]:
    """``message`` as the JSON object a frame carries."""
    return {"t": message.kind, **to_wire(message)}
