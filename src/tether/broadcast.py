"""Sending one message to many connections: :func:`broadcast`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from ._direct import fanout as _fanout
from .connection import Connection
from .protocol import connection as core

__all__ = ["broadcast", "send_frame"]

_log = logging.getLogger("tether.broadcast")


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes,
    *,
    slow: Literal["skip", "close"] = "skip",
) -> int:
    """Send ``message`` to every open connection without waiting; return how many got it.

    Server connections share one encoded frame: it is unmasked and sent
    uncompressed, which is valid whatever each connection negotiated
    (RFC 7692 lets any message go uncompressed). A client connection masks
    its own copy.

    A connection whose write buffer is above ``write_high_water`` is *slow*:
    with ``slow="skip"`` (default) it misses this message; with
    ``slow="close"`` it is closed with 1008 so it can reconnect and resync.
    Either way memory stays bounded. A connection in the middle of sending a
    fragmented message is skipped, since frames cannot interleave with it.
    """
    frame = core.encode_broadcast_frame(message)
    if _fanout is not None:
        sent, last = _fanout(
            connections, frame, core.State.OPEN, lambda c: send_frame(c, frame, message, slow=slow)
        )
    else:
        sent = 0
        last = None
        for connection in connections:
            if send_frame(connection, frame, message, slow=slow):
                sent += 1
                last = connection
    if last is not None:
        # Counted once per broadcast, not per recipient (the fan-out's hot
        # loop), in the server of the connections (of the last one written to).
        metrics = last.metrics
        metrics.broadcast_deliveries += sent
        if metrics.count_sends:
            metrics.messages_sent += sent
            metrics.bytes_sent += sent * len(frame)
    return sent


def send_frame(
    connection: Connection,
    frame: bytes,
    message: str | bytes,
    *,
    slow: Literal["skip", "close"] = "skip",
) -> bool:
    """Write a frame from :func:`tether.protocol.connection.encode_broadcast_frame`
    (one or several, concatenated) to one connection; whether it was written.

    The rules of :func:`broadcast` apply. ``message`` is what the frames
    carry, for a client connection, which must mask its own copy.
    """
    if connection.write_shared(frame):
        return True  # the common case, in one call
    # Not written: closed, mid-fragment, slow, or a client connection.
    protocol = connection.protocol
    transport = connection.transport
    if (
        protocol is None
        or transport is None
        or protocol.state is not core.State.OPEN
        or protocol.close_sent is not None
        or protocol.sending_fragmented
        or transport.is_closing()
    ):
        return False
    if connection.write_buffer_size() > connection.limits.write_high_water:
        connection.metrics.slow_clients.inc(slow)
        if slow == "close":
            _log.info("closing slow connection %r", connection)
            connection.fail(1008, "too slow to keep up with broadcast")
        return False
    # Open, not slow, and still not written: a client connection, which
    # masks its own copy (write_shared takes every server one it can).
    connection.write_frames(protocol.send(message))
    return True
