"""The sans-I/O connection fed raw bytes (RFC 6455 §5-§7, RFC 7692 §6-§7).

Frames fed to the connection are built by hand with :func:`frame` below, and
frames it produces are decoded by hand with :func:`split_frames`, so neither
side of a test depends on the code under test.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.exceptions import InvalidState, PayloadTooBig, ProtocolError
from tether.limits import Limits
from tether.protocol import (
    Close,
    Connection,
    DeflateOptions,
    DeflateParams,
    PerMessageDeflate,
    Ping,
    Pong,
    Side,
    State,
    encode_broadcast_frame,
)

MASK = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA

# -- hand-made wire helpers ------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length: int | None = None,
) -> bytes:
    """One frame; masked (as a client sends) unless ``mask`` is None.

    ``rsv`` is the 3-bit RSV1-RSV3 field (4 = RSV1); ``length`` overrides the
    encoded length, to build a header alone.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([first, mask_bit | n])
    elif n < 0x10000:
        head = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frame(opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
    """An unmasked frame, as a server sends."""
    return frame(opcode, payload, mask=None, **kwargs)


def split_frames(data: bytes) -> list[tuple[int, bool, int, bool, bytes]]:
    """Decode concatenated frames into (opcode, fin, rsv, masked, unmasked payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        masked = bool(b1 & 0x80)
        key = data[pos : pos + 4] if masked else b"\0\0\0\0"
        pos += 4 if masked else 0
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos : pos + n]))
        pos += n
        frames.append((b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 0x7, masked, payload))
    assert pos == len(data), "trailing bytes after the last frame"
    return frames


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def server(**limits: Any) -> Connection:
    return Connection(Side.SERVER, limits=Limits(**limits))


def client(**limits: Any) -> Connection:
    return Connection(Side.CLIENT, limits=Limits(**limits))


def assert_failed(conn: Connection, code: int, error: type[ProtocolError] = ProtocolError) -> None:
    """The connection failed: one close frame with ``code`` is queued and nothing else."""
    assert conn.state is State.CLOSED
    assert type(conn.error) is error
    assert conn.close_sent is not None
    assert conn.close_sent.code == code
    sent = split_frames(b"".join(conn.data_to_send()))
    assert len(sent) == 1
    opcode, fin, rsv, masked, payload = sent[0]
    assert (opcode, fin, rsv, masked) == (CLOSE, True, 0, conn.is_client)
    assert payload[:2] == struct.pack("!H", code)
    assert payload[2:].decode() == conn.close_sent.reason


def deflate_pair(params: DeflateParams | None = None) -> tuple[Connection, Connection]:
    """A client and a server connection that negotiated ``params`` (default: none)."""
    params = params or DeflateParams()
    options = DeflateOptions()
    c = Connection(Side.CLIENT, deflate=PerMessageDeflate(params, is_client=True, options=options))
    s = Connection(Side.SERVER, deflate=PerMessageDeflate(params, is_client=False, options=options))
    return c, s


def raw_deflate(data: bytes, wbits: int = 15) -> bytes:
    """What a permessage-deflate sender puts in a frame: raw deflate, sync flush, no tail."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


ALL_PARAMS = [
    DeflateParams(snct, cnct, sbits, cbits)
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), range(8, 16), range(8, 16)
    )
]


# -- frame lengths -----------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_receives_7_16_and_64_bit_lengths(n: int) -> None:
    payload = bytes(i % 251 for i in range(n))
    conn = server()
    assert conn.receive_data(frame(BINARY, payload)) == [payload]
    assert conn.data_to_send() == []
    assert conn.state is State.OPEN


