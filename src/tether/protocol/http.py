"""The small part of HTTP/1.1 a WebSocket handshake needs (RFC 7230), sans-I/O."""

from __future__ import annotations

import re

from ..exceptions import HandshakeError, PayloadTooBig
from .http_types import TOKEN, Headers, Request, Response, comma_tokens
from .speedups import parse_request_head as _parse_head

__all__ = ["Headers", "Request", "Response", "comma_tokens", "parse_request", "parse_response"]

# RFC 7230 §3.2: field-value is visible characters, spaces and tabs (obs-text allowed).
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# Header lines, CRLF-separated: a token, a colon (no whitespace before it, RFC
# 7230 §3.2.4) and a value. Neither class holds CR, LF or the other's
# delimiter, so the match is linear in the input whatever it holds.
_FIELD = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\x09\x20-\x7e\x80-\xff]*"
_FIELDS = re.compile(rb"(?:%s(?:\r\n%s)*)?" % (_FIELD, _FIELD))
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/(\d\.\d)")
# RFC 7230 §3.1.2: a 3-digit status code, then SP and the reason; we also take a
# status line with no SP when the reason is empty, but never "1010" as 101 + "0".
_STATUS_LINE = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")


def _find_head(buf: bytes | bytearray, max_bytes: int) -> int:
    """Index just past the blank line ending the head, or -1 if it has not arrived."""
    # The head, blank line included, must fit in max_bytes: the same bound whether
    # it arrives at once or byte by byte.
    end = buf.find(b"\r\n\r\n", 0, max_bytes)
    if end < 0:
        if len(buf) >= max_bytes:
            raise PayloadTooBig(f"HTTP head exceeds {max_bytes} bytes")
        return -1
    return end + 4


def _parse_headers(block: bytes, max_count: int) -> Headers:
    """The header lines of a head (``block``: between the start line and the
    blank line, CRLF-separated, empty for none)."""
    lines = block.split(b"\r\n") if block else []
    if len(lines) > max_count:
        raise PayloadTooBig(f"more than {max_count} header lines")
    # Every line checked in one pass of one pattern (the common case); a
    # line at fault is found by the line-by-line check, for its message.
    if _FIELDS.fullmatch(block) is None:
        _check_lines(lines)
    shared = _SHARED.get
    items: list[str] = []
    for line in lines:
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        items += (shared(name) or name.decode("ascii"), shared(value) or value.decode("latin-1"))
    return Headers.from_flat(items)


def _check_lines(lines: list[bytes]) -> None:
    """Raise :class:`HandshakeError` for the first invalid header line."""
    for line in lines:
        name, sep, value = line.partition(b":")
        # RFC 7230 §3.2.4: no whitespace between the field name and the colon.
        if not sep or TOKEN.fullmatch(name) is None:
            raise HandshakeError(f"invalid header line {line[:80]!r}")
        if _VALUE.fullmatch(value) is None:
            raise HandshakeError(f"invalid header value in {line[:80]!r}")
    raise AssertionError("_FIELDS and _check_lines disagree")  # pragma: no cover


def _shared_strings(*texts: str) -> dict[bytes, str]:
    table: dict[bytes, str] = {}
    for text in texts:
        for variant in (text, text.lower(), text.title()):
            table.setdefault(variant.encode("latin-1"), variant)
    return table


# Header names and values that most handshakes repeat, decoded once and shared
# by every connection's request instead of copied into each (each connection
# keeps its request: ~0.5 KiB saved per idle connection).
_SHARED = _shared_strings(
    "Host",
    "Upgrade",
    "Connection",
    "Origin",
    "User-Agent",
    "Pragma",
    "Cache-Control",
    "Accept-Encoding",
    "Accept-Language",
    "Cookie",
    "Authorization",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
    "websocket",
    "13",
    "no-cache",
    "keep-alive, Upgrade",
    "gzip, deflate, br",
    "gzip, deflate, br, zstd",
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
)

# The same shared strings by their text, for the C parser (speedups.parse_request_head).
_SHARED_TEXT = {text: text for text in _SHARED.values()}


def parse_request(
    buf: bytes | bytearray, *, max_bytes: int, max_count: int
) -> tuple[Request, int] | None:
    """Parse a request head from the start of ``buf``.

    Returns the request and the number of bytes it used, or None when more
    data is needed. Raises :class:`HandshakeError` on malformed input and
    :class:`PayloadTooBig` past the limits.
    """
    if _parse_head is not None:
        parsed = _parse_head(buf, max_bytes, max_count, _SHARED_TEXT)
        if parsed is None:
            return None
        if parsed is not False:
            method, target, items, used = parsed  # type: ignore[misc]
            return Request(target, Headers.from_flat(items), method), used
    return parse_request_py(buf, max_bytes=max_bytes, max_count=max_count)


def parse_request_py(
    buf: bytes | bytearray, *, max_bytes: int, max_count: int
) -> tuple[Request, int] | None:
    """:func:`parse_request` in Python: all of it without the C extension, and
    with it whatever the C parser leaves (errors, unusual heads)."""
    end = _find_head(buf, max_bytes)
    if end < 0:
        return None
    start, _, block = bytes(buf[: end - 4]).partition(b"\r\n")
    match = _REQUEST_LINE.fullmatch(start)
    if match is None:
        raise HandshakeError(f"invalid request line {start[:80]!r}")
    method, target, version = match.groups()
    if version != b"1.1":
        raise HandshakeError(f"unsupported HTTP version {version.decode()}")
    headers = _parse_headers(block, max_count)
    return Request(target.decode("ascii", "replace"), headers, method.decode()), end


def parse_response(
    buf: bytes | bytearray, *, max_bytes: int, max_count: int
) -> tuple[Response, int] | None:
    """Parse a response head from the start of ``buf`` (body not included)."""
    end = _find_head(buf, max_bytes)
    if end < 0:
        return None
    start, _, block = bytes(buf[: end - 4]).partition(b"\r\n")
    match = _STATUS_LINE.fullmatch(start)
    if match is None:
        raise HandshakeError(f"invalid status line {start[:80]!r}")
    _, status, reason = match.groups()
    headers = _parse_headers(block, max_count)
    return Response(int(status), (reason or b"").decode("latin-1"), headers), end
