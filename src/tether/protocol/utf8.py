"""Incremental UTF-8 validation for text messages (RFC 6455 §8.1).

§8.1 asks an endpoint to fail the connection as soon as it sees an invalid
byte sequence, even in the middle of a fragmented message.  CPython's
incremental decoder already rejects invalid lead and continuation bytes the
moment it sees them, with one gap: it buffers ``ED A0..BF`` (the start of a
UTF-16 surrogate, never valid in UTF-8) until the third byte arrives.  We look
at its pending bytes to close that gap.

The C extension's ``utf8_valid_prefix`` is not used here: decoding is needed
anyway to produce ``str``, and validating first then decoding measured slower
than CPython's decoder alone for whole messages, and for fragments of
non-ASCII text (``bench/micro_speedups.py``).
"""

from __future__ import annotations

import codecs

from ..exceptions import ProtocolError

__all__ = ["Utf8Decoder", "decode_text"]

# The C function behind codecs' incremental UTF-8 decoder, called directly:
# the Python wrapper class (codecs.BufferedIncrementalDecoder) costs more than
# the decoding itself for small fragments.
_utf8_decode = codecs.utf_8_decode


def decode_text(data: bytes | bytearray | memoryview) -> str:
    """Decode a complete text message, failing with 1007 on invalid UTF-8."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in text message", 1007) from None


class Utf8Decoder:
    """Decodes a text message fragment by fragment, failing fast."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # The 0-3 bytes of a character split across fragments.
        self._pending = b""

    def decode(self, data: bytes | bytearray | memoryview, final: bool) -> str:
        if self._pending:
            data = self._pending + data
        try:
            text, used = _utf8_decode(data, "strict", final)
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in text message", 1007) from None
        if used == len(data):
            self._pending = b""
        else:
            pending = self._pending = bytes(data[used:])
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise ProtocolError("invalid UTF-8 in text message (surrogate)", 1007)
        return text
