"""HTTP messages as values (RFC 7230 §3): headers, a request head, a response.

Plain data with no parsing and no errors of tether's own, so that
:mod:`tether.exceptions` can name :class:`Response` (a rejected handshake
carries one) without importing the parser in :mod:`.http`, which raises those
exceptions: the dependency goes one way, http -> exceptions -> http_types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["HeaderItems", "Headers", "Request", "Response", "comma_tokens", "header_items"]

#: RFC 7230 §3.2.6: a token, as in header names.
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Headers:
    """An ordered, case-insensitive multi-map of HTTP headers."""

    # Names and values alternate in one flat list: no tuple per header. Every
    # connection keeps its handshake request, so at 10,000 idle connections
    # the ~56 bytes of a tuple per header line add up (~0.4 KiB each).
    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[str] = [text for item in items for text in item]

    @classmethod
    def from_flat(cls, items: list[str]) -> Headers:
        """Headers from names and values alternating in one list, which they
        take over (the parser's: no pairs to build and flatten again)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def flat(self) -> list[str]:
        """Names and values alternating, as held (not a copy: read only)."""
        return self._items

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

    def __setitem__(self, name: str, value: str) -> None:
        """``headers[name] = value``: :meth:`set` (as websockets' and
        http.client's headers allow)."""
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        """``del headers[name]``: :meth:`remove`, :class:`KeyError` if absent."""
        if name not in self:
            raise KeyError(name)
        self.remove(name)

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
            TOKEN.fullmatch(name.encode("latin-1", "replace")) is None
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
        # One join and one encode for all of them: a line per header each
        # encoded on its own cost a third of a 101's encoding.
        items = self._items
        lines = [f"{k}: {v}\r\n" for k, v in zip(items[0::2], items[1::2], strict=True)]
        return "".join(lines).encode("latin-1")


#: Headers as a caller may give them: a mapping, ``(name, value)`` pairs, or
#: :class:`Headers`.
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]


def header_items(headers: HeaderItems) -> list[tuple[str, str]]:
    """``headers`` as a list of ``(name, value)`` pairs, in their order."""
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(name, value) for name, value in headers]


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
