"""Write the seed corpus: ``python fuzzing/seeds.py`` (re)creates ``fuzzing/corpus/``.

Each seed is a small valid (or nearly valid) input for its target, in the
target's input format (configuration bytes first, see ``targets.py``), so
that mutation starts from inputs that reach deep into each parser.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool
) -> bytes:
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 0x10000:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if mask:
        payload = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
        head += MASK
    return head + payload


def compressed(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def frame_seeds(mask: bool, deflate: bool) -> dict[str, bytes]:
    cfg = b"\x00\x00\x00" + (b"\x00" if deflate else b"")
    big = b"\x01\x07\x01" + (b"\x00" if deflate else b"")
    seeds = {
        "text": frame(1, b"hello", mask=mask),
        "binary": frame(2, bytes(range(40)), mask=mask),
        "fragments": frame(1, b"hel", fin=False, mask=mask)
        + frame(9, b"ping", mask=mask)
        + frame(0, "lo \u00e9".encode(), mask=mask),
        "ping_pong": frame(9, b"x", mask=mask) + frame(10, b"y", mask=mask),
        "close": frame(8, struct.pack("!H", 1000) + b"bye", mask=mask),
        "len16": frame(2, b"a" * 130, mask=mask),
        "len64_top_bit": b"\x82" + (b"\xff" if mask else b"\x7f") + b"\x80" + b"\x00" * 7,
        "bad_utf8": frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80", mask=mask),
    }
    out = {name: cfg + data for name, data in seeds.items()}
    out["big_frame"] = big + frame(2, b"z" * 9000, mask=mask)
    if deflate:
        out["compressed"] = cfg + frame(1, compressed(b"hello hello hello"), rsv1=True, mask=mask)
        out["compressed_fragments"] = (
            cfg
            + frame(2, compressed(b"abc" * 50)[:10], rsv1=True, fin=False, mask=mask)
            + frame(0, compressed(b"abc" * 50)[10:], mask=mask)
        )
        out["bomb"] = cfg + frame(2, compressed(b"\x00" * 100_000), rsv1=True, mask=mask)
    return out


def seeds() -> dict[str, dict[str, bytes]]:
    request = (
        b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
        b"Sec-WebSocket-Protocol: v2.chat, chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
        b"permessage-deflate; server_no_context_takeover; server_max_window_bits=10\r\n\r\n"
    )
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; "
        b"client_max_window_bits=10\r\n\r\n"
    )
    deflate_stream = compressed(b"The quick brown fox " * 20)
    return {
        "frames_server": frame_seeds(mask=True, deflate=False),
        "frames_client": frame_seeds(mask=False, deflate=False),
        "frames_server_deflate": frame_seeds(mask=True, deflate=True),
        "frames_client_deflate": frame_seeds(mask=False, deflate=True),
        "deflate": {
            "stream": b"\x00\x10\x00" + deflate_stream,
            "split": b"\x7f\x02\x03" + deflate_stream,
            "bomb": b"\x00\x01\x00" + compressed(b"\x00" * 50_000),
            "stored": b"\x00\x40\x00\x01\x05\x00\xfa\xffhello",
        },
        "handshake_request": {
            "full": b"\x00" + request,
            "bytewise": b"\x01" + request,
            "minimal": b"\x00GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            "http10": b"\x00GET / HTTP/1.0\r\n\r\n",
        },
        "handshake_response": {
            "full": b"\x00" + response,
            "plain": b"\x05HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            b"Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n",
            "status_403": b"\x00HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        },
        "engineio": {
            "open": b"\x00\x40" + b'0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
            b'"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}',
            "message": b"\x00\x10" + b"4hello",
            "probe": b"\x00\x10" + b"2probe",
            "binary": b"\x01\x10" + bytes(range(16)),
            "payload": b"\x02\x40" + b"4hello\x1ebAQIDBA==\x1e2\x1e6",
            "payload_text": b"\x03\x40" + b"4hi\x1e3\x1e5",
        },
        "socketio": {
            "event": b"\x40\x02" + b'2["hello",1,{"a":[true,null]}]',
            "ack": b"\x40\x02" + b'3/admin,13["bar"]',
            "connect": b"\x40\x02" + b'0/chat,{"token":"abc"}',
            "binary": b"\x40\x02" + b'51-/admin,["baz",{"_placeholder":true,"num":0}]'
            b"\x00\x01\x01\x02\x03",
            "binary_ack": b"\x40\x03" + b'62-7[{"_placeholder":true,"num":1},'
            b'{"_placeholder":true,"num":0}]\x00\x01ab\x00\x01cd',
            "connect_error": b"\x40\x02" + b'4{"message":"Not authorized"}',
            "disconnect": b"\x40\x02" + b"1/chat,",
            # Nesting at socketio.MAX_DEPTH (accepted) and far past it (refused
            # without recursion), as json.loads alone would accept it.
            "deep_max": b"\x40\x02" + b'2["d",' + b"[" * 63 + b"]" * 63 + b"]",
            "deep": b"\xff\x02" + b'2["d",' + b"[" * 900 + b"]" * 900 + b"]",
        },
    }


def main() -> int:
    for target, files in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / f"seed-{name}").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