@pytest.mark.parametrize(("n", "header_len"), [(125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_sends_minimal_length_encoding(n: int, header_len: int) -> None:
    data = Connection(Side.SERVER).send_binary(b"x" * n)
    assert data == server_frame(BINARY, b"x" * n)
    assert len(data) == header_len + n


@pytest.mark.parametrize("n", [0, 5, 200, 70000])
def test_frame_split_at_every_header_byte_waits_for_the_rest(n: int) -> None:
    payload = b"\xab" * n
    data = frame(BINARY, payload)
    header_len = len(data) - n
    for cut in range(header_len + 2):
        conn = server()
        assert conn.receive_data(data[:cut]) == ([] if cut < len(data) else [payload])
        assert conn.receive_data(data[cut:]) == ([payload] if cut < len(data) else [])
        assert conn.data_to_send() == []


def test_non_minimal_length_encoding_is_tolerated() -> None:
    # §5.2's "minimal number of bytes MUST be used" binds the sender; like most
    # implementations we do not fail a peer for a longer length field.
    head = bytes([0x82, 0x80 | 126]) + (3).to_bytes(2, "big") + MASK
    body = bytes(b ^ MASK[i] for i, b in enumerate(b"abc"))
    assert server().receive_data(head + body) == [b"abc"]


def test_64_bit_length_with_top_bit_set_fails_from_header_alone() -> None:
    conn = server()
    header = bytes([0x82, 0x80 | 127]) + (1 << 63 | 5).to_bytes(8, "big")
    assert conn.receive_data(header) == []
    assert_failed(conn, 1002)


# -- masking ---------------------------------------------------------------------------


def test_unmasked_frame_from_client_fails_1002() -> None:
    conn = server()
    assert conn.receive_data(server_frame(TEXT, b"hi")) == []
    assert_failed(conn, 1002)


def test_masked_frame_from_server_fails_1002() -> None:
    conn = client()
    assert conn.receive_data(frame(TEXT, b"hi")) == []
    assert_failed(conn, 1002)


def test_server_sends_unmasked_frames() -> None:
    conn = Connection(Side.SERVER)
    assert conn.send_text("hé") == b"\x81\x03h\xc3\xa9"
    assert conn.send_binary(b"\x00\x01") == b"\x82\x02\x00\x01"
    assert conn.send("x") == b"\x81\x01x"
    assert conn.send(bytearray(b"y")) == b"\x82\x01y"
    assert conn.send_ping(b"p") == b"\x89\x01p"
    assert conn.send_pong(b"q") == b"\x8a\x01q"


def test_client_masks_every_frame_with_a_fresh_key() -> None:
    conn = Connection(Side.CLIENT)
    first, second = conn.send_text("hello"), conn.send_text("hello")
    assert split_frames(first) == [(TEXT, True, 0, True, b"hello")]
    assert split_frames(second) == [(TEXT, True, 0, True, b"hello")]
    # §5.3: an unpredictable key per frame (a repeat has probability 2**-32).
    assert first[2:6] != second[2:6]
    assert split_frames(conn.send_ping(b"")) == [(PING, True, 0, True, b"")]


# -- reserved bits and opcodes --------------------------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_1002(opcode: int) -> None:
    conn = server()
    assert conn.receive_data(frame(opcode, b"x")) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize("rsv", [0b010, 0b001, 0b011, 0b111])
def test_rsv2_and_rsv3_fail_1002_even_with_deflate(rsv: int) -> None:
    _, conn = deflate_pair()
    assert conn.receive_data(frame(TEXT, b"x", rsv=rsv)) == []
    assert_failed(conn, 1002)


def test_rsv1_without_deflate_fails_1002() -> None:
    conn = server()
    assert conn.receive_data(frame(TEXT, raw_deflate(b"hello"), rsv=0b100)) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_rsv1_on_control_frame_fails_1002_with_deflate(opcode: int) -> None:
    _, conn = deflate_pair()
    assert conn.receive_data(frame(opcode, b"", rsv=0b100)) == []
    assert_failed(conn, 1002)


def test_rsv1_on_continuation_fails_1002_with_deflate() -> None:
    # RFC 7692 §6.1: only the first frame of a message carries RSV1.
    _, conn = deflate_pair()
    assert conn.receive_data(frame(TEXT, b"a", fin=False)) == []
    assert conn.receive_data(frame(CONT, b"b", rsv=0b100)) == []
    assert_failed(conn, 1002)


# -- control frames -----------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_over_125_bytes_fails_1002_from_header(opcode: int) -> None:
    conn = server()
    header = frame(opcode, b"\0" * 126)[:4]  # 2 bytes + 16-bit length, no mask yet
    assert conn.receive_data(header) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame_fails_1002(opcode: int) -> None:
    conn = server()
    assert conn.receive_data(frame(opcode, b"", fin=False)) == []
    assert_failed(conn, 1002)


def test_control_frames_interleaved_in_a_fragmented_message() -> None:
    conn = server()
    data = (
        frame(TEXT, b"Hel", fin=False)
        + frame(PING, b"p1")
        + frame(CONT, b"l", fin=False)
        + frame(PONG, b"p2")
        + frame(CONT, b"o")
    )
    assert conn.receive_data(data) == [Ping(b"p1"), Pong(b"p2"), "Hello"]
    assert conn.data_to_send() == [server_frame(PONG, b"p1")]
    assert conn.state is State.OPEN


def test_close_in_the_middle_of_a_fragmented_message_drops_it() -> None:
    conn = server()
    data = frame(BINARY, b"abc", fin=False) + frame(CLOSE, close_payload(1001))
    assert conn.receive_data(data) == [Close(1001, "")]
    assert conn.data_to_send() == [server_frame(CLOSE, close_payload(1001))]


def test_ping_is_answered_with_a_pong_carrying_the_same_payload() -> None:
    conn = server()
    payload = bytes(range(125))
    assert conn.receive_data(frame(PING, payload)) == [Ping(payload)]
    assert conn.data_to_send() == [server_frame(PONG, payload)]
    assert conn.data_to_send() == []


def test_client_answers_ping_with_a_masked_pong() -> None:
    conn = client()
    assert conn.receive_data(server_frame(PING, b"abc")) == [Ping(b"abc")]
    [pong] = conn.data_to_send()
    assert split_frames(pong) == [(PONG, True, 0, True, b"abc")]


def test_pong_is_reported_and_not_answered() -> None:
    conn = server()
    assert conn.receive_data(frame(PONG, b"x")) == [Pong(b"x")]
    assert conn.data_to_send() == []


# -- fragmentation --------------------------------------------------------------------------


def test_continuation_without_a_message_fails_1002() -> None:
    conn = server()
    assert conn.receive_data(frame(CONT, b"x")) == []
    assert_failed(conn, 1002)


def test_continuation_after_a_finished_message_fails_1002() -> None:
    conn = server()
    data = frame(TEXT, b"a", fin=False) + frame(CONT, b"b") + frame(CONT, b"c")
    assert conn.receive_data(data) == ["ab"]
    assert_failed(conn, 1002)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_during_a_fragmented_one_fails_1002(opcode: int) -> None:
    conn = server()
    assert conn.receive_data(frame(BINARY, b"a", fin=False)) == []
    assert conn.receive_data(frame(opcode, b"b")) == []
    assert_failed(conn, 1002)


def test_fragmented_binary_message_with_empty_fragments() -> None:
    conn = server()
    data = (
        frame(BINARY, b"", fin=False)
        + frame(CONT, b"ab", fin=False)
        + frame(CONT, b"", fin=False)
        + frame(CONT, b"c")
    )
    assert conn.receive_data(data) == [b"abc"]


# -- size limits ----------------------------------------------------------------------------


def test_frame_over_max_frame_size_fails_1009_from_header_alone() -> None:
    conn = server(max_frame_size=1000)
    header = frame(BINARY, length=1001)[:4]
    assert conn.receive_data(header) == []
    assert_failed(conn, 1009, PayloadTooBig)


def test_frame_of_exactly_max_frame_size_is_accepted() -> None:
    conn = server(max_frame_size=1000)
    assert conn.receive_data(frame(BINARY, b"x" * 1000)) == [b"x" * 1000]


def test_single_frame_message_over_max_message_size_fails_1009_from_header() -> None:
    conn = server(max_frame_size=5000, max_message_size=1000)
    assert conn.receive_data(frame(TEXT, length=1001)[:4]) == []
    assert_failed(conn, 1009, PayloadTooBig)


def test_fragmented_message_over_max_message_size_fails_1009_from_header() -> None:
    conn = server(max_frame_size=1000, max_message_size=1000)
    assert conn.receive_data(frame(BINARY, b"x" * 600, fin=False)) == []
    assert conn.receive_data(frame(CONT, length=401)[:4]) == []
    assert_failed(conn, 1009, PayloadTooBig)


def test_fragmented_message_of_exactly_max_message_size_is_accepted() -> None:
    conn = server(max_frame_size=1000, max_message_size=1000)
    data = frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"y" * 400)
    assert conn.receive_data(data) == [b"x" * 600 + b"y" * 400]


def test_message_size_is_counted_per_message() -> None:
    # A finished fragmented message must not count against the next one.
    conn = server(max_frame_size=100, max_message_size=100)
    data = (
        frame(BINARY, b"a" * 60, fin=False)
        + frame(CONT, b"b" * 30)
        + frame(BINARY, b"c" * 100)
        + frame(TEXT, b"d" * 50, fin=False)
        + frame(CONT, b"e" * 50)
    )
    assert conn.receive_data(data) == [b"a" * 60 + b"b" * 30, b"c" * 100, "d" * 50 + "e" * 50]
    assert conn.state is State.OPEN


def test_compressed_message_of_exactly_max_message_size_is_accepted() -> None:
    for size, ok in [(1000, True), (1001, False)]:
        conn = Connection(
            Side.SERVER,
            limits=Limits(max_message_size=1000),
            deflate=PerMessageDeflate(DeflateParams(), is_client=False, options=DeflateOptions()),
        )
        events = conn.receive_data(frame(BINARY, raw_deflate(b"z" * size), rsv=0b100))
        if ok:
            assert events == [b"z" * size]
            assert conn.data_to_send() == []
        else:
            assert events == []
            assert_failed(conn, 1009, PayloadTooBig)


class _SpyDecompressor:
    """Wraps a zlib decompressor and records how many bytes it produced."""

    produced = 0

    def __init__(self, wbits: int) -> None:
        self._inner = _REAL_DECOMPRESSOBJ(wbits)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        _SpyDecompressor.produced += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_REAL_DECOMPRESSOBJ = zlib.decompressobj


@pytest.mark.parametrize("fragmented", [False, True])
def test_decompression_bomb_fails_1009_without_inflating_it(
    monkeypatch: pytest.MonkeyPatch, fragmented: bool
) -> None:
    max_message = 1 << 20
    bomb = raw_deflate(b"\0" * (10 << 20))
    assert len(bomb) < 16 << 10
    monkeypatch.setattr(_SpyDecompressor, "produced", 0)
    monkeypatch.setattr(zlib, "decompressobj", _SpyDecompressor)
    conn = Connection(
        Side.SERVER,
        limits=Limits(max_message_size=max_message),
        deflate=PerMessageDeflate(DeflateParams(), is_client=False, options=DeflateOptions()),
    )
    if fragmented:
        half = len(bomb) // 2
        data = frame(BINARY, bomb[:half], fin=False, rsv=0b100) + frame(CONT, bomb[half:])
    else:
        data = frame(BINARY, bomb, rsv=0b100)
    assert conn.receive_data(data) == []
    assert_failed(conn, 1009, PayloadTooBig)
    assert 0 < _SpyDecompressor.produced <= max_message + 1


def test_invalid_compressed_data_fails_the_connection() -> None:
    _, conn = deflate_pair()
    assert conn.receive_data(frame(BINARY, b"\xff\xff\xff\xff", rsv=0b100)) == []
    assert conn.state is State.CLOSED
    assert conn.close_sent is not None
    assert conn.close_sent.code == 1007
    assert len(conn.data_to_send()) == 1


# -- UTF-8 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [b"\xff", b"\xc3", b"a\x80b", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
)
def test_invalid_utf8_text_fails_1007(payload: bytes) -> None:
    conn = server()
    assert conn.receive_data(frame(TEXT, payload)) == []
    assert_failed(conn, 1007)


def test_invalid_utf8_fails_fast_mid_message() -> None:
    conn = server()
    assert conn.receive_data(frame(TEXT, b"ab", fin=False)) == []
    assert conn.data_to_send() == []
    # The fragment with the bad byte fails the connection before the final one arrives.
    assert conn.receive_data(frame(CONT, b"c\xffd", fin=False)) == []
    assert_failed(conn, 1007)
    assert conn.receive_data(frame(CONT, b"e")) == []
    assert conn.data_to_send() == []


@pytest.mark.parametrize("fragments", [[b"\xed\xa0"], [b"a\xed", b"\xa0"], [b"\xed", b"\xbf"]])
def test_utf16_surrogate_fails_fast_mid_message(fragments: list[bytes]) -> None:
    # ED A0-BF starts a UTF-16 surrogate: no third byte can make it valid (§8.1).
    conn = server()
    for i, fragment in enumerate(fragments):
        assert conn.receive_data(frame(CONT if i else TEXT, fragment, fin=False)) == []
        if i < len(fragments) - 1:
            assert conn.data_to_send() == []
    assert_failed(conn, 1007)


def test_truncated_utf8_at_end_of_fragmented_message_fails_1007() -> None:
    conn = server()
    data = frame(TEXT, b"a", fin=False) + frame(CONT, b"\xe2\x82")
    assert conn.receive_data(data) == []
    assert_failed(conn, 1007)


def test_valid_utf8_split_at_every_byte_boundary() -> None:
    text = "aé€𝄞z"
    encoded = text.encode()
    for i in range(len(encoded) + 1):
        for j in range(i, len(encoded) + 1):
            conn = server()
            data = (
                frame(TEXT, encoded[:i], fin=False)
                + frame(CONT, encoded[i:j], fin=False)
                + frame(CONT, encoded[j:])
            )
            assert conn.receive_data(data) == [text], (i, j)
            assert conn.data_to_send() == []


# -- closing ------------------------------------------------------------------------------


def test_close_frame_with_1_byte_payload_fails_1002() -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE, b"\x03")) == []
    assert_failed(conn, 1002)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_frame_with_invalid_code_fails_1002(code: int) -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE, close_payload(code))) == []
    assert_failed(conn, 1002)
    assert conn.close_rcvd is None


