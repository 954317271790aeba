"""The Sec-WebSocket-Extensions grammar (RFC 6455 §9.1)."""

from __future__ import annotations

import pytest

from tether.protocol.extensions import parse_extensions, serialize_extension


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits"],
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            ["permessage-deflate;server_max_window_bits=10;server_no_context_takeover"],
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("server_no_context_takeover", None)],
                )
            ],
        ),
        (
            ['permessage-deflate; server_max_window_bits="10"'],
            [("permessage-deflate", [("server_max_window_bits", "10")])],
        ),
        (
            ['x; a="b\\c"'],  # a quoted-pair unescapes to its character
            [("x", [("a", "bc")])],
        ),
        (
            ["Permessage-Deflate; Client_Max_Window_Bits = 12 , x-foo"],
            [("permessage-deflate", [("client_max_window_bits", "12")]), ("x-foo", [])],
        ),
        (["a, b", "c"], [("a", []), ("b", []), ("c", [])]),
        ([" , a ,, b , "], [("a", []), ("b", [])]),
        (["\tdeflate-frame\t;\tx\t"], [("deflate-frame", [("x", None)])]),
    ],
)
def test_parse_extensions(values: list[str], expected: object) -> None:
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",  # parameter name missing
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "a b",  # two tokens without a separator
        "a; b=c d",
        '"quoted-name"',
        'a; b="c d"',  # a quoted value must be a token once unquoted
        'a; b="unterminated',
        "a; b=c=d",
        "ä",
        "a;; b",
        ";a",
    ],
)
def test_parse_extensions_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions([value])


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("permessage-deflate", [], "permessage-deflate"),
        (
            "permessage-deflate",
            [("server_no_context_takeover", None), ("client_max_window_bits", "10")],
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        ),
    ],
)
def test_serialize_extension(
    name: str, params: list[tuple[str, str | None]], expected: str
) -> None:
    assert serialize_extension(name, params) == expected
    assert parse_extensions([expected]) == [(name, params)]
