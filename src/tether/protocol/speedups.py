"""The receive hot loop in C when available, in pure Python otherwise.

``_speedups`` is an optional C extension (``_speedups.c``), built by
``pip install`` when a compiler is at hand.  This module imports it unless the
environment variable ``TETHER_NO_SPEEDUPS`` is set to anything but ``""`` or
``"0"``, and otherwise falls back to the pure-Python twins defined here, which
give the same results (``tests/protocol/test_speedups.py`` checks that on
random inputs).  :data:`HAVE_SPEEDUPS` tells which one is in use.

* :func:`apply_mask` unmasks a payload (RFC 6455 §5.3); always worth it.
* :func:`parse_frames` splits a buffer into frames (§5.2): the one step of
  the connection's frame loop (:meth:`.reader.Reader._parse`), which calls
  whichever of the two is in use through this module's attribute.
* :class:`Assembler` collects a frame payload that spans several reads,
  unmasking each chunk as it arrives (§5.3), so the connection never keeps
  a large partial frame in a buffer that every read copies again.
* :data:`parse_request_head` is the common case of the handshake's request
  head (RFC 7230 §3); C only, the Python parser being its own fallback.
* :data:`accept_plain` is the common case of the server's handshake checks
  and its 101 (RFC 6455 §4.2); C only, ``ServerHandshake.accept`` being its
  fallback.
* :func:`utf8_valid_prefix` validates UTF-8 (§8.1); for tests and callers
  that need no ``str``.  Text messages keep CPython's own decoder, which is
  already C and faster than validating before decoding (measured in
  ``bench/micro_speedups.py``).
"""

from __future__ import annotations

import codecs
import importlib
import os
from collections.abc import Callable
from types import ModuleType

__all__ = [
    "ASSEMBLE_AT",
    "HAVE_SPEEDUPS",
    "STOP_BAD_LENGTH",
    "STOP_BAD_MASK",
    "STOP_BATCH",
    "STOP_HEADER",
    "STOP_NEED_DATA",
    "Assembler",
    "AssemblerPy",
    "ParseResult",
    "apply_mask",
    "apply_mask_py",
    "load_extension",
    "parse_frames",
    "parse_frames_py",
    "utf8_valid_prefix",
    "utf8_valid_prefix_py",
]

BytesLike = bytes | bytearray | memoryview

#: Why :func:`parse_frames` stopped (the values match the C extension's).
STOP_NEED_DATA = 0  #: fewer bytes than a whole header at ``pos``
STOP_BATCH = 1  #: ``max_frames`` frames returned; more may follow
STOP_HEADER = 2  #: header at ``pos`` complete, payload incomplete or over ``max_len``
STOP_BAD_LENGTH = 3  #: 64-bit length with its most significant bit set (§5.2)
STOP_BAD_MASK = 4  #: MASK bit differs from ``expect_mask`` (§5.1)

#: Frames with a payload at least this large are collected across reads by
#: an :class:`Assembler` once their header is in; smaller ones wait whole in
#: the connection's buffer, where copying a partial frame again on the next
#: read costs less than an assembler object.
ASSEMBLE_AT = 8192

#: ``(frames, pos, stop, b0, length)``, see :func:`parse_frames_py`.
ParseResult = tuple[list[tuple[int, bytes]], int, int, int, int]


# int.from_bytes is a class method: looking it up on int makes and frees a
# bound method at every call, ~600 instructions under CPython 3.11 (callgrind);
# the two of apply_mask_py were a tenth of what a small masked frame cost.
_from_bytes = int.from_bytes