VALID_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 4999]


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_frame_with_valid_code_is_echoed(code: int) -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE, close_payload(code, "bye é".encode()))) == [
        Close(code, "bye é")
    ]
    assert conn.data_to_send() == [server_frame(CLOSE, close_payload(code))]
    assert conn.close_rcvd == Close(code, "bye é")
    assert conn.close_sent == Close(code)
    assert conn.state is State.CLOSED
    assert conn.error is None


def test_close_frame_with_invalid_utf8_reason_fails_1007() -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE, close_payload(1000, b"\xff"))) == []
    assert_failed(conn, 1007)


def test_empty_close_frame_is_echoed_as_an_empty_close() -> None:
    conn = server()
    assert conn.receive_data(frame(CLOSE)) == [Close(1005, "")]
    assert conn.data_to_send() == [b"\x88\x00"]
    assert conn.close_sent == Close(1005)


def test_client_echoes_close_masked() -> None:
    conn = client()
    assert conn.receive_data(server_frame(CLOSE, close_payload(1001))) == [Close(1001)]
    [reply] = conn.data_to_send()
    assert split_frames(reply) == [(CLOSE, True, 0, True, close_payload(1001))]


def test_nothing_is_parsed_after_a_close_frame() -> None:
    conn = server()
    data = frame(CLOSE, close_payload(1000)) + frame(TEXT, b"late") + frame(PING, b"p")
    assert conn.receive_data(data) == [Close(1000)]
    assert conn.data_to_send() == [server_frame(CLOSE, close_payload(1000))]
    assert conn.receive_data(frame(TEXT, b"later") + b"\xff\xff garbage") == []
    assert conn.data_to_send() == []
    assert conn.error is None


