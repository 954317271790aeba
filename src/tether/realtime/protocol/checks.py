"""Checks of untrusted input that both realtime codecs make, sans-I/O.

A peer's text is measured against a limit before it is decoded, and its JSON
is read strictly (RFC 8259): :mod:`.engineio` applies them to packets and
payloads, :mod:`.socketio` to packets and their attachments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...exceptions import PacketError

__all__ = [
    "RESERVED_EVENTS",
    "check_event",
    "check_text_size",
    "scan_json",
    "strict_json",
    "too_big",
]

RESERVED_EVENTS = frozenset(
    # Names the reference implementation gives a meaning of its own, so
    # refuses as event names: a peer must not fire them remotely.
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]
)
"""Event names an ``EVENT`` packet may not carry."""


def too_big(what: str, size: int, limit: int) -> str:
    """The message of a :class:`~tether.exceptions.PacketError` for input over a limit.

    >>> too_big("payload", 12, 10)
    'payload of 12 bytes exceeds the limit of 10 bytes'
    """
    return f"{what} of {size} bytes exceeds the limit of {limit} bytes"


def check_text_size(text: str, limit: int, what: str) -> None:
    """Raise :class:`~tether.exceptions.PacketError` when ``text`` is over
    ``limit`` bytes once UTF-8 encoded, encoding only when it matters."""
    size = len(text)
    # A character takes 1 to 4 bytes: only non-ASCII text near the limit is encoded.
    if size <= limit < 4 * size and not text.isascii():
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise PacketError(too_big(what, size, limit))


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259 §6).
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads(text, parse_constant=...) builds a decoder per call.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant)
_scan: Callable[[str, int], tuple[Any, int]] = _STRICT.scan_once  # type: ignore[attr-defined]
_decode = _STRICT.decode
#: The C scanner under :func:`strict_json`: ``scan_json(text, i)`` is the
#: value that starts at ``text[i]`` and the index after it; it raises
#: StopIteration or ValueError on what is not JSON there (and RecursionError
#: when nested deeper than the stack allows: bound the depth first).
scan_json = _scan


def strict_json(text: str) -> Any:
    """``json.loads(text)`` that also refuses ``NaN`` and ``Infinity``.

    Raises :class:`ValueError` (or :class:`RecursionError`, for nesting deeper
    than Python's stack allows) on anything that is not JSON.

    >>> strict_json('[1, {"a": null}]')
    [1, {'a': None}]
    """
    if type(text) is str:
        # A document from the first character to the last (what peers send)
        # is one call of the C scanner; anything else (whitespace around it,
        # a byte order mark, trailing data, any error) is json.loads' to
        # judge, with its own result or error.
        try:
            data, end = _scan(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return data
        if not text.startswith("\ufeff"):
            return _decode(text)
    return json.loads(text, parse_constant=_reject_constant)


def check_event(event: str) -> None:
    """Refuse an event name this side may not emit: raise :class:`TypeError`
    unless it is a non-empty str, :class:`ValueError` if it is reserved.

    Used before sending by the server's sockets and the Redis emitter alike.
    """
    if not isinstance(event, str) or not event:
        raise TypeError("the event name must be a non-empty str")
    if event in RESERVED_EVENTS:
        raise ValueError(f"{event!r} is a reserved event name")