def apply_mask_py(data: BytesLike, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (§5.3).

    Done as one big-integer XOR: CPython runs it word at a time in C, which is
    an order of magnitude faster than a Python loop over bytes.
    """
    n = len(data)
    if n == 0:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    value = _from_bytes(data, "little") ^ _from_bytes(key, "little")
    return value.to_bytes(n, "little")


def utf8_valid_prefix_py(data: BytesLike) -> int:
    """Check ``data`` as UTF-8 (§8.1, RFC 3629 §4).

    Return -1 if no bytes appended to ``data`` could make it valid; otherwise
    the length of its longest prefix of whole characters: ``len(data)`` when
    it is complete, 1-3 less when it ends in an unfinished character.
    """
    try:
        _, used = codecs.utf_8_decode(data, "strict", False)
    except UnicodeDecodeError:
        return -1
    pending = data[used:]
    # CPython's decoder waits for the third byte before rejecting a surrogate
    # (ED A0-BF); every other invalid second byte fails at once.
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        return -1
    return used


def parse_frames_py(
    buf: BytesLike, pos: int, end: int, expect_mask: bool, max_frames: int, max_len: int
) -> ParseResult:
    """Split the complete frames at the start of ``buf[pos:end]`` (§5.2).

    Returns ``(frames, pos, stop, b0, length)``: ``frames`` lists
    ``(first_header_byte, unmasked_payload)`` for at most ``max_frames``
    frames, ``pos`` is where parsing stopped and ``stop`` one of the
    ``STOP_*`` values.  On :data:`STOP_HEADER`, ``b0`` and ``length`` describe
    the frame at ``pos``: its header is complete but its payload is not, or
    its length exceeds ``max_len``.  The caller checks that header before
    waiting for the payload, so an oversized frame fails without being
    buffered.  Opcodes, RSV bits and limits are not checked here: they depend
    on the connection's state.
    """
    if pos < 0 or max_frames < 0 or max_len < 0:
        raise ValueError("pos, max_frames and max_len must not be negative")
    if end > len(buf):
        end = len(buf)
    if pos > end:
        raise ValueError("pos is beyond end")
    # Written for speed without the C extension: this is the step of every
    # read's frame loop (.reader). frames.append is not hoisted into a local:
    # that makes a bound method at every call, which CPython's call of a
    # list's append does without, and most calls return one frame.
    expect = 0x80 if expect_mask else 0
    frames: list[tuple[int, bytes]] = []
    count = 0
    while True:
        if count >= max_frames:
            return frames, pos, STOP_BATCH, 0, 0
        avail = end - pos
        if avail < 2:
            return frames, pos, STOP_NEED_DATA, 0, 0
        b0 = buf[pos]
        b1 = buf[pos + 1]
        length = b1 & 0x7F
        head = 2
        if length == 126:
            head = 4
            if avail < head:
                return frames, pos, STOP_NEED_DATA, 0, 0
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        elif length == 127:
            head = 10
            if avail < head:
                return frames, pos, STOP_NEED_DATA, 0, 0
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            if length >> 63:
                return frames, pos, STOP_BAD_LENGTH, 0, 0
        masked = b1 & 0x80
        if masked != expect:
            return frames, pos, STOP_BAD_MASK, 0, 0
        if masked:
            head += 4
        if length > max_len or avail - head < length:
            return frames, pos, STOP_HEADER, b0, length
        start = pos + head
        pos = start + length
        if masked:
            # A slice, not a memoryview of it: int.from_bytes copies a view
            # into bytes anyway, and for a small frame making the view costs
            # more than copying the payload.
            frames.append((b0, apply_mask_py(buf[start:pos], bytes(buf[start - 4 : start]))))
        else:
            frames.append((b0, bytes(buf[start:pos])))
        count += 1


class AssemblerPy:
    """Collect one frame payload of ``length`` bytes across reads (§5.2).

    ``mask`` is the frame's 4-byte masking key, or empty for an unmasked
    frame. :meth:`feed` takes the payload's next bytes from a buffer and
    unmasks them (§5.3: the key phase follows the offset in the payload);
    :meth:`take` returns the whole payload once :attr:`missing` is 0.
    The C twin fills the final bytes object in place; this one keeps the
    unmasked chunks and joins them at the end.
    """

    __slots__ = ("_filled", "_length", "_mask", "_parts")

    def __init__(self, length: int, mask: BytesLike, /) -> None:
        if length < 0 or len(mask) not in (0, 4):
            raise ValueError("length must not be negative and mask must be 0 or 4 bytes")
        self._length = length
        self._filled = 0
        self._mask = bytes(mask)
        self._parts: list[bytes] | None = []

    @property
    def missing(self) -> int:
        """Payload bytes still to come."""
        return self._length - self._filled

    def feed(self, buf: BytesLike, pos: int, end: int, /) -> int:
        """Take the payload's next bytes from ``buf[pos:end]``; return the position after them."""
        parts = self._parts
        if parts is None:
            raise ValueError("the payload was already taken")
        if pos < 0 or end < 0:
            raise ValueError("pos and end must not be negative")
        end = min(end, len(buf))
        if pos > end:
            raise ValueError("pos is beyond end")
        n = min(end - pos, self._length - self._filled)
        if n > 0:
            chunk = memoryview(buf)[pos : pos + n]
            mask = self._mask
            if mask:
                phase = self._filled & 3
                parts.append(apply_mask_py(chunk, mask[phase:] + mask[:phase]))
            else:
                parts.append(bytes(chunk))
            self._filled += n
        return pos + n

    def take(self) -> bytes:
        """Return the whole unmasked payload; only once it is complete."""
        parts = self._parts
        if parts is None or self._filled != self._length:
            raise ValueError("the payload is not complete")
        self._parts = None
        return parts[0] if len(parts) == 1 else b"".join(parts)


def load_extension(name: str) -> ModuleType | None:
    """The optional C module ``name`` (absolute), or None when it did not
    build or ``TETHER_NO_SPEEDUPS`` turns every C module off."""
    if os.environ.get("TETHER_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_c = load_extension("tether.protocol._speedups")

#: Whether the C extension is in use.
HAVE_SPEEDUPS = _c is not None

apply_mask: Callable[[BytesLike, bytes], bytes] = apply_mask_py
utf8_valid_prefix: Callable[[BytesLike], int] = utf8_valid_prefix_py
parse_frames: Callable[[BytesLike, int, int, bool, int, int], ParseResult] = parse_frames_py
Assembler: type[AssemblerPy] = AssemblerPy
#: The common case of :func:`tether.protocol.http.parse_request` in C, or None:
#: ``(method, target, names and values, used)``, None for a head not whole
#: yet, False for anything the Python parser must judge (``_http_head.c``).
parse_request_head: (
    Callable[[BytesLike, int, int, dict[str, str]], tuple[str, str, list[str], int] | bool | None]
    | None
) = None
#: The common case of ``ServerHandshake.accept`` in C, or None: for header
#: names and values alternating and the 101's bytes before and after its
#: accept value, ``(accept value, the 101)``, None for anything that
#: ``accept`` must judge (``_handshake.c``).
accept_plain: Callable[[list[str], bytes, bytes], tuple[str, bytes] | None] | None = None
if _c is not None:
    parse_request_head = _c.parse_request
    accept_plain = _c.accept_plain
    Assembler = _c.Assembler
    apply_mask = _c.apply_mask
    utf8_valid_prefix = _c.utf8_valid_prefix
    parse_frames = _c.parse_frames
