"""The input checks both realtime codecs share (:mod:`tether.realtime.protocol.checks`)."""

from __future__ import annotations

import pytest

from tether.exceptions import PacketError
from tether.realtime.protocol.checks import check_text_size, strict_json, too_big


def test_text_size_counts_utf8_bytes() -> None:
    check_text_size("a" * 10, 10, "packet")
    check_text_size("é" * 5, 10, "packet")  # 10 bytes
    with pytest.raises(PacketError, match=r"^packet of 12 bytes exceeds the limit of 10 bytes$"):
        check_text_size("é" * 6, 10, "packet")
    with pytest.raises(PacketError, match="payload of 11 bytes"):
        check_text_size("a" * 11, 10, "payload")


def test_too_big_message() -> None:
    assert too_big("payload", 5, 4) == "payload of 5 bytes exceeds the limit of 4 bytes"


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "[1,", ""])
def test_strict_json_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        strict_json(text)


def test_strict_json_reads_json() -> None:
    assert strict_json('{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