def test_nothing_is_parsed_after_a_failure() -> None:
    conn = server()
    assert conn.receive_data(frame(CONT, b"x")) == []
    conn.data_to_send()
    assert conn.receive_data(frame(PING, b"p") + frame(TEXT, b"t")) == []
    assert conn.data_to_send() == []


def test_closing_handshake_started_by_us() -> None:
    conn = server()
    assert conn.send_close(1001, "bye") == server_frame(CLOSE, close_payload(1001, b"bye"))
    assert conn.state is State.CLOSING
    assert conn.close_sent == Close(1001, "bye")
    # Data still flows in until the peer's close; pings are no longer answered.
    assert conn.receive_data(frame(TEXT, b"x") + frame(PING, b"p")) == ["x", Ping(b"p")]
    assert conn.data_to_send() == []
    assert conn.receive_data(frame(CLOSE, close_payload(1001))) == [Close(1001)]
    assert conn.data_to_send() == []
    assert conn.state is State.CLOSED
    assert conn.close_rcvd == Close(1001)


def test_send_close_without_status() -> None:
    conn = server()
    assert conn.send_close(1005) == b"\x88\x00"
    assert conn.close_sent == Close(1005)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(999, ""), (1004, ""), (1006, ""), (5000, ""), (1005, "x"), (1000, "é" * 62)],
)
def test_send_close_rejects_what_may_not_go_on_the_wire(code: int, reason: str) -> None:
    conn = server()
    with pytest.raises(ValueError):
        conn.send_close(code, reason)
    assert conn.state is State.OPEN
    assert conn.close_sent is None


