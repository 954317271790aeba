"""The WebSocket state machine after the handshake (RFC 6455 §5-§7), sans-I/O.

Feed it bytes with :meth:`Connection.receive_data`; it returns the events
they complete (messages as ``str``/``bytes``, control frames as
:mod:`.events` dataclasses) and queues any automatic answers (pongs, the
close reply, the close frame that fails a connection) for
:meth:`Connection.data_to_send`.  The ``send_*`` methods return the bytes to
write.  Nothing here does I/O or knows about asyncio.

The connection owns the state of the closing handshake (§7), the answers to
control frames and the sending side; everything between the bytes received
and the events (buffer, the one frame loop, reassembly, limits) is its
:class:`.reader.Reader`.
"""

from __future__ import annotations

import enum
import os
import struct

from ..exceptions import InvalidState, ProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from .deflate import PerMessageDeflate
from .events import Close, Event, Ping
from .frames import Opcode, apply_mask, encode_frame, encode_header, pack_close
from .reader import Reader

__all__ = ["Connection", "Side", "State"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
_PING = Opcode.PING
_PONG = Opcode.PONG
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


# A server's close replies (unmasked, the received code echoed: §5.5.1) and
# the Close it records as sent, by code. Only valid codes are received
# (unpack_close), so it holds at most the ~2,000 of them, a few bytes each.
_SERVER_CLOSE_REPLIES: dict[int, tuple[bytes, Close]] = {}


class Connection:
    """One side of an open WebSocket connection.

    ``limits`` bounds what the peer can make us buffer; ``deflate`` is the
    permessage-deflate codec when the handshake negotiated it.
    """

    __slots__ = (
        "_outgoing",
        "_reader",
        "_tx_compressed",
        "_tx_opcode",
        "close_rcvd",
        "close_sent",
        "deflate",
        "eof_received",
        "error",
        "is_client",
        "limits",
        "sending_fragmented",
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
        # Everything between the bytes received and the events: buffer,
        # frame loop, reassembly, limits (.reader). §5.1: a server's peer masks.
        self._reader = Reader(masked=not self.is_client, limits=limits, deflate=deflate)
        self._outgoing: list[bytes] = []
        # The fragmented message being sent, if any (its opcode, 0 when none).
        self._tx_opcode = 0
        self._tx_compressed = False
        #: Whether a message sent with :meth:`send_fragment` is unfinished: no
        #: other data frame may be sent before its last fragment (§5.4). An
        #: attribute, not a property: a fan-out reads it once per delivery.
        self.sending_fragmented = False

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
        reader = self._reader
        try:
            reader.receive(data, events, max_messages, max_bytes)
        except ProtocolError as exc:
            self._received(events, exc)
        else:
            if reader.controls:
                self._received(events, None)
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
        return self._reader.get_buffer(scratch)

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
        events: list[Event] = []
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return events  # §5.5.1: nothing after a close frame is processed
        reader = self._reader
        try:
            reader.buffer_updated(scratch, nbytes, events, max_messages, max_bytes)
        except ProtocolError as exc:
            self._received(events, exc)
        else:
            if reader.controls:
                self._received(events, None)
        return events

    def receive_close(self, scratch: memoryview, nbytes: int) -> Close | None:
        """:meth:`buffer_updated` for a connection's usual last read: when its
        ``nbytes`` are exactly one valid close frame, the :class:`Close`
        received, with the reply queued as ``buffer_updated`` would (§5.5.1);
        None, having changed nothing, for anything else: then call
        :meth:`buffer_updated` with the same bytes.
        """
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return None
        close = self._reader.lone_close(scratch, nbytes)
        if close is not None:
            self._close_received(close)
        return close

    def _received(self, events: list[Event], error: ProtocolError | None) -> None:
        """Answer the pings and the close frame in ``events``, in order, then
        fail the connection if the reader raised ``error``."""
        if self._reader.controls:
            self._reader.controls = False
            for event in events:
                if isinstance(event, Ping):
                    # §5.5.2: answer with a pong carrying the same payload, unless closing.
                    if self.close_sent is None:
                        self._outgoing.append(self._frame(_PONG, event.payload))
                elif isinstance(event, Close):
                    self._close_received(event)
        if error is not None:
            self._fail(error)

    def _close_received(self, event: Close) -> None:
        self.close_rcvd = event
        if self.close_sent is None:
            # §5.5.1: reply with a close frame, echoing the status code.
            code = event.code
            reply = None if self.is_client else _SERVER_CLOSE_REPLIES.get(code)
            if reply is None:
                reply = (self._frame(_CLOSE, pack_close(code)), Close(code))
                if not self.is_client:
                    _SERVER_CLOSE_REPLIES[code] = reply
            self._outgoing.append(reply[0])
            self.close_sent = reply[1]
        self.state = State.CLOSED

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

        A large frame's payload collected across reads is not counted: it
        needs more bytes to go on.
        """
        return self._reader.pending_bytes

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
            self.sending_fragmented = True
            self._tx_compressed = rsv1 = self.deflate is not None
        if self._tx_compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(payload, final=fin)
        if fin:
            self._tx_opcode = 0
            self.sending_fragmented = False
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


def encode_broadcast_frame(message: str | bytes) -> bytes:
    """One unmasked, uncompressed frame for ``message``, writable to every server connection.

    Uncompressed messages never enter the receiver's LZ77 window (RFC 7692 §6),
    so the same bytes are valid on connections with and without
    permessage-deflate, whatever their context.
    """
    if isinstance(message, str):
        return encode_frame(_TEXT, message.encode())
    return encode_frame(_BINARY, message)
