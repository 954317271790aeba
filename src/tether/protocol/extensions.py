"""The ``Sec-WebSocket-Extensions`` header grammar (RFC 6455 §9.1).

::

    extension-list = 1#extension
    extension      = extension-token *( ";" extension-param )
    extension-param = token [ "=" (token | quoted-string) ]
"""

from __future__ import annotations

import re

__all__ = ["ExtensionParams", "parse_extensions", "serialize_extension"]

ExtensionParams = list[tuple[str, "str | None"]]

# RFC 7230 §3.2.6 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_OWS = re.compile(r"[ \t]*")


def _skip(text: str, pos: int) -> int:
    match = _OWS.match(text, pos)
    assert match is not None
    return match.end()


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    match = _TOKEN.match(text, pos)
    if match is None:
        raise ValueError(f"expected {what} at position {pos} in {text!r}")
    return match.group(), match.end()


def parse_extensions(values: list[str]) -> list[tuple[str, ExtensionParams]]:
    """Parse every ``Sec-WebSocket-Extensions`` header value, in order.

    Raises :class:`ValueError` on anything the grammar does not allow.
    """
    result: list[tuple[str, ExtensionParams]] = []
    for text in values:
        pos = _skip(text, 0)
        while pos < len(text):
            if text[pos] == ",":  # 1#rule allows empty list elements
                pos = _skip(text, pos + 1)
                continue
            name, pos = _token(text, pos, "extension name")
            params: ExtensionParams = []
            pos = _skip(text, pos)
            while pos < len(text) and text[pos] == ";":
                pos = _skip(text, pos + 1)
                key, pos = _token(text, pos, "parameter name")
                value: str | None = None
                pos = _skip(text, pos)
                if pos < len(text) and text[pos] == "=":
                    pos = _skip(text, pos + 1)
                    quoted = _QUOTED.match(text, pos)
                    if quoted is not None:
                        value = re.sub(r"\\(.)", r"\1", quoted.group(1))
                        # §9.1: a quoted value must still be a token once unquoted.
                        if not _TOKEN.fullmatch(value):
                            raise ValueError(f"invalid quoted parameter value in {text!r}")
                        pos = quoted.end()
                    else:
                        value, pos = _token(text, pos, "parameter value")
                params.append((key.lower(), value))
                pos = _skip(text, pos)
            result.append((name.lower(), params))
            if pos < len(text):
                if text[pos] != ",":
                    raise ValueError(f"unexpected {text[pos]!r} at position {pos} in {text!r}")
                pos = _skip(text, pos + 1)
    return result


def serialize_extension(name: str, params: ExtensionParams) -> str:
    """Format one extension with its parameters for the header."""
    parts = [name]
    parts.extend(key if value is None else f"{key}={value}" for key, value in params)
    return "; ".join(parts)
