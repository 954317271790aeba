"""Every bound tether enforces, with its safe default, defined once.

The server, the client and the command line all take these names as keyword
options (``serve(..., max_message_size=2**20)``), so a limit is never restated.
Sizes are in bytes, durations in seconds; ``None`` turns a bound off where
that is allowed and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypedDict

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_REALTIME_LIMITS",
    "LimitOptions",
    "Limits",
    "RealtimeLimits",
]

KiB = 1024
MiB = 1024 * KiB


def _doc(text: str, *, optional: bool = False) -> dict[str, Any]:
    # optional: None turns the bound off (besides timeouts and intervals).
    return {"doc": text, "optional": optional}


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one connection (or of every connection of a server)."""

    max_message_size: int = field(
        default=1 * MiB,
        metadata=_doc(
            "largest message accepted, after reassembly and decompression; "
            "a larger one fails the connection with 1009"
        ),
    )
    max_frame_size: int = field(
        default=1 * MiB,
        metadata=_doc("largest frame payload accepted (checked on the header, before buffering)"),
    )
    max_header_bytes: int = field(
        default=16 * KiB,
        metadata=_doc("largest opening-handshake head (request or response line plus headers)"),
    )
    max_header_count: int = field(
        default=128, metadata=_doc("most header lines in an opening handshake")
    )
    max_queue: int = field(
        default=32,
        metadata=_doc(
            "messages buffered for the application before reading from the socket pauses"
        ),
    )
    # Counted after decompression: with permessage-deflate a few KiB on the
    # wire can fill max_queue messages of max_message_size each (32 MiB).
    max_queue_bytes: int = field(
        default=1 * MiB,
        metadata=_doc(
            "bytes of messages (after decompression; text counted in characters) buffered "
            "for the application before reading from the socket pauses; the message that "
            "crosses it is kept, so at most this plus max_message_size is held"
        ),
    )
    write_high_water: int = field(
        default=64 * KiB,
        metadata=_doc("bytes buffered for writing above which send() waits (backpressure)"),
    )
    write_low_water: int = field(
        default=16 * KiB, metadata=_doc("bytes buffered for writing below which send() resumes")
    )
    open_timeout: float | None = field(
        default=10.0, metadata=_doc("seconds allowed for the opening handshake")
    )
    close_timeout: float | None = field(
        default=10.0, metadata=_doc("seconds allowed for the closing handshake")
    )
    ping_interval: float | None = field(
        default=20.0, metadata=_doc("seconds between keepalive pings; None disables keepalive")
    )
    ping_timeout: float | None = field(
        default=20.0,
        metadata=_doc("seconds to wait for a keepalive pong before failing the connection (1011)"),
    )
    # Off by default: behind a reverse proxy or a NAT every client shares one
    # address, and a fair message rate depends on the application. See
    # docs/security.md for choosing values.
    max_connections_per_ip: int | None = field(
        default=None,
        metadata=_doc(
            "server: most TCP connections from one IP address, handshakes included; "
            "past it the handshake is answered 503; None (default) for no cap",
            optional=True,
        ),
    )
    max_messages_per_second: float | None = field(
        default=None,
        metadata=_doc(
            "most messages a peer may send per second, with bursts of one second's worth; "
            "past it the connection is closed with 1008; None (default) for no limit",
            optional=True,
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                if not f.name.endswith(("_timeout", "_interval")) and not f.metadata["optional"]:
                    raise ValueError(f"{f.name} cannot be None")
            # "not >= 0" also rejects NaN, which compares false with everything
            # and would silently turn a size bound off.
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{f.name} must be a non-negative number, got {value!r}")
        if self.write_low_water > self.write_high_water:
            raise ValueError("write_low_water must not exceed write_high_water")

    def replace(self, **options: Any) -> Limits:
        """Return a copy with some limits changed; unknown names raise TypeError."""
        if not options:
            return self
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(options) - names
        if unknown:
            raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **options)

    @classmethod
    def describe(cls) -> dict[str, tuple[Any, str]]:
        """Each limit's default and one-line description (used by the CLI and docs)."""
        return {f.name: (f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)}


class LimitOptions(TypedDict, total=False):
    """The keyword options accepted by ``serve()`` and ``connect()``: one per :class:`Limits` field.

    A test checks that the two stay in step.
    """

    max_message_size: int
    max_frame_size: int
    max_header_bytes: int
    max_header_count: int
    max_queue: int
    max_queue_bytes: int
    write_high_water: int
    write_low_water: int
    open_timeout: float | None
    close_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    max_connections_per_ip: int | None
    max_messages_per_second: float | None


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class RealtimeLimits:
    """The limits of the Engine.IO / Socket.IO layer (:mod:`tether.realtime`).

    Kept apart from :class:`Limits` because they bound packets, not WebSocket
    frames, and mean nothing to a plain WebSocket server. Each is per
    connection (one Engine.IO session, whatever its transport), so that one
    client costs the server at most these bytes and tasks; docs/limits.md
    adds them up into the per-connection worst case. The realtime client
    bounds what a server makes it hold with the same ``max_payload``,
    ``max_attachments``, ``max_handler_tasks`` and ``max_pending_bytes``.
    """

    max_payload: int = field(
        # The Engine.IO v4 default ("maxPayload" in the open packet, 1e6 in the
        # reference server): the largest polling body or WebSocket message, and
        # the largest Socket.IO packet counting its binary attachments.
        default=1_000_000,
        metadata=_doc(
            "largest Engine.IO payload or message, and largest Socket.IO packet "
            "with its attachments, in bytes; announced as maxPayload in the handshake"
        ),
    )
    max_attachments: int = field(
        default=10,
        metadata=_doc("most binary attachments a Socket.IO packet may declare"),
    )
    max_outgoing_bytes: int = field(
        # Two payloads: one largest packet in flight and one queued behind it.
        default=2 * MiB,
        metadata=_doc(
            "bytes queued for one client (the long-polling queue, or the WebSocket "
            "write buffer) past which the session is closed as a slow client; "
            "a WebSocket client is no longer read while its write buffer is above "
            "write_high_water"
        ),
    )
    max_handler_tasks: int = field(
        default=16,
        metadata=_doc(
            "event handlers running at once for one connection; later events wait "
            "(bounded by max_pending_bytes)"
        ),
    )
    max_pending_bytes: int = field(
        default=1 * MiB,
        metadata=_doc(
            "bytes of received packets waiting for a handler slot or for a namespace "
            "CONNECT to finish, per connection; past it the session is closed "
            "(WebSocket close 1008)"
        ),
    )
    max_events_per_second: float | None = field(
        # Off by default, like max_messages_per_second: a fair rate depends on
        # the application (a game sends 60 inputs a second, a chat one).
        default=None,
        metadata=_doc(
            "most packets a client may send per second over any transport, with "
            "bursts of one second's worth; past it the session is closed "
            "(WebSocket close 1008); None (default) for no limit",
            optional=True,
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            if f.metadata["optional"]:
                valid = isinstance(value, (int, float)) and value > 0
            else:
                valid = isinstance(value, int) and value >= 0
            if isinstance(value, bool) or not valid:
                raise ValueError(f"{f.name} must be a non-negative integer, got {value!r}")
        if self.max_handler_tasks < 1:
            # 0 would run no handler at all, and every event would wait.
            raise ValueError("max_handler_tasks must be at least 1")

    def replace(self, **options: Any) -> RealtimeLimits:
        """Return a copy with some limits changed; unknown names raise TypeError."""
        if not options:
            return self
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(options) - names
        if unknown:
            raise TypeError(f"unknown realtime limit(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **options)

    @classmethod
    def describe(cls) -> dict[str, tuple[Any, str]]:
        """Each limit's default and one-line description (used by the CLI and docs)."""
        return {f.name: (f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)}


class RealtimeLimitOptions(TypedDict, total=False):
    """The keyword options ``realtime.Server()`` accepts for its limits: one per
    :class:`RealtimeLimits` field. A test checks that the two stay in step.
    """

    max_payload: int
    max_attachments: int
    max_outgoing_bytes: int
    max_handler_tasks: int
    max_pending_bytes: int
    max_events_per_second: float | None


DEFAULT_REALTIME_LIMITS = RealtimeLimits()
