"""Headers, the ordered case-insensitive multi-map of an HTTP message (RFC 7230 §3.2)."""

from __future__ import annotations

import pytest

from tether.protocol.http_types import HeaderItems, Headers, header_items


def test_headers_are_a_case_insensitive_ordered_multimap() -> None:
    headers = Headers([("Set-Thing", "a"), ("Host", "h"), ("set-thing", "b")])
    assert headers.get("SET-THING") == "a"
    assert headers.get_all("set-thing") == ["a", "b"]
    assert headers["host"] == "h"
    assert "HOST" in headers
    assert "missing" not in headers
    assert 1 not in headers
    assert headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["missing"]
    assert len(headers) == 3
    headers.set("SET-THING", "c")
    assert list(headers) == [("Host", "h"), ("SET-THING", "c")]
    headers.remove("host")
    assert list(headers) == [("SET-THING", "c")]


def test_headers_by_name_keeps_every_value_in_order_under_its_lower_case_name() -> None:
    headers = Headers([("Set-Thing", "a"), ("Host", "h"), ("set-thing", "b"), ("SET-THING", "")])
    assert headers.by_name() == {"set-thing": ["a", "b", ""], "host": ["h"]}
    assert Headers().by_name() == {}


def test_headers_tokens() -> None:
    headers = Headers([("Connection", "keep-alive, Upgrade"), ("Connection", " , close")])
    assert headers.tokens("connection") == ["keep-alive", "upgrade", "close"]
    assert headers.tokens("absent") == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X", "a\r\nInjected: yes"),
        ("X", "a\nb"),
        ("X", "a\rb"),
        ("X\r\nInjected", "v"),
        ("X\n", "v"),
        ("X:Y", "v"),
        ("X Y", "v"),
        ("", "v"),
    ],
)
def test_headers_add_refuses_crlf_injection(name: str, value: str) -> None:
    headers = Headers()
    with pytest.raises(ValueError):
        headers.add(name, value)
    with pytest.raises(ValueError):
        headers.set(name, value)
    assert list(headers) == []


def test_headers_item_assignment_replaces_every_value_and_del_removes() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("Host", "h")])
    headers["X-A"] = "3"
    assert list(headers) == [("Host", "h"), ("X-A", "3")]
    del headers["x-a"]
    assert list(headers) == [("Host", "h")]
    with pytest.raises(KeyError):
        del headers["X-A"]
    with pytest.raises(ValueError):
        headers["X-B"] = "a\r\nInjected: 1"


@pytest.mark.parametrize(
    "given",
    [{"X-A": "1", "X-B": "2"}, [("X-A", "1"), ("X-B", "2")], Headers([("X-A", "1"), ("X-B", "2")])],
)
def test_header_items_takes_a_mapping_pairs_or_headers(given: HeaderItems) -> None:
    assert header_items(given) == [("X-A", "1"), ("X-B", "2")]