def test_sending_after_our_close_raises_invalid_state() -> None:
    conn = server()
    conn.send_close()
    for call in (
        lambda: conn.send_close(),
        lambda: conn.send("x"),
        lambda: conn.send_text("x"),
        lambda: conn.send_binary(b"x"),
        lambda: conn.send_fragment("x", True),
        lambda: conn.send_ping(),
        lambda: conn.send_pong(),
    ):
        with pytest.raises(InvalidState):
            call()


def test_sending_after_the_peers_close_raises_invalid_state() -> None:
    conn = server()
    conn.receive_data(frame(CLOSE, close_payload(1000)))
    with pytest.raises(InvalidState):
        conn.send("x")
    with pytest.raises(InvalidState):
        conn.send_close()


def test_sending_after_a_failure_raises_invalid_state() -> None:
    conn = server()
    conn.receive_data(frame(7))
    with pytest.raises(InvalidState):
        conn.send(b"x")
    with pytest.raises(InvalidState):
        conn.send_close()


def test_control_frame_payload_over_125_bytes_is_refused() -> None:
    conn = server()
    assert conn.send_ping(b"x" * 125) == server_frame(PING, b"x" * 125)
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 126)
    with pytest.raises(ValueError):
        conn.send_pong(b"x" * 126)


# -- close_transport ----------------------------------------------------------------------


