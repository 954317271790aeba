"""Fuzz targets: one function per parser, each taking the raw fuzz input.

A target raises :class:`AssertionError` (or any exception it does not expect)
when it finds a bug; it returns normally for input the parser handled as
documented, including input it refused with a documented exception.

What each target holds the code to:

* ``frames_server`` / ``frames_client`` (and ``*_deflate``): the sans-I/O
  :meth:`tether.protocol.Connection.receive_data` never raises (a protocol
  error fails the connection instead, with the close code the error carries:
  1002, 1007 or 1009); no message over ``max_message_size`` is ever
  returned, nor more messages than ``max_messages`` or more bytes than
  ``max_bytes`` plus one message in one call; and, with the C parser in
  use, the pure-Python loop returns the same events and close code for the
  same bytes (differential).
* ``deflate``: :meth:`PerMessageDeflate.decompress` raises only
  :class:`ProtocolError` / :class:`PayloadTooBig` and never returns more than
  its ``budget``; what we compress inflates back to the same bytes.
* ``handshake_request``: ``parse_request`` raises only
  :class:`HandshakeError` / :class:`PayloadTooBig`, and with the C parser
  in use answers as the pure-Python one does (differential); ``ServerHandshake.accept``
  only :class:`HandshakeRejected`, and ``accept_encoded`` (the plain case in C)
  answers as ``accept`` does (differential); the 101 or error answer parses back as the
  same status (no header injection) and the 101 passes the client's checks.
* ``handshake_response``: ``parse_response`` + ``ClientHandshake.check``
  raise only :class:`HandshakeError` / :class:`PayloadTooBig`.
* ``engineio``: ``decode_packet``, ``decode_payload`` and
  ``Handshake.from_packet`` raise only :class:`PacketError`; a decoded packet
  re-encodes to an equal packet.
* ``socketio``: :class:`tether.realtime.protocol.socketio.Decoder` raises only
  :class:`PacketError`; a decoded packet re-encodes and decodes back equal.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from tether.exceptions import (
    HandshakeError,
    HandshakeRejected,
    PacketError,
    PayloadTooBig,
    ProtocolError,
)
from tether.limits import Limits
from tether.protocol import connection as core
from tether.protocol import speedups
from tether.protocol.deflate import DeflateOptions, DeflateParams, PerMessageDeflate
from tether.protocol.events import Close, Event, Ping, Pong
from tether.protocol.handshake import ClientHandshake, ServerHandshake, accept_key
from tether.protocol.http import Request, parse_request, parse_request_py, parse_response
from tether.realtime.protocol import engineio, socketio

__all__ = ["ACCEPT_PLACEHOLDER", "TARGETS", "Input"]

Target = Callable[[bytes], None]

#: In ``handshake_response`` input, replaced by the right Sec-WebSocket-Accept,
#: so that the fuzzer reaches the checks after that one.
ACCEPT_PLACEHOLDER = b"{ACCEPT}"

#: Every close code a receiving side may fail a connection with (RFC 6455 §7.4.1).
FAIL_CODES = frozenset({1002, 1007, 1009})


class Input:
    """Reads configuration bytes off the front of a fuzz input."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def rest(self) -> bytes:
        return self.data[self.pos :]


