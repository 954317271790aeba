"""The small part of HTTP/1.1 a WebSocket handshake needs (RFC 7230), sans-I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..exceptions import HandshakeError, PayloadTooBig

__all__ = ["Headers", "Request", "Response", "comma_tokens", "parse_request", "parse_response"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field-value is visible characters, spaces and tabs (obs-text allowed).
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/(\d\.\d)")
# RFC 7230 §3.1.2: a 3-digit status code, then SP and the reason; we also take a
# status line with no SP when the reason is empty, but never "1010" as 101 + "0".
_STATUS_LINE = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")


class Headers:
    """An ordered, case-insensitive multi-map of HTTP headers."""

    # Names and values alternate in one flat list: no tuple per header. Every
    # connection keeps its handshake request, so at 10,000 idle connections
    # the ~56 bytes of a tuple per header line add up (~0.4 KiB each).
    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[str] = [text for item in items for text in item]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        items = self._items
        return zip(items[0::2], items[1::2], strict=True)

    def __len__(self) -> int:
        return len(self._items) >> 1

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lower = name.lower()
        items = self._items
        for i in range(0, len(items), 2):
            if items[i].lower() == lower:
                return items[i + 1]
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lower = name.lower()
        items = self._items
        return [items[i + 1] for i in range(0, len(items), 2) if items[i].lower() == lower]

    def by_name(self) -> dict[str, list[str]]:
        """Every value, keyed by lower-cased name, in order: one pass for a
        caller that looks up many names (the handshake checks seven)."""
        index: dict[str, list[str]] = {}
        items = self._items
        for i in range(0, len(items), 2):
            key = items[i].lower()
            found = index.get(key)
            if found is None:
                index[key] = [items[i + 1]]
            else:
                found.append(items[i + 1])
        return index

    def add(self, name: str, value: str) -> None:
        """Append a header line; the name must be a token and the value free of CR/LF
        (no header injection)."""
        if (
            _TOKEN.fullmatch(name.encode("latin-1", "replace")) is None
            or "\r" in value
            or "\n" in value
        ):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        self._items += (name, value)

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Remove every ``name`` header (none is fine)."""
        lower = name.lower()
        self._items = [text for key, value in self if key.lower() != lower for text in (key, value)]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        return comma_tokens(self.get_all(name))

    def encode(self) -> bytes:
        """The header lines as sent: ``Name: value`` and CRLF each, Latin-1 (RFC 7230 §3.2)."""
        return b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in self)


def comma_tokens(values: Iterable[str]) -> list[str]:
    """The comma-separated tokens of header ``values``, lower-cased (RFC 7230 §7)."""
    return [
        token.strip().lower() for value in values for token in value.split(",") if token.strip()
    ]


@dataclass(slots=True)
class Request:
    """An HTTP request head: the opening handshake, or a plain HTTP request."""

    path: str
    headers: Headers = field(default_factory=Headers)
    method: str = "GET"

    def encode(self) -> bytes:
        """The request head as sent: request line, header lines, blank line."""
        return f"{self.method} {self.path} HTTP/1.1\r\n".encode() + self.headers.encode() + b"\r\n"


@dataclass(slots=True)
class Response:
    """An HTTP response: the 101 that completes a handshake, or any other answer."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def encode(self) -> bytes:
        """The response as sent: status line, header lines, blank line, body."""
        head = f"HTTP/1.1 {self.status} {self.reason}\r\n".encode() + self.headers.encode()
        return head + b"\r\n" + self.body


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


def _parse_headers(lines: list[bytes], max_count: int) -> Headers:
    if len(lines) > max_count:
        raise PayloadTooBig(f"more than {max_count} header lines")
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(b":")
        # RFC 7230 §3.2.4: no whitespace between the field name and the colon.
        if not sep or _TOKEN.fullmatch(name) is None:
            raise HandshakeError(f"invalid header line {line[:80]!r}")
        value = value.strip(b" \t")
        if _VALUE.fullmatch(value) is None:
            raise HandshakeError(f"invalid header value in {line[:80]!r}")
        text = _SHARED.get(name) or name.decode("ascii")
        headers._items += (text, _SHARED.get(value) or value.decode("latin-1"))
    return headers


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


def parse_request(
    buf: bytes | bytearray, *, max_bytes: int, max_count: int
) -> tuple[Request, int] | None:
    """Parse a request head from the start of ``buf``.

    Returns the request and the number of bytes it used, or None when more
    data is needed. Raises :class:`HandshakeError` on malformed input and
    :class:`PayloadTooBig` past the limits.
    """
    end = _find_head(buf, max_bytes)
    if end < 0:
        return None
    lines = bytes(buf[: end - 4]).split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeError(f"invalid request line {lines[0][:80]!r}")
    method, target, version = match.groups()
    if version != b"1.1":
        raise HandshakeError(f"unsupported HTTP version {version.decode()}")
    headers = _parse_headers(lines[1:], max_count)
    return Request(target.decode("ascii", "replace"), headers, method.decode()), end


def parse_response(
    buf: bytes | bytearray, *, max_bytes: int, max_count: int
) -> tuple[Response, int] | None:
    """Parse a response head from the start of ``buf`` (body not included)."""
    end = _find_head(buf, max_bytes)
    if end < 0:
        return None
    lines = bytes(buf[: end - 4]).split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeError(f"invalid status line {lines[0][:80]!r}")
    _, status, reason = match.groups()
    headers = _parse_headers(lines[1:], max_count)
    return Response(int(status), (reason or b"").decode("latin-1"), headers), end