def test_server_closes_the_transport_once_the_closing_handshake_is_done() -> None:
    conn = server()
    assert conn.close_transport is False
    conn.send_close()
    assert conn.close_transport is False
    conn.receive_data(frame(CLOSE, close_payload(1000)))
    assert conn.close_transport is True


def test_server_closes_the_transport_after_echoing_a_close() -> None:
    conn = server()
    conn.receive_data(frame(CLOSE, close_payload(1000)))
    assert conn.close_transport is True


def test_client_waits_for_the_server_to_close_the_transport() -> None:
    # §7.1.1: the server closes TCP first.
    conn = client()
    conn.receive_data(server_frame(CLOSE, close_payload(1000)))
    assert conn.state is State.CLOSED
    assert conn.close_transport is False
    other = client()
    other.send_close()
    other.receive_data(server_frame(CLOSE, close_payload(1000)))
    assert other.close_transport is False


@pytest.mark.parametrize("make", [server, client])
def test_failing_side_closes_the_transport(make: Any) -> None:
    conn = make()
    # A frame masked the wrong way round for this side (§5.1).
    conn.receive_data(frame(TEXT, b"x") if conn.is_client else server_frame(TEXT, b"x"))
    assert conn.error is not None
    assert conn.close_transport is True


def test_receive_eof_closes_the_connection() -> None:
    conn = server()
    conn.receive_eof()
    assert conn.eof_received is True
    assert conn.state is State.CLOSED
    assert conn.receive_data(frame(TEXT, b"x")) == []


