"""``Connection._parse`` on top of the C frame splitter (RFC 6455 §5.2).

:func:`parse_with_speedups` gives the same events, errors and position as
the pure-Python loop in :meth:`.connection.Connection._parse`: C finds the
frames and unmasks them, and every check that depends on the connection's
state runs here in Python, frame by frame, in wire order, through the
connection's own ``_check_header``, ``_control`` and ``_data``.

It is only faster with the C extension; with the pure-Python
:func:`.speedups.parse_frames` it is correct but slower than the original
loop, which is why :data:`PARSE` is ``None`` then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exceptions import ProtocolError
from . import speedups
from .events import Event
from .speedups import HAVE_SPEEDUPS, STOP_BAD_LENGTH, STOP_BAD_MASK, STOP_BATCH, STOP_HEADER
from .speedups import parse_frames as _parse_frames
from .utf8 import decode_text

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["PARSE", "parse_with_speedups"]

_TEXT_WHOLE = 0x81  # FIN + text, no RSV bits
_BINARY_WHOLE = 0x82  # FIN + binary, no RSV bits
_WHOLE = (_TEXT_WHOLE, _BINARY_WHOLE)


def parse_with_speedups(
    conn: Connection, buf: bytes | bytearray | memoryview, pos: int, events: list[Event]
) -> int:
    """Parse every complete frame in ``buf`` from ``pos`` for ``conn``; return where it stopped."""
    end = len(buf)
    expect_mask = not conn.is_client
    # C stops before copying a payload over this; _check_header then rejects
    # it (control frames are capped at 125 bytes by §5.5, data frames at
    # max_frame_size), so nothing over a limit is unmasked or buffered.
    max_len = max(conn._max_frame, 125)
    # _room_bytes without counting frames in Python: if the bytes to parse
    # cannot spend it, they are counted once, here, at their size on the wire
    # (the messages _data inflates are counted again, whole, when complete);
    # else each batch is one frame, counted if it completes a message, so
    # that parsing stops right where the budget runs out.
    single = end - pos >= conn._room_bytes
    if not single:
        conn._room_bytes -= end - pos
    while conn._room > 0:
        # At most _room frames per batch: every frame completes at most one
        # message, so _room can only reach 0 on the batch's last frame and the
        # frames after it stay unparsed, as in the pure-Python loop.
        start = pos
        room = conn._room
        frames, pos, stop, b0, length = _parse_frames(
            buf, pos, end, expect_mask, 1 if single else room, max_len
        )
        handled = _handle_frames(conn, frames, events)
        if single and conn._room < room:
            conn._spend(pos - start)
        if handled:
            if handled < 0:
                return end  # §5.5.1: nothing after a close frame is processed
            # A message inflated past _room_bytes: the frames after it stay
            # unparsed (and not inflated), as in the pure-Python loop.
            for _, payload in frames[:handled]:
                start += _header_size(buf, start, expect_mask) + len(payload)
            return start
        if stop == STOP_BATCH:
            continue
        if stop == STOP_HEADER:
            # Checked before waiting for the payload: a frame over a limit
            # fails now instead of being buffered.
            conn._check_header(b0 & 0x0F, b0 & 0x80, b0 & 0x40, b0 & 0x30, length)
            if length >= speedups.ASSEMBLE_AT:
                # A large payload is collected across reads, as in the
                # pure-Python loop, once its whole header (mask key too) is in.
                head = pos + _header_size(buf, pos, expect_mask)
                if end >= head:
                    conn._start_assembly(b0, length, buf, head)
                    return end
        elif stop == STOP_BAD_LENGTH:
            # §5.2: the most significant bit of a 64-bit length MUST be 0.
            raise ProtocolError("invalid 64-bit frame length")
        elif stop == STOP_BAD_MASK:
            # §5.1: a client MUST mask every frame; a server MUST NOT.
            raise ProtocolError(
                "unmasked frame from client" if expect_mask else "masked frame from server"
            )
        break
    return pos


def _header_size(buf: bytes | bytearray | memoryview, pos: int, masked: bool) -> int:
    """The size of the frame header at ``pos``, masking key included (§5.2)."""
    n = buf[pos + 1] & 0x7F
    return (2 if n < 126 else 4 if n == 126 else 10) + (4 if masked else 0)


def _handle_frames(conn: Connection, frames: list[tuple[int, bytes]], events: list[Event]) -> int:
    """Check and dispatch ``frames`` in order; return 0 once all are handled,
    -1 if a close frame came, else how many were handled before a message
    inflated past ``_room_bytes``."""
    # A whole, uncompressed text or binary message outside a fragmented one
    # passes every check of _check_header when its length is within both
    # limits; it takes this shortcut, everything else the full checks.
    small = min(conn._max_frame, conn._max_message)
    room = conn._room
    # Counted in this branch only: the frames that took the full checks and
    # the messages they completed; every other frame completed one message.
    checked = completed = 0
    for b0, payload in frames:
        if b0 in _WHOLE and not conn._msg_opcode and len(payload) <= small:
            events.append(payload if b0 == _BINARY_WHOLE else decode_text(payload))
            conn._room -= 1
            continue
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        rsv1 = b0 & 0x40
        conn._check_header(opcode, fin, rsv1, b0 & 0x30, len(payload))
        before = conn._room
        conn._dispatch(opcode, fin, rsv1, payload, events)
        if conn.close_rcvd is not None:
            return -1
        checked += 1
        completed += before - conn._room
        if conn._room_bytes <= 0:
            handled = checked + (room - conn._room - completed)
            return 0 if handled == len(frames) else handled
    return 0


#: What ``Connection._parse`` should delegate to: this module's parser when
#: the C extension is in use, ``None`` to keep the pure-Python loop.
PARSE: Callable[[Connection, bytes | bytearray | memoryview, int, list[Event]], int] | None = (
    parse_with_speedups if HAVE_SPEEDUPS else None
)
