"""One end of an adapter <-> hub link: framed messages over a Unix-domain
stream, with the outgoing bytes bounded.

Both ends use it: a :class:`~.hub.ClusterHub` has one per worker, a
:class:`~.adapter.ClusterAdapter` one to its hub. What the other end has not
read yet stays in the transport's write buffer; past ``max_queued`` bytes the
link is dropped (a peer that does not read is treated as gone, as a broker
drops a subscriber that falls behind), never buffered without limit.
"""

from __future__ import annotations

import asyncio
import logging

from ....exceptions import PacketError
from ....limits import MiB
from .messages import Message, as_wire, parse
from .wire import HEAD, MAX_FRAME, decode, encode, frame_length

__all__ = ["MAX_QUEUED", "Peer", "PeerGone", "frame_of"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

#: Bytes written to a peer and not yet read by it, past which the link is
#: dropped: two of the largest frames, so one large message never trips it.
MAX_QUEUED = 2 * MAX_FRAME + 1 * MiB


def frame_of(message: Message, max_frame: int, to: str) -> bytes | None:
    """The frame of ``message``, or None (logged) if it cannot be sent."""
    try:
        return encode(as_wire(message), max_frame)
    except (PacketError, TypeError, ValueError) as exc:
        _log.warning("cannot send a %r message to %s: %s", message.kind, to, exc)
        return None


class PeerGone(Exception):
    """The link is closed (by either end, or dropped at a bound)."""


class Peer:
    """A framed, bounded link over ``reader``/``writer``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str,
        max_frame: int = MAX_FRAME,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.name = name
        self.max_frame = max_frame
        self.max_queued = max_queued
        self.closed = False

    async def receive(self) -> Message:
        """The next message; :class:`PeerGone` at the end of the stream,
        :class:`PacketError` (the link is then dropped) for an oversize or
        malformed frame."""
        try:
            head = await self.reader.readexactly(HEAD)
            body = await self.reader.readexactly(frame_length(head, self.max_frame))
        except (asyncio.IncompleteReadError, OSError) as exc:
            self.abort()
            raise PeerGone(self.name) from exc
        except PacketError:
            self.abort()
            raise
        return parse(decode(body))

    def send(self, message: Message) -> bool:
        """Queue ``message``; False if the link is closed, or the message
        could not be encoded (logged), or the link was just dropped because
        the peer is not reading (logged)."""
        if self.closed or self.writer.is_closing():
            return False
        frame = frame_of(message, self.max_frame, self.name)
        return frame is not None and self.send_frame(frame)

    def send_frame(self, frame: bytes) -> bool:
        """Queue a frame made by :func:`~.wire.encode` (one frame may go to
        many peers); False if the link is closed or was just dropped."""
        if self.closed or self.writer.is_closing():
            return False
        transport = self.writer.transport
        if transport.get_write_buffer_size() + len(frame) > self.max_queued:
            _log.warning(
                "%s is not reading (%d bytes queued for it): dropping the link",
                self.name,
                transport.get_write_buffer_size(),
            )
            self.abort()
            return False
        self.writer.write(frame)
        return True

    def abort(self) -> None:
        """Drop the link now, discarding what is queued (never waits)."""
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()

    async def close(self, timeout: float) -> None:
        """Send what is queued, then close; drop the link if that takes more
        than ``timeout`` seconds (a peer that does not read)."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except (asyncio.TimeoutError, OSError):
            self.writer.transport.abort()