# -- sending fragments ----------------------------------------------------------------------


def test_send_fragment_without_deflate() -> None:
    conn = server()
    assert conn.send_fragment("ab", False) == b"\x01\x02ab"
    assert conn.send_ping(b"p") == b"\x89\x01p"  # control frames may interleave
    with pytest.raises(InvalidState):
        conn.send("no")  # another message while one is being sent
    with pytest.raises(TypeError):
        conn.send_fragment(b"bytes", False)
    assert conn.send_fragment("c", False) == b"\x00\x01c"
    assert conn.send_fragment("d", True) == b"\x80\x01d"
    assert conn.send(b"next") == b"\x82\x04next"
    assert conn.send_fragment(b"", True) == b"\x82\x00"


def test_send_fragment_with_deflate() -> None:
    sender, receiver = deflate_pair()
    parts = ["hello ", "hello ", "world" * 20]
    data = [sender.send_fragment(p, i == len(parts) - 1) for i, p in enumerate(parts)]
    frames = [split_frames(d)[0] for d in data]
    # RFC 7692 §6.1: RSV1 on the first frame only.
    assert [(f[0], f[1], f[2]) for f in frames] == [
        (TEXT, False, 0b100),
        (CONT, False, 0),
        (CONT, True, 0),
    ]
    assert receiver.receive_data(b"".join(data)) == ["".join(parts)]
    # An independent inflater agrees.
    inflater = zlib.decompressobj(-15)
    inflated = b"".join(inflater.decompress(f[4]) for f in frames)
    assert inflated + inflater.decompress(b"\x00\x00\xff\xff") == "".join(parts).encode()
    # The context carries over to the next message.
    assert receiver.receive_data(sender.send("hello world")) == ["hello world"]


def test_deflate_min_size_sends_small_messages_uncompressed() -> None:
    params = DeflateParams()
    conn = Connection(
        Side.SERVER,
        deflate=PerMessageDeflate(params, is_client=False, options=DeflateOptions(min_size=10)),
    )
    assert conn.send(b"short") == b"\x82\x05short"
    [(opcode, _, rsv, _, _)] = split_frames(conn.send(b"long enough"))
    assert (opcode, rsv) == (BINARY, 0b100)


# -- broadcast frames -----------------------------------------------------------------------


def test_encode_broadcast_frame() -> None:
    assert encode_broadcast_frame("hé") == b"\x81\x03h\xc3\xa9"
    assert encode_broadcast_frame(b"\x00") == b"\x82\x01\x00"
    assert encode_broadcast_frame(b"x" * 200) == server_frame(BINARY, b"x" * 200)


def test_broadcast_frame_between_compressed_messages_keeps_the_context() -> None:
    receiver, sender = deflate_pair()
    data = sender.send("same text " * 10)
    data += encode_broadcast_frame("broadcast")
    data += sender.send("same text " * 10)
    assert receiver.receive_data(data) == ["same text " * 10, "broadcast", "same text " * 10]
    assert receiver.data_to_send() == []


# -- round trips --------------------------------------------------------------------------------

messages = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=6
)