def _split(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes (one piece when ``size`` is 0)."""
    if size <= 0:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# -- frames ------------------------------------------------------------------


class _CountingDeflate(PerMessageDeflate):
    """Checks that no single inflation returns more than its budget."""

    def decompress(self, data: bytes | bytearray | memoryview, final: bool, budget: int) -> bytes:
        out = super().decompress(data, final, budget)
        assert len(out) <= budget, (len(out), budget)
        return out


def _deflate_params(cfg: int) -> DeflateParams:
    return DeflateParams(
        server_no_context_takeover=bool(cfg & 1),
        client_no_context_takeover=bool(cfg & 2),
        server_max_window_bits=8 + (cfg >> 2) % 8,
        client_max_window_bits=8 + (cfg >> 5) % 8,
    )


def _run_frames(
    side: core.Side, cfg: int, chunk: int, room: int, payload: bytes, deflate_cfg: int | None
) -> tuple[list[Event], int | None, core.Connection]:
    # Small limits so that the fuzzer reaches them; the large variant lets
    # frames past speedups.ASSEMBLE_AT (8 KiB) reach the assembler.
    if cfg & 1:
        limits = Limits(max_message_size=40_000, max_frame_size=20_000)
    else:
        limits = Limits(max_message_size=300, max_frame_size=200)
    deflate = None
    if deflate_cfg is not None:
        deflate = _CountingDeflate(
            _deflate_params(deflate_cfg),
            is_client=side is core.Side.CLIENT,
            options=DeflateOptions(),
        )
    conn = core.Connection(side, limits=limits, deflate=deflate)
    max_messages = None if room == 0 else room
    # A byte budget too (max_queue_bytes), from 0 (one message a call) up.
    max_bytes = ((cfg >> 2) % 16) * 50 if cfg & 2 else None
    events: list[Event] = []
    for piece in _split(payload, chunk):
        got = conn.receive_data(piece, max_messages, max_bytes)
        _check_room(got, max_messages, max_bytes, limits)
        events += got
        # What the budgets held back is parsed by calls without new data.
        while got and conn.pending_bytes:
            got = conn.receive_data(b"", max_messages, max_bytes)
            _check_room(got, max_messages, max_bytes, limits)
            events += got
    for event in events:
        if isinstance(event, str):
            assert len(event.encode("utf-8", "surrogatepass")) <= limits.max_message_size
        elif isinstance(event, bytes):
            assert len(event) <= limits.max_message_size
        else:
            assert isinstance(event, (Ping, Pong, Close)), event
    # A message being reassembled never holds more than the limit either.
    assert conn._reader._msg_size <= limits.max_message_size, conn._reader._msg_size
    code = None
    if conn.error is not None:
        assert isinstance(conn.error, ProtocolError)
        assert conn.state is core.State.CLOSED
        assert conn.close_sent is not None
        code = conn.close_sent.code
        assert code == conn.error.close_code
        assert code in FAIL_CODES, code
    for frame in conn.data_to_send():
        assert isinstance(frame, bytes) and frame
    return events, code, conn


def _check_room(
    events: list[Event], max_messages: int | None, max_bytes: int | None, limits: Limits
) -> None:
    """One call completed at most max_messages messages, and at most
    max_bytes bytes of them plus the one that crossed it."""
    sizes = [len(e) for e in events if isinstance(e, (str, bytes))]
    assert max_messages is None or len(sizes) <= max(max_messages, 1), (sizes, max_messages)
    if max_bytes is not None and sizes:
        assert sum(sizes[:-1]) < max(max_bytes, 1), (sizes, max_bytes)


def _frames(side: core.Side, deflate: bool) -> Target:
    def target(data: bytes) -> None:
        inp = Input(data)
        cfg, chunk, room = inp.byte(), inp.byte() % 40, inp.byte() % 4
        deflate_cfg = inp.byte() if deflate else None
        payload = inp.rest()
        events, code, _ = _run_frames(side, cfg, chunk, room, payload, deflate_cfg)
        saved = speedups.parse_frames  # the step the connection's frame loop calls
        if saved is not speedups.parse_frames_py:
            # Differential: the frame loop over the pure-Python twin of the C
            # parse_frames must agree with it.
            speedups.parse_frames = speedups.parse_frames_py
            try:
                py_events, py_code, _ = _run_frames(side, cfg, chunk, room, payload, deflate_cfg)
            finally:
                speedups.parse_frames = saved
            assert py_code == code, (py_code, code)
            assert py_events == events, (py_events, events)

    return target


# -- permessage-deflate ------------------------------------------------------


def deflate(data: bytes) -> None:
    inp = Input(data)
    cfg, budget_cfg, split = inp.byte(), inp.byte(), inp.byte() % 16
    is_client = bool(cfg & 0x80)
    params = _deflate_params(cfg)
    budget = budget_cfg * 64
    payload = inp.rest()
    inflater = PerMessageDeflate(params, is_client=is_client, options=DeflateOptions())
    pieces = _split(payload, split * 8)
    so_far = 0
    try:
        for i, piece in enumerate(pieces):
            out = inflater.decompress(piece, i == len(pieces) - 1, budget - so_far)
            so_far += len(out)
            assert so_far <= budget, (so_far, budget)
    except (ProtocolError, PayloadTooBig):
        pass
    # Round trip: what the peer compresses with the same parameters inflates back.
    sender = PerMessageDeflate(params, is_client=not is_client, options=DeflateOptions())
    receiver = PerMessageDeflate(params, is_client=is_client, options=DeflateOptions())
    for message in _split(payload, 97)[:4]:
        wire = sender.compress(message)
        assert receiver.decompress(wire, True, len(message)) == message
    # And a raw zlib stream decoded with a budget stops there.
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = bomb.compress(payload * 8) + bomb.flush(zlib.Z_SYNC_FLUSH)
    fresh = PerMessageDeflate(DeflateParams(), is_client=False, options=DeflateOptions())
    try:
        out = fresh.decompress(stream, True, budget)
        assert len(out) <= budget
    except (ProtocolError, PayloadTooBig):
        pass


# -- opening handshake -------------------------------------------------------

_LIMITS = {"max_bytes": 2048, "max_count": 32}


def _summary(parsed: tuple[Request, int] | None) -> object:
    if parsed is None:
        return None
    request, used = parsed
    return request.method, request.path, list(request.headers), used


def _parse_checked(buf: bytearray) -> tuple[Request, int] | None:
    """parse_request, checked against the pure-Python parser."""
    try:
        expected = _summary(parse_request_py(buf, **_LIMITS))
    except (HandshakeError, PayloadTooBig) as exc:
        expected = type(exc)
    try:
        parsed = parse_request(buf, **_LIMITS)
    except (HandshakeError, PayloadTooBig) as exc:
        assert type(exc) is expected, (buf, expected)
        raise
    assert _summary(parsed) == expected, (buf, expected)
    return parsed


def handshake_request(data: bytes) -> None:
    inp = Input(data)
    chunk = inp.byte() % 64
    buf = bytearray()
    parsed = None
    try:
        for piece in _split(inp.rest(), chunk):
            buf += piece
            parsed = _parse_checked(buf)
            if parsed is not None:
                break
    except (HandshakeError, PayloadTooBig):
        return
    if parsed is None:
        return
    request, used = parsed
    assert 0 < used <= len(buf)
    assert isinstance(request, Request)
    plain = ServerHandshake(subprotocols=["chat"])
    assert _answer(plain, request, True) == _answer(plain, request, False)
    server = ServerHandshake(
        subprotocols=["chat", "v2.chat"],
        origins=["https://example.com", None],
        compression=DeflateOptions(),
    )
    try:
        response, result = server.accept(request)
    except HandshakeRejected as exc:
        wire = exc.response.encode()
        again = parse_response(wire, max_bytes=1 << 20, max_count=1000)
        assert again is not None and again[0].status == exc.response.status, wire
        return
    assert response.status == 101
    wire = response.encode()
    again = parse_response(wire, max_bytes=1 << 20, max_count=1000)
    assert again is not None, wire
    headers = again[0].headers
    key = request.headers.get("Sec-WebSocket-Key")
    assert key is not None
    assert headers.get_all("Sec-WebSocket-Accept") == [accept_key(key)], wire
    if result.subprotocol is not None:
        assert result.subprotocol in ("chat", "v2.chat")
    if result.deflate is not None:
        # The answer is something our own client accepts for that offer.
        PerMessageDeflate(result.deflate, is_client=False, options=DeflateOptions())


def _answer(server: ServerHandshake, request: Request, encoded: bool) -> object:
    """``accept_encoded``'s answer, or ``accept``'s and its ``encode``, comparable."""
    try:
        if encoded:
            response, result, wire = server.accept_encoded(request)
        else:
            response, result = server.accept(request)
            wire = response.encode()
    except HandshakeRejected as exc:
        return str(exc), exc.response.encode()
    return list(response.headers), result, wire


def handshake_response(data: bytes) -> None:
    inp = Input(data)
    chunk = inp.byte() % 64
    offers = (DeflateOptions(), DeflateOptions(client_max_window_bits=10, server_max_window_bits=9))
    client = ClientHandshake(
        host="example.com", path="/chat", subprotocols=["chat", "superchat"], compression=offers
    )
    raw = inp.rest().replace(ACCEPT_PLACEHOLDER, accept_key(client.key).encode())
    buf = bytearray()
    try:
        for piece in _split(raw, chunk):
            buf += piece
            parsed = parse_response(buf, **_LIMITS)
            if parsed is not None:
                response, used = parsed
                assert 0 < used <= len(buf)
                result = client.check(response)
                if result.deflate is not None:
                    assert result.deflate_offer in offers
                    PerMessageDeflate(result.deflate, is_client=True, options=DeflateOptions())
                if result.subprotocol is not None:
                    assert result.subprotocol in ("chat", "superchat")
                return
    except (HandshakeError, PayloadTooBig):
        return


# -- Engine.IO / Socket.IO ---------------------------------------------------


def engine_io(data: bytes) -> None:
    inp = Input(data)
    mode, limit = inp.byte() % 4, 64 + inp.byte() * 4
    body = inp.rest()
    text = body.decode("utf-8", "replace")
    try:
        if mode == 0:
            packet = engineio.decode_packet(text, max_payload=limit)
            if packet.type is engineio.PacketType.OPEN:
                engineio.Handshake.from_packet(packet)
            _engineio_round_trip(packet, limit)
        elif mode == 1:
            packet = engineio.decode_packet(body, max_payload=limit)
            assert packet.data == body
        elif mode == 2:
            for packet in engineio.decode_payload(body, max_payload=limit):
                _engineio_round_trip(packet, 1 << 30)
        else:
            engineio.decode_payload(text, max_payload=limit)
    except PacketError:
        pass


def _engineio_round_trip(packet: engineio.Packet, limit: int) -> None:
    again = engineio.decode_packet(engineio.encode_packet(packet), max_payload=1 << 30)
    assert again == packet, (packet, again)


def socket_io(data: bytes) -> None:
    inp = Input(data)
    limit, most = 32 + inp.byte() * 8, inp.byte() % 5
    decoder = socketio.Decoder(max_payload=limit, max_attachments=most)
    # Messages are separated by NUL; one starting with 0x01 is an attachment.
    for message in inp.rest().split(b"\x00"):
        try:
            if message[:1] == b"\x01":
                packet = decoder.feed(message[1:])
            else:
                packet = decoder.feed(message.decode("utf-8", "replace"))
        except PacketError:
            continue
        if packet is None:
            continue
        text, attachments = socketio.encode(packet)
        again = socketio.decode(text, attachments, max_payload=1 << 30, max_attachments=1 << 20)
        assert again == packet, (packet, again)


TARGETS: dict[str, Target] = {
    "frames_server": _frames(core.Side.SERVER, deflate=False),
    "frames_client": _frames(core.Side.CLIENT, deflate=False),
    "frames_server_deflate": _frames(core.Side.SERVER, deflate=True),
    "frames_client_deflate": _frames(core.Side.CLIENT, deflate=True),
    "deflate": deflate,
    "handshake_request": handshake_request,
    "handshake_response": handshake_response,
    "engineio": engine_io,
    "socketio": socket_io,
}
