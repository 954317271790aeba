"""The receive side of a WebSocket connection (RFC 6455 §5), sans-I/O.

:class:`Reader` owns every piece of parser state: the bytes not parsed yet,
a large frame collected across reads, the message being reassembled (§5.4)
with its inflation (RFC 7692) and UTF-8 decoding (§8.1), and the budget of
one call (``max_messages``, ``max_bytes``).

The frame loop (§5.2) is written once, in :meth:`Reader._parse`. Its one
step, "split the complete frames at ``pos`` and unmask them", is
:func:`.speedups.parse_frames`: the C extension's, or its pure-Python twin,
which has the same signature and passes the same tests. Every check that
depends on the connection's state runs here, frame by frame in wire order:
a whole small text or binary message takes the one shortcut, every other
frame the full header check and :meth:`Reader._dispatch`.

The reader answers nothing: it reports pings and the close frame as events
and sets :attr:`Reader.controls`, and :class:`.connection.Connection`
answers them (§5.5.1, §5.5.2).
"""

from __future__ import annotations

from ..exceptions import PayloadTooBig, ProtocolError
from ..limits import Limits
from . import speedups
from .deflate import PerMessageDeflate
from .events import Close, Event, Ping, Pong
from .frames import Opcode, unpack_close
from .speedups import STOP_BAD_LENGTH, STOP_BAD_MASK, STOP_BATCH, STOP_HEADER, STOP_NEED_DATA
from .utf8 import Utf8Decoder, decode_text

__all__ = ["Reader"]

_TEXT = Opcode.TEXT
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
_TEXT_WHOLE = 0x81  # FIN + text, no RSV bits
_BINARY_WHOLE = 0x82  # FIN + binary, no RSV bits
#: FIN + close, no RSV bits: the first byte of a whole close frame, which
#: the I/O layer also tests before asking for a lone close (lone_close).
CLOSE_WHOLE = 0x88
# The Close of each payload that is a code alone (or nothing: 1005), as
# lone_close decodes them (frozen, so shared). Only valid ones are kept: at
# most the ~2,000 valid codes (§7.4), a few dozen bytes each.
_CODE_ONLY: dict[bytes, Close] = {}
_WHOLE = (_TEXT_WHOLE, _BINARY_WHOLE)
_UNLIMITED = 1 << 62

BytesLike = bytes | bytearray | memoryview