def _send_all(sender: Connection, msgs: list[str | bytes], fragment_sizes: list[int]) -> bytes:
    """Frame ``msgs``: whole when the matching size is 0, else in fragments of that size."""
    out = []
    for msg, size in zip(msgs, fragment_sizes, strict=True):
        if size == 0:
            out.append(sender.send(msg))
            continue
        pieces = [msg[i : i + size] for i in range(0, len(msg), size)] or [msg]
        for i, piece in enumerate(pieces):
            out.append(sender.send_fragment(piece, i == len(pieces) - 1))
    return b"".join(out)


def _receive_in_chunks(receiver: Connection, data: bytes, cuts: list[int]) -> list[Any]:
    events: list[Any] = []
    points = sorted({min(c, len(data)) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        events += receiver.receive_data(data[start:point])
        start = point
    return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=messages,
    data=st.data(),
    params=st.one_of(st.none(), st.sampled_from(ALL_PARAMS)),
    from_client=st.booleans(),
)
def test_messages_round_trip_split_at_random_boundaries(
    msgs: list[str | bytes], data: st.DataObject, params: DeflateParams | None, from_client: bool
) -> None:
    if params is None:
        c, s = Connection(Side.CLIENT), Connection(Side.SERVER)
    else:
        c, s = deflate_pair(params)
    sender, receiver = (c, s) if from_client else (s, c)
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=len(msgs), max_size=len(msgs)))
    wire = _send_all(sender, msgs, sizes)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    assert _receive_in_chunks(receiver, wire, cuts) == msgs
    assert receiver.data_to_send() == []
    assert receiver.state is State.OPEN


def _strict_inflate(raw: bytes, wbits: int) -> bytes:
    """Inflate a few bytes per call so references must come from a ``2**wbits`` window.

    In one big call zlib copies matches from its output buffer and never
    notices a distance beyond the window; in small steps it must use the window.
    """
    inflater = zlib.decompressobj(-wbits)
    out = bytearray()
    while raw:
        out += inflater.decompress(raw, 8)
        raw = inflater.unconsumed_tail
    out += inflater.flush()
    return bytes(out)


_BLOCK = os.urandom(20000)
# A repeat 20000 bytes back: within a 32 KiB window, beyond any smaller one.
_FAR_REPEAT = _BLOCK + _BLOCK[:2000]


@pytest.mark.parametrize("params", ALL_PARAMS, ids=lambda p: "-".join(map(str, astuple(p))))
def test_every_negotiated_combination_respects_window_and_context(params: DeflateParams) -> None:
    c, s = deflate_pair(params)
    for sender, receiver, bits, reset in (
        (c, s, params.client_max_window_bits, params.client_no_context_takeover),
        (s, c, params.server_max_window_bits, params.server_no_context_takeover),
    ):
        msgs: list[bytes] = [_FAR_REPEAT, _FAR_REPEAT[:3000], b"tail" * 50]
        wire = [sender.send(m) for m in msgs]
        assert receiver.receive_data(b"".join(wire)) == msgs
        payloads = [split_frames(w)[0][4] for w in wire]
        tail = b"\x00\x00\xff\xff"
        if reset:
            # No context takeover: every message inflates on its own.
            for payload, msg in zip(payloads, msgs, strict=True):
                assert _strict_inflate(payload + tail, bits) == msg
        else:
            assert _strict_inflate(tail.join(payloads) + tail, bits) == b"".join(msgs)


def test_max_messages_holds_the_rest_back_unparsed() -> None:
    conn = server()
    data = b"".join(frame(0x1, b"m%d" % i) for i in range(5)) + frame(0x9, b"p")
    assert conn.receive_data(data, max_messages=2) == ["m0", "m1"]
    assert conn.pending_bytes > 0
    assert conn.receive_data(b"", max_messages=0) == []
    assert conn.data_to_send() == []  # the ping behind them is not answered yet
    assert conn.receive_data(b"", max_messages=10) == ["m2", "m3", "m4", Ping(b"p")]
    assert conn.pending_bytes == 0
    assert conn.data_to_send() == [server_frame(0xA, b"p")]
