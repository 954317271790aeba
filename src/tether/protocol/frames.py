"""Frame encoding and the pieces of frame decoding (RFC 6455 §5).

The receive loop itself lives in :mod:`.connection`; this module holds what
it and the senders share: opcodes, header encoding, masking and close-frame
payloads.
"""

from __future__ import annotations

import enum
import struct

from ..exceptions import ProtocolError

# §5.3 masking: the C version when built (see .speedups), else pure Python.
from .speedups import apply_mask

__all__ = [
    "CONTROL_OPCODES",
    "Opcode",
    "apply_mask",
    "encode_frame",
    "encode_header",
    "is_valid_close_code",
    "pack_close",
    "unpack_close",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2); 3-7 and 11-15 are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})

_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def encode_header(
    opcode: int, length: int, *, fin: bool = True, rsv1: bool = False, mask: bytes = b""
) -> bytes:
    """Encode a frame header; ``mask`` is the 4-byte masking key, or empty (§5.2)."""
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    mask_bit = 0x80 if mask else 0
    # §5.2: the minimal number of bytes MUST be used to encode the length.
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 0x10000:
        head = _PACK_16(first, mask_bit | 126, length)
    else:
        head = _PACK_64(first, mask_bit | 127, length)
    return head + mask if mask else head


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes = b"",
) -> bytes:
    """Encode one whole frame, masking the payload when ``mask`` is given."""
    head = encode_header(opcode, len(payload), fin=fin, rsv1=rsv1, mask=mask)
    if mask:
        return head + apply_mask(payload, mask)
    return head + payload


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (§7.4).

    1004 is reserved, 1005 and 1006 (and 1015) are for reporting only and MUST
    NOT be sent; 1012-1014 are registered with IANA since RFC 6455; 3000-4999
    are for libraries and applications.
    """
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def pack_close(code: int, reason: str = "") -> bytes:
    """Encode a close payload; code 1005 means "no status" and gives an empty payload."""
    if code == 1005:
        if reason:
            raise ValueError("a close frame without a status code cannot carry a reason")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"invalid close code {code} (RFC 6455 §7.4)")
    data = struct.pack("!H", code) + reason.encode()
    if len(data) > 125:
        # §5.5: all control frames MUST have a payload length of 125 bytes or less.
        raise ValueError("close reason is too long (at most 123 bytes of UTF-8)")
    return data


def unpack_close(payload: bytes) -> tuple[int, str]:
    """Decode and validate a received close payload (§5.5.1, §7.4)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", 1007) from None
    return code, reason