class Reader:
    """Bytes in, events out: the receive half of one connection.

    ``masked`` says whether the peer must mask its frames (it is a client,
    §5.1); ``limits`` bounds what the peer can make us buffer; ``deflate``
    is the permessage-deflate codec when the handshake negotiated it.
    Protocol errors are raised as :class:`.ProtocolError`, after which the
    reader holds no buffered bytes.
    """

    __slots__ = (
        "_asm",
        "_buf",
        "_closed",
        "_deflate",
        "_masked",
        "_max_frame",
        "_max_len",
        "_max_message",
        "_max_whole",
        "_msg_compressed",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_room",
        "_room_bytes",
        "_utf8",
        "controls",
    )

    def __init__(self, *, masked: bool, limits: Limits, deflate: PerMessageDeflate | None) -> None:
        self._masked = masked
        self._deflate = deflate
        self._max_frame = limits.max_frame_size
        self._max_message = limits.max_message_size
        self._max_whole = min(self._max_frame, self._max_message)
        # parse_frames stops before unmasking a payload over this; _check_header
        # then rejects it (§5.5 caps control frames at 125 bytes, data frames
        # are capped at max_frame_size), so nothing over a limit is buffered.
        self._max_len = max(self._max_frame, 125)
        #: Set when a ping or the close frame was received, for the
        #: connection to answer them; the connection clears it.
        self.controls = False
        self._closed = False
        # Received bytes not parsed yet: a bytearray while there are some, the
        # shared b"" otherwise (an idle connection holds no buffer of its own).
        self._buf: bytearray | bytes = b""
        # The frame whose payload is being collected across reads, with its
        # first header byte (see _start_assembly).
        self._asm: tuple[int, speedups.AssemblerPy] | None = None
        # The message being reassembled: its opcode (0 when none), parts and size.
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_parts: list[bytes] | list[str] = []
        self._msg_size = 0
        self._utf8: Utf8Decoder | None = None
        self._room = _UNLIMITED
        # Bytes the messages completed by this call may still take (max_bytes);
        # once spent, _room is set to 0, so the parse loop checks one number.
        self._room_bytes = _UNLIMITED

    # -- entry points --------------------------------------------------------

    def receive(
        self,
        data: BytesLike,
        events: list[Event],
        max_messages: int | None,
        max_bytes: int | None,
    ) -> None:
        """Parse ``data`` after the bytes held back; append the events completed.

        See :meth:`.Connection.receive_data` for ``max_messages`` and ``max_bytes``.
        ``data`` is not referenced once the call returns: what is left over
        stays in ``self._buf``, copied out of it.
        """
        self._room = _UNLIMITED if max_messages is None else max_messages
        self._room_bytes = _UNLIMITED if max_bytes is None else max_bytes
        buf = self._buf
        if buf:
            assert isinstance(buf, bytearray)  # never b"" here: that is empty
            buf += data
            data = buf
        # Not a helper shared with buffer_updated (which calls this): most
        # reads carry one small frame, and a call is ~5% of what such a read
        # costs with the C step, ~2% without it (callgrind).
        try:
            pos = 0
            if self._asm is not None and self._room > 0:
                pos = self._assemble(data, events)
                if self._closed:
                    pos = len(data)  # §5.5.1: nothing after a close frame is processed
            if self._asm is None and not self._closed:
                pos = self._parse(data, pos, events)
        except ProtocolError:
            self._buf = b""
            self._asm = None
            raise
        if pos >= len(data):
            if buf:
                self._buf = b""
        elif data is buf:
            assert isinstance(buf, bytearray)  # never b"" here: that is empty
            del buf[:pos]
        else:
            self._buf = bytearray(data[pos:])

    def get_buffer(self, scratch: memoryview) -> memoryview:
        """Where the next read goes; see :meth:`.Connection.get_buffer`."""
        pending = self._buf
        k = len(pending)
        half = len(scratch) >> 1
        if k > half:
            # Too much to move (messages held back by max_messages): read
            # into the second half; buffer_updated appends it to the rest.
            return scratch[half:]
        if not k:
            return scratch
        scratch[:k] = pending
        return scratch[k:]

    def buffer_updated(
        self,
        scratch: memoryview,
        nbytes: int,
        events: list[Event],
        max_messages: int | None,
        max_bytes: int | None,
    ) -> None:
        """Parse ``nbytes`` read into the view :meth:`get_buffer` returned."""
        k = len(self._buf)
        half = len(scratch) >> 1
        if k > half:
            # Read into the second half: appended to the bytes held back.
            view = scratch[half : half + nbytes]
        else:
            if k:
                self._buf = b""  # get_buffer copied these bytes to the front
            view = scratch[: k + nbytes]
        self.receive(view, events, max_messages, max_bytes)

    def lone_close(self, scratch: memoryview, nbytes: int) -> Close | None:
        """The close frame that ``nbytes`` read into :meth:`get_buffer`'s view
        are, when they are exactly one valid close frame and nothing was held
        back (a connection's usual last read); None, having changed nothing,
        for anything else, which :meth:`buffer_updated` then parses."""
        if self._buf or self._asm is not None or self._closed or nbytes < 2:
            return None
        b1 = scratch[1]
        size = b1 & 0x7F
        head = 6 if self._masked else 2
        # §5.2: FIN, no RSV bits, opcode 0x8; §5.1: masked as our side wants;
        # §5.5: at most 125 bytes, so the length is in the first two bytes.
        if (
            scratch[0] != CLOSE_WHOLE
            or bool(b1 & 0x80) != self._masked
            or size > 125
            or nbytes != head + size
        ):
            return None
        payload = scratch[head:nbytes]
        data = speedups.apply_mask(payload, bytes(scratch[2:6])) if self._masked else bytes(payload)
        close = _CODE_ONLY.get(data)
        if close is None:
            try:
                code, reason = unpack_close(data)
            except ProtocolError:
                return None  # buffer_updated fails the connection, with its message
            close = Close(code, reason)
            if len(data) <= 2:
                _CODE_ONLY[data] = close
        self._closed = True  # §5.5.1: nothing after a close frame is processed
        return close

    @property
    def pending_bytes(self) -> int:
        """Received bytes not parsed yet (an incomplete frame, or held back)."""
        return len(self._buf)

    @property
    def assembling(self) -> bool:
        """Whether a large frame's payload is being collected across reads."""
        return self._asm is not None

    # -- the frame loop ------------------------------------------------------

    def _parse(self, buf: BytesLike, pos: int, events: list[Event]) -> int:
        """Parse every complete frame in ``buf`` from ``pos``; return where parsing stopped.

        A frame of ``speedups.ASSEMBLE_AT`` bytes or more whose header is
        complete but whose payload is not goes to an assembler, and parsing
        stops at the end of ``buf`` (see :meth:`_start_assembly`).
        """
        end = len(buf)
        masked = self._masked
        # max_bytes without counting every frame: if the bytes to parse cannot
        # spend it, they are counted once, here, at their size on the wire (the
        # messages _data inflates are counted again, whole, when complete);
        # else each batch is one frame, counted if it completes a message, so
        # that parsing stops right where the budget runs out.
        single = end - pos >= self._room_bytes
        if not single:
            self._room_bytes -= end - pos
        parse_frames = speedups.parse_frames  # C, or its pure-Python twin
        small = self._max_whole
        while self._room > 0:
            # At most _room frames per batch: every frame completes at most one
            # message, so _room can only reach 0 on the batch's last frame.
            start = pos
            room = self._room
            frames, pos, stop, b0, length = parse_frames(
                buf, pos, end, masked, 1 if single else room, self._max_len
            )
            # Counted for the checked frames only: how many, and the messages
            # they completed; every frame of the shortcut completed one.
            checked = completed = 0
            for first, payload in frames:
                # The one shortcut: a whole, uncompressed text or binary message
                # outside a fragmented one, within both limits, passes every
                # check of _check_header. Every other frame is checked.
                if first in _WHOLE and not self._msg_opcode and len(payload) <= small:
                    events.append(payload if first == _BINARY_WHOLE else decode_text(payload))
                    self._room -= 1
                    continue
                before = self._room
                opcode = first & 0x0F
                self._check_header(opcode, first & 0x80, first & 0x40, first & 0x30, len(payload))
                self._dispatch(opcode, first & 0x80, first & 0x40, payload, events)
                if self._closed:
                    return end  # §5.5.1: nothing after a close frame is processed
                checked += 1
                completed += before - self._room
                if self._room_bytes <= 0:
                    # A message inflated past max_bytes: the frames after it stay
                    # unparsed (and not inflated) until the next call.
                    handled = checked + (room - self._room - completed)
                    if handled < len(frames):
                        for _, done in frames[:handled]:
                            start += _header_size(buf, start, masked) + len(done)
                        return start
                    break
            if single and self._room < room:
                self._spend(pos - start)
            if stop != STOP_BATCH:
                if stop == STOP_NEED_DATA:
                    return pos  # the usual end: the bytes run out
                return self._stopped(stop, b0, length, buf, pos)
        return pos

    def _stopped(self, stop: int, b0: int, length: int, buf: BytesLike, pos: int) -> int:
        """Act on why :func:`.speedups.parse_frames` stopped at ``pos``; return
        where parsing stops."""
        if stop == STOP_HEADER:
            # Checked before waiting for the payload: a frame over a limit
            # fails now instead of being buffered.
            self._check_header(b0 & 0x0F, b0 & 0x80, b0 & 0x40, b0 & 0x30, length)
            if length >= speedups.ASSEMBLE_AT:
                # A large payload is collected across reads once its whole
                # header (mask key too) is in.
                head = pos + _header_size(buf, pos, self._masked)
                if len(buf) >= head:
                    self._start_assembly(b0, length, buf, head)
                    return len(buf)
        elif stop == STOP_BAD_LENGTH:
            # §5.2: the most significant bit of a 64-bit length MUST be 0.
            raise ProtocolError("invalid 64-bit frame length")
        elif stop == STOP_BAD_MASK:
            # §5.1: a client MUST mask every frame; a server MUST NOT.
            raise ProtocolError(
                "unmasked frame from client" if self._masked else "masked frame from server"
            )
        return pos

    def _start_assembly(self, b0: int, length: int, buf: BytesLike, head: int) -> None:
        """Collect the payload of the frame whose header (mask key included)
        ends at ``head`` across reads, with a :class:`.speedups.Assembler`.

        Reads then go through the scratch buffer into the message itself
        instead of piling up in ``self._buf``. The header passed its checks,
        so ``length`` is at most max_frame_size: the bound a peer may make us
        reserve for one frame."""
        mask = bytes(buf[head - 4 : head]) if self._masked else b""
        assembler = speedups.Assembler(length, mask)
        assembler.feed(buf, head, len(buf))
        self._asm = (b0, assembler)

    def _assemble(self, buf: BytesLike, events: list[Event]) -> int:
        """Feed the frame being assembled from the start of ``buf``; return the bytes used."""
        assert self._asm is not None
        b0, assembler = self._asm
        pos = assembler.feed(buf, 0, len(buf))
        if not assembler.missing:
            self._asm = None
            # Its header was checked when it arrived (_check_header), and
            # nothing that check depends on changes before its payload ends.
            # A control frame only when ASSEMBLE_AT is under 126 (tests).
            payload = assembler.take()
            self._dispatch(b0 & 0x0F, b0 & 0x80, b0 & 0x40, payload, events)
        return pos

    # -- one frame -----------------------------------------------------------

    def _check_header(self, opcode: int, fin: int, rsv1: int, rsv23: int, length: int) -> None:
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")  # §5.2
        if rsv23:
            raise ProtocolError("reserved bits set without a negotiated extension")  # §5.2
        if opcode >= 8:
            # §5.5: control frames are never fragmented and carry at most 125 bytes.
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
            if rsv1:
                raise ProtocolError("RSV1 set on a control frame")
            return
        if opcode == _CONT:
            if not self._msg_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if rsv1:
                # RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
                raise ProtocolError("RSV1 set on a continuation frame")
        else:
            if self._msg_opcode:
                raise ProtocolError("new data message before the previous one finished")
            if rsv1 and self._deflate is None:
                raise ProtocolError("RSV1 set without permessage-deflate")
        if length > self._max_frame:
            raise PayloadTooBig(f"frame of {length} bytes exceeds max_frame_size")
        compressed = rsv1 or (opcode == _CONT and self._msg_compressed)
        # Only a continuation adds to the size so far: _msg_size still holds the
        # previous message's size until _data() starts the next one (§5.4).
        so_far = self._msg_size if opcode == _CONT else 0
        if not compressed and so_far + length > self._max_message:
            raise PayloadTooBig("message exceeds max_message_size")

    def _dispatch(
        self, opcode: int, fin: int, rsv1: int, payload: bytes, events: list[Event]
    ) -> None:
        """Hand on one complete frame whose header passed _check_header."""
        if opcode >= 8:
            self._control(opcode, payload, events)
        else:
            self._data(opcode, fin, rsv1, payload, events)

    def _spend(self, size: int) -> None:
        """Count a completed message of ``size`` bytes against ``max_bytes``."""
        self._room_bytes -= size
        if self._room_bytes <= 0:
            self._room = 0

    def _data(self, opcode: int, fin: int, rsv1: int, payload: bytes, events: list[Event]) -> None:
        """One data frame: a message that needs more than the shortcut, or a
        fragment of one (§5.4), inflated when compressed (RFC 7692 §6.2)."""
        if opcode != _CONT:
            self._msg_opcode = opcode
            self._msg_compressed = bool(rsv1)
            self._msg_size = 0
            self._msg_parts = []
            self._utf8 = Utf8Decoder() if opcode == _TEXT and not fin else None
        data: bytes = payload
        if self._msg_compressed:
            assert self._deflate is not None
            data = self._deflate.decompress(payload, bool(fin), self._max_message - self._msg_size)
        self._msg_size += len(data)
        text = self._msg_opcode == _TEXT
        if fin:
            message: str | bytes
            if text:
                if self._utf8 is None:
                    message = decode_text(data)
                else:
                    parts: list[str] = self._msg_parts  # type: ignore[assignment]
                    parts.append(self._utf8.decode(data, True))
                    message = "".join(parts)
            else:
                chunks: list[bytes] = self._msg_parts  # type: ignore[assignment]
                message = b"".join(chunks) + data if chunks else data
            self._msg_opcode = 0
            self._msg_parts = []
            self._utf8 = None
            events.append(message)
            self._room -= 1
            self._spend(self._msg_size)
        elif text:
            assert self._utf8 is not None
            _add_part(self._msg_parts, self._utf8.decode(data, False))
        elif data:
            _add_part(self._msg_parts, data)

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        """A control frame (§5.5): reported, and flagged for the connection to answer."""
        if opcode == _PING:
            events.append(Ping(payload))
            self.controls = True
        elif opcode == _PONG:
            events.append(Pong(payload))
        else:
            code, reason = unpack_close(payload)
            events.append(Close(code, reason))
            self.controls = True
            self._closed = True


def _header_size(buf: BytesLike, pos: int, masked: bool) -> int:
    """The size of the frame header at ``pos``, masking key included (§5.2)."""
    n = buf[pos + 1] & 0x7F
    return (2 if n < 126 else 4 if n == 126 else 10) + (4 if masked else 0)


def _add_part(parts: list[bytes] | list[str], part: bytes | str) -> None:
    """Add a fragment's data to the message being reassembled, keeping parts few.

    A peer may split a message into fragments of one byte, or of none (§5.4
    sets no minimum): a part per fragment would cost an object and a list
    slot (~40 bytes) per byte, and empty fragments would grow the list
    forever without counting against max_message_size. Empty parts are
    dropped, and past 32 parts the tail is merged like a binary counter, so a
    message holds O(log n) parts and each byte is copied O(log n) times.
    """
    if not part:
        return
    parts.append(part)  # type: ignore[arg-type]
    while len(parts) > 32 and len(parts[-2]) < 2 * len(parts[-1]):
        last = parts.pop()
        parts[-1] += last  # type: ignore[operator,assignment]
