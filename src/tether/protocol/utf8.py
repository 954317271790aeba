"""Incremental UTF-8 validation for text messages (RFC 6455 §8.1).

§8.1 asks an endpoint to fail the connection as soon as it sees an invalid
byte sequence, even in the middle of a fragmented message.  CPython's
incremental decoder already rejects invalid lead and continuation bytes the
moment it sees them, with one gap: it buffers ``ED A0..BF`` (the start of a
UTF-16 surrogate, never valid in UTF-8) until the third byte arrives.  We look
at its pending bytes to close that gap.
"""

from __future__ import annotations

import codecs

from ..exceptions import ProtocolError

__all__ = ["Utf8Decoder", "decode_text"]

_Incremental = codecs.getincrementaldecoder("utf-8")


def decode_text(data: bytes | bytearray | memoryview) -> str:
    """Decode a complete text message, failing with 1007 on invalid UTF-8."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in text message", 1007) from None


class Utf8Decoder:
    """Decodes a text message fragment by fragment, failing fast."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Incremental()

    def decode(self, data: bytes | bytearray | memoryview, final: bool) -> str:
        try:
            text: str = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in text message", 1007) from None
        if not final:
            pending: bytes = self._decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise ProtocolError("invalid UTF-8 in text message (surrogate)", 1007)
        return text
