"""The WebSocket state machine after the handshake (RFC 6455 §5-§7), sans-I/O.

Feed it bytes with :meth:`Connection.receive_data`; it returns the events
they complete (messages as ``str``/``bytes``, control frames as
:mod:`.events` dataclasses) and queues any automatic answers (pongs, the
close reply, the close frame that fails a connection) for
:meth:`Connection.data_to_send`.  The ``send_*`` methods return the bytes to
write.  Nothing here does I/O or knows about asyncio.
"""

from __future__ import annotations

import enum
import os
import struct

from ..exceptions import InvalidState, PayloadTooBig, ProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from . import speedups
from .deflate import PerMessageDeflate
from .events import Close, Event, Ping, Pong
from .fastpath import PARSE as _C_PARSE
from .frames import Opcode, apply_mask, encode_frame, encode_header, pack_close, unpack_close
from .utf8 import Utf8Decoder, decode_text

__all__ = ["Connection", "Side", "State"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
_PING = Opcode.PING
_PONG = Opcode.PONG
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
_UNLIMITED = 1 << 62
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


class Side(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.IntEnum):
    """OPEN: data flows. CLOSING: our close frame is sent, the peer's not yet
    received. CLOSED: the closing handshake is complete or the connection
    failed; no more frames are read or may be sent."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class _MaskPool:
    """Masking keys from the OS CSPRNG (§10.3), fetched in batches to save syscalls."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos >= len(self._pool):
            self._pool = os.urandom(4096)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


_MASKS = _MaskPool()


class Connection:
    """One side of an open WebSocket connection.

    ``limits`` bounds what the peer can make us buffer; ``deflate`` is the
    permessage-deflate codec when the handshake negotiated it.
    """

    __slots__ = (
        "_asm",
        "_buf",
        "_max_frame",
        "_max_message",
        "_max_whole",
        "_msg_compressed",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_outgoing",
        "_room",
        "_room_bytes",
        "_tx_compressed",
        "_tx_opcode",
        "_utf8",
        "close_rcvd",
        "close_sent",
        "deflate",
        "eof_received",
        "error",
        "is_client",
        "limits",
        "side",
        "state",
    )

    def __init__(
        self,
        side: Side,
        *,
        limits: Limits = DEFAULT_LIMITS,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.side = side
        self.is_client = side is Side.CLIENT
        self.limits = limits
        self.deflate = deflate
        self.state = State.OPEN
        #: The close frame received, and the one sent, once they are.
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        #: The protocol error that failed the connection, if one did.
        self.error: ProtocolError | None = None
        #: Whether the transport hit EOF (the peer closed TCP).
        self.eof_received = False
        self._max_frame = limits.max_frame_size
        self._max_message = limits.max_message_size
        self._max_whole = min(self._max_frame, self._max_message)
        # Received bytes not parsed yet: a bytearray while there are some, the
        # shared b"" otherwise (an idle connection holds no buffer of its own).
        self._buf: bytearray | bytes = b""
        # The frame whose payload is being collected across reads, with its
        # first header byte (see _start_assembly).
        self._asm: tuple[int, speedups.AssemblerPy] | None = None
        self._outgoing: list[bytes] = []
        # The message being reassembled: its opcode (0 when none), parts and size.
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_parts: list[bytes] | list[str] = []
        self._msg_size = 0
        self._utf8: Utf8Decoder | None = None
        self._room = _UNLIMITED
        # Bytes the messages completed by this call may still take (max_bytes);
        # once spent, _room is set to 0, so the parse loops check one number.
        self._room_bytes = _UNLIMITED
        # The fragmented message being sent, if any (its opcode, 0 when none).
        self._tx_opcode = 0
        self._tx_compressed = False

    # -- receiving ---------------------------------------------------------

    def receive_data(
        self,
        data: bytes | bytearray | memoryview,
        max_messages: int | None = None,
        max_bytes: int | None = None,
    ) -> list[Event]:
        """Process bytes from the network; return the events they complete.

        ``max_messages`` stops parsing once that many data messages are
        complete, ``max_bytes`` once they add up to that many bytes (after
        decompression; the message that reaches it is returned whole, so one
        call returns at most ``max_bytes`` plus one ``max_message_size``);
        the rest stays buffered, not parsed nor inflated (see
        :attr:`pending_bytes`), until the next call, which may pass no new
        data. The I/O layer uses them to keep one socket read of small
        compressed frames from inflating into more than its queue holds.
        ``data`` is not referenced once the call returns, so it may be a view
        of a buffer the caller reuses.
        """
        events: list[Event] = []
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return events  # §5.5.1: nothing after a close frame is processed
        self._room = _UNLIMITED if max_messages is None else max_messages
        self._room_bytes = _UNLIMITED if max_bytes is None else max_bytes
        buf = self._buf
        if buf:
            assert isinstance(buf, bytearray)  # never b"" here: that is empty
            buf += data
            self._receive(buf, events)
        else:
            self._receive(data, events)
        return events

    def get_buffer(self, scratch: memoryview) -> memoryview:
        """Where the next bytes read from the network go: a view of ``scratch``.

        For I/O layers that read into a buffer (``asyncio.BufferedProtocol``)
        and reuse one ``scratch`` buffer for every connection: the bytes still
        pending here are copied to its front and the view after them is
        returned. Call :meth:`buffer_updated` with the same ``scratch`` and the
        number of bytes read before ``scratch`` is used for anything else.
        Frames are then parsed where the socket put them, instead of every
        read being appended to (copied into) a buffer of our own first.
        """
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
        max_messages: int | None = None,
        max_bytes: int | None = None,
    ) -> list[Event]:
        """Process ``nbytes`` read into the view :meth:`get_buffer` returned.

        The result is what :meth:`receive_data` gives for those bytes.
        """
        k = len(self._buf)
        half = len(scratch) >> 1
        if k > half:
            return self.receive_data(scratch[half : half + nbytes], max_messages, max_bytes)
        events: list[Event] = []
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return events  # §5.5.1: nothing after a close frame is processed
        self._room = _UNLIMITED if max_messages is None else max_messages
        self._room_bytes = _UNLIMITED if max_bytes is None else max_bytes
        if k:
            self._buf = b""  # get_buffer copied these bytes to the front
        self._receive(scratch[: k + nbytes], events)
        return events

    def _receive(self, view: bytes | bytearray | memoryview, events: list[Event]) -> None:
        """Parse ``view``: ``self._buf`` itself, or new bytes when it was empty.
        What is left over stays in ``self._buf``, copied out of ``view``."""
        buf = self._buf
        try:
            pos = 0
            if self._asm is not None and self._room > 0:
                pos = self._assemble(view, events)
                if self.close_rcvd is not None:
                    pos = len(view)  # §5.5.1: nothing after a close frame is processed
            if self._asm is None and self.close_rcvd is None:
                pos = self._parse(view, pos, events)
        except ProtocolError as exc:
            self._fail(exc)
            self._buf = b""
            self._asm = None
            return
        if pos >= len(view):
            if buf:
                self._buf = b""
        elif view is buf:
            assert isinstance(buf, bytearray)  # never b"" here: that is empty
            del buf[:pos]
        else:
            self._buf = bytearray(view[pos:])

    def _start_assembly(
        self, b0: int, length: int, buf: bytes | bytearray | memoryview, head: int
    ) -> None:
        """Collect the payload of the frame whose header (mask key included)
        ends at ``head`` across reads, with a :class:`.speedups.Assembler`.

        Reads then go through the scratch buffer into the message itself
        instead of piling up in ``self._buf``. The header passed its checks,
        so ``length`` is at most max_frame_size: the bound a peer may make us
        reserve for one frame."""
        mask = bytes(buf[head - 4 : head]) if not self.is_client else b""
        assembler = speedups.Assembler(length, mask)
        assembler.feed(buf, head, len(buf))
        self._asm = (b0, assembler)

    def _assemble(self, buf: bytes | bytearray | memoryview, events: list[Event]) -> int:
        """Feed the frame being assembled from the start of ``buf``; return the bytes used."""
        assert self._asm is not None
        b0, assembler = self._asm
        pos = assembler.feed(buf, 0, len(buf))
        if not assembler.missing:
            self._asm = None
            # Its header was checked when it arrived (_check_header), and
            # nothing that check depends on changes before its payload ends.
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            rsv1 = b0 & 0x40
            # A control frame only when ASSEMBLE_AT is under 126 (tests).
            self._dispatch(opcode, fin, rsv1, assembler.take(), events)
        return pos

    def _dispatch(
        self, opcode: int, fin: int, rsv1: int, payload: bytes, events: list[Event]
    ) -> None:
        """Hand on one complete frame whose header passed _check_header: a
        control frame, a whole message, or one fragment of a message."""
        if opcode >= 8:
            self._control(opcode, payload, events)
        elif fin and opcode and not rsv1:
            # A whole uncompressed message in one frame (the parse loops
            # inline this branch: it is their hot path).
            events.append(decode_text(payload) if opcode == _TEXT else payload)
            self._room -= 1
            self._spend(len(payload))
        else:
            self._data(opcode, fin, rsv1, payload, events)

    def _spend(self, size: int) -> None:
        """Count a completed message of ``size`` bytes against ``max_bytes``."""
        self._room_bytes -= size
        if self._room_bytes <= 0:
            self._room = 0

    def _parse(self, buf: bytes | bytearray | memoryview, pos: int, events: list[Event]) -> int:
        """Parse every complete frame in ``buf`` from ``pos``; return where parsing stopped.

        A frame of ``speedups.ASSEMBLE_AT`` bytes or more whose header is
        complete but whose payload is not goes to an assembler, and parsing
        stops at the end of ``buf`` (see :meth:`_start_assembly`).
        """
        if _C_PARSE is not None:  # the same loop over C-parsed frames (.fastpath)
            return _C_PARSE(self, buf, pos, events)
        end = len(buf)
        expect_mask = not self.is_client
        # max_bytes without counting every frame: if the bytes to parse cannot
        # spend it, they are counted once, here (the messages _data inflates
        # are counted again, whole, when complete); else each whole frame.
        each = end - pos >= self._room_bytes
        if not each:
            self._room_bytes -= end - pos
        while end - pos >= 2 and self._room > 0:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                head = pos + 2
            elif length == 126:
                head = pos + 4
                if end < head:
                    break
                length = int.from_bytes(buf[pos + 2 : head], "big")
            else:
                head = pos + 10
                if end < head:
                    break
                length = int.from_bytes(buf[pos + 2 : head], "big")
                if length >> 63:
                    # §5.2: the most significant bit of a 64-bit length MUST be 0.
                    raise ProtocolError("invalid 64-bit frame length")
            masked = b1 & 0x80
            if bool(masked) is not expect_mask:
                # §5.1: a client MUST mask every frame; a server MUST NOT.
                raise ProtocolError(
                    "unmasked frame from client" if expect_mask else "masked frame from server"
                )
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            rsv1 = b0 & 0x40
            # Every header check happens before the payload is waited for, so
            # nothing over a limit is ever buffered. A whole small text or
            # binary frame outside a fragmented message passes them all, so
            # only other frames pay for the full check.
            if (b0 != 0x81 and b0 != 0x82) or self._msg_opcode or length > self._max_whole:
                self._check_header(opcode, fin, rsv1, b0 & 0x30, length)
            if masked:
                key = bytes(buf[head : head + 4])
                head += 4
            stop = head + length
            if end < stop:
                if length >= speedups.ASSEMBLE_AT and end >= head:
                    self._start_assembly(b0, length, buf, head)
                    return end
                break
            payload: bytes = (
                bytes(buf[head:stop])
                if masked == 0
                else apply_mask(memoryview(buf)[head:stop], key)
            )
            pos = stop
            if fin and 0 < opcode < 8 and not rsv1:
                # Fast path: a whole uncompressed message in one frame.
                events.append(decode_text(payload) if opcode == _TEXT else payload)
                self._room -= 1
                if each:
                    self._spend(length)
            else:
                self._dispatch(opcode, fin, rsv1, payload, events)
                if self.close_rcvd is not None:
                    return end  # ignore anything after the close frame
        return pos

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
            if rsv1 and self.deflate is None:
                raise ProtocolError("RSV1 set without permessage-deflate")
        if length > self._max_frame:
            raise PayloadTooBig(f"frame of {length} bytes exceeds max_frame_size")
        compressed = rsv1 or (opcode == _CONT and self._msg_compressed)
        # Only a continuation adds to the size so far: _msg_size still holds the
        # previous message's size until _data() starts the next one (§5.4).
        so_far = self._msg_size if opcode == _CONT else 0
        if not compressed and so_far + length > self._max_message:
            raise PayloadTooBig("message exceeds max_message_size")

    def _data(self, opcode: int, fin: int, rsv1: int, payload: bytes, events: list[Event]) -> None:
        if opcode != _CONT:
            self._msg_opcode = opcode
            self._msg_compressed = bool(rsv1)
            self._msg_size = 0
            self._msg_parts = []
            self._utf8 = Utf8Decoder() if opcode == _TEXT and not fin else None
        data: bytes = payload
        if self._msg_compressed:
            assert self.deflate is not None
            data = self.deflate.decompress(payload, bool(fin), self._max_message - self._msg_size)
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
        if opcode == _PING:
            # §5.5.2: answer with a pong carrying the same payload, unless closing.
            if self.close_sent is None:
                self._outgoing.append(self._frame(_PONG, payload))
            events.append(Ping(payload))
        elif opcode == _PONG:
            events.append(Pong(payload))
        else:
            code, reason = unpack_close(payload)
            close = Close(code, reason)
            self.close_rcvd = close
            if self.close_sent is None:
                # §5.5.1: reply with a close frame, echoing the status code.
                reply = Close(code)
                self._outgoing.append(self._frame(_CLOSE, pack_close(code)))
                self.close_sent = reply
            self.state = State.CLOSED
            events.append(close)

    def _fail(self, exc: ProtocolError) -> None:
        """Fail the WebSocket connection (§7.1.7) with the code the error carries."""
        self.error = exc
        if self.close_sent is None:
            reason = str(exc).encode()[:123].decode(errors="ignore")
            self.close_sent = Close(exc.close_code, reason)
            self._outgoing.append(self._frame(_CLOSE, pack_close(exc.close_code, reason)))
        self.state = State.CLOSED

    @property
    def pending_bytes(self) -> int:
        """Received bytes not parsed yet (an incomplete frame, or held back by
        max_messages or max_bytes).

        A large frame's payload collected across reads (see
        :meth:`_start_assembly`) is not counted: it needs more bytes to go on.
        """
        return len(self._buf)

    def receive_eof(self) -> None:
        """The peer closed the TCP connection."""
        self.eof_received = True
        self.state = State.CLOSED

    def data_to_send(self) -> list[bytes]:
        """Bytes queued by receiving (pongs, close replies); drained by the call."""
        out = self._outgoing
        if out:
            self._outgoing = []
        return out

    @property
    def close_transport(self) -> bool:
        """Whether this side should close TCP once its queued bytes are written.

        §7.1.1: the server closes first after the closing handshake; a client
        waits for the server to do so, except when failing the connection.
        """
        return self.state is State.CLOSED and (not self.is_client or self.error is not None)

    # -- sending -----------------------------------------------------------

    def _frame(
        self,
        opcode: int,
        payload: bytes | bytearray | memoryview,
        fin: bool = True,
        rsv1: bool = False,
    ) -> bytes:
        return encode_frame(
            opcode, payload, fin=fin, rsv1=rsv1, mask=_MASKS.take() if self.is_client else b""
        )

    def _check_open(self) -> None:
        if self.state is not State.OPEN or self.close_sent is not None:
            raise InvalidState(f"cannot send data: connection is {self.state.name.lower()}")

    def send_text(self, text: str) -> bytes:
        """Frame a whole text message."""
        return self._message(_TEXT, text.encode())

    def send_binary(self, data: bytes | bytearray | memoryview) -> bytes:
        """Frame a whole binary message."""
        return self._message(_BINARY, data)

    def send(self, message: str | bytes | bytearray | memoryview) -> bytes:
        """Frame a whole message: text for ``str``, binary for bytes-like."""
        if isinstance(message, str):
            payload: bytes | bytearray | memoryview = message.encode()
            opcode = 0x81  # FIN + text
        else:
            payload = message
            opcode = 0x82  # FIN + binary
        if (
            self.is_client
            or self.deflate is not None
            or self.state is not State.OPEN
            or self.close_sent is not None
            or self._tx_opcode
        ):
            return self._message(opcode & 0x0F, payload)
        # Fast path, the server's usual case: an unmasked, uncompressed frame
        # built here instead of through the general encoder (§5.2).
        n = len(payload)
        if n < 126:
            return bytes((opcode, n)) + payload
        if n < 0x10000:
            return _PACK_16(opcode, 126, n) + payload
        return _PACK_64(opcode, 127, n) + payload

    def send_vectored(self, message: str | bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """Frame a whole message as ``(header, payload)``, to be written back to back.

        The payload is not copied into the frame: a vectored write
        (``transport.writelines``) sends a large message without that copy.
        A ``bytes`` message sent unmasked and uncompressed is ``payload``
        itself; other bytes-like objects are copied, since their owner may
        change them before they are written.
        """
        if isinstance(message, str):
            payload: bytes | bytearray | memoryview = message.encode()
            opcode = _TEXT
        else:
            payload = message
            opcode = _BINARY
        self._check_open()
        if self._tx_opcode:
            raise InvalidState("a fragmented message is being sent")
        rsv1 = False
        deflate = self.deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            payload = deflate.compress(payload)
            rsv1 = True
        if self.is_client:
            mask = _MASKS.take()
            head = encode_header(opcode, len(payload), rsv1=rsv1, mask=mask)
            return head, apply_mask(payload, mask)
        head = encode_header(opcode, len(payload), rsv1=rsv1)
        return head, payload if type(payload) is bytes else bytes(payload)

    def _message(self, opcode: int, payload: bytes | bytearray | memoryview) -> bytes:
        self._check_open()
        if self._tx_opcode:
            raise InvalidState("a fragmented message is being sent")
        deflate = self.deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            return self._frame(opcode, deflate.compress(payload), rsv1=True)
        return self._frame(opcode, payload)

    def send_fragment(self, data: str | bytes | bytearray | memoryview, fin: bool) -> bytes:
        """Frame one fragment of a message sent piece by piece (§5.4).

        The first fragment's type (``str`` or bytes-like) sets the message type;
        the rest must match. ``fin=True`` ends the message.
        """
        self._check_open()
        payload = data.encode() if isinstance(data, str) else data
        opcode = _TEXT if isinstance(data, str) else _BINARY
        rsv1 = False
        if self._tx_opcode:
            if opcode != self._tx_opcode:
                raise TypeError("all fragments of a message must be str, or all bytes")
            frame_opcode: int = _CONT
        else:
            frame_opcode = self._tx_opcode = opcode
            self._tx_compressed = rsv1 = self.deflate is not None
        if self._tx_compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(payload, final=fin)
        if fin:
            self._tx_opcode = 0
        return self._frame(frame_opcode, payload, fin=fin, rsv1=rsv1)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Frame a ping (§5.5.2); at most 125 bytes."""
        return self._control_frame(_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """Frame an unsolicited pong (§5.5.3), e.g. a unidirectional heartbeat."""
        return self._control_frame(_PONG, payload)

    def _control_frame(self, opcode: int, payload: bytes) -> bytes:
        if len(payload) > 125:
            raise ValueError("control frame payload must be 125 bytes or less")
        if self.close_sent is not None or self.state is State.CLOSED:
            raise InvalidState("cannot send a control frame after the close frame")
        return self._frame(opcode, payload)

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Frame our close frame (§5.5.1), starting or completing the closing handshake.

        ``code`` 1005 sends a close frame without a status.
        """
        if self.close_sent is not None or self.state is State.CLOSED:
            raise InvalidState("close frame already sent")
        frame = self._frame(_CLOSE, pack_close(code, reason))
        self.close_sent = Close(code, reason)
        self.state = State.CLOSED if self.close_rcvd is not None else State.CLOSING
        return frame


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


def encode_broadcast_frame(message: str | bytes) -> bytes:
    """One unmasked, uncompressed frame for ``message``, writable to every server connection.

    Uncompressed messages never enter the receiver's LZ77 window (RFC 7692 §6),
    so the same bytes are valid on connections with and without
    permessage-deflate, whatever their context.
    """
    if isinstance(message, str):
        return encode_frame(_TEXT, message.encode())
    return encode_frame(_BINARY, message)
