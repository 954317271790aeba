"""UTF-8 validation of text messages, whole and fragment by fragment (RFC 6455 §8.1)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import ProtocolError
from tether.protocol.utf8 import Utf8Decoder, decode_text

# Bytes that can follow a valid prefix; the ranges matter only for the second
# byte of a sequence (E0 A0-BF, ED 80-9F, F0 90-BF, F4 80-8F), so these four
# stand for every continuation byte.
_CONTINUATIONS = (b"\x80", b"\x90", b"\xa0", b"\xbf")
_SUFFIXES = [
    b"",
    *(b"".join(p) for n in (1, 2, 3) for p in itertools.product(_CONTINUATIONS, repeat=n)),
]


def is_viable_prefix(data: bytes) -> bool:
    """Whether some bytes appended to ``data`` make it valid UTF-8."""
    for suffix in _SUFFIXES:
        try:
            (data + suffix).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


@pytest.mark.parametrize("text", ["", "ascii", "é", "€", "𝄞", "\ud7ff", "\ue000", "\U0010ffff"])
def test_decode_text_accepts_valid_utf8(text: str) -> None:
    assert decode_text(text.encode()) == text
    assert decode_text(bytearray(text.encode())) == text
    assert decode_text(memoryview(text.encode())) == text


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # lone continuation
        b"\xc0\x80",  # overlong NUL
        b"\xe0\x80\x80",  # overlong
        b"\xed\xa0\x80",  # U+D800, a surrogate
        b"\xed\xbf\xbf",  # U+DFFF
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"ab\xe2\x82",  # truncated
    ],
)
def test_decode_text_rejects_invalid_utf8_with_1007(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_text(data)
    assert info.value.close_code == 1007


@pytest.mark.parametrize(
    ("fragments", "failing"),
    [
        ([b"ab", b"c\xffd", b"e"], 1),
        ([b"\xc3", b"\x28"], 1),  # bad continuation arrives in the next fragment
        ([b"\xed\xa0"], 0),  # surrogate, seen before its third byte
        ([b"\xed", b"\xbf"], 1),
        ([b"\xed\x9f"], None),  # U+D7xx: valid so far
        ([b"\xf4\x90"], 0),
        ([b"\xe0\x9f"], 0),  # overlong
    ],
)
def test_decoder_fails_on_the_fragment_with_the_bad_byte(
    fragments: list[bytes], failing: int | None
) -> None:
    decoder = Utf8Decoder()
    for i, fragment in enumerate(fragments):
        if i == failing:
            with pytest.raises(ProtocolError) as info:
                decoder.decode(fragment, False)
            assert info.value.close_code == 1007
            return
        decoder.decode(fragment, False)
    assert failing is None


def test_decoder_rejects_a_truncated_final_fragment() -> None:
    decoder = Utf8Decoder()
    assert decoder.decode(b"a\xe2\x82", False) == "a"
    with pytest.raises(ProtocolError):
        decoder.decode(b"", True)


def test_decoder_every_split_of_valid_text() -> None:
    text = "a\u00e9\u20ac\U0001d11e\ud7ff\U0010ffff"
    data = text.encode()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            decoder = Utf8Decoder()
            out = decoder.decode(data[:i], False) + decoder.decode(data[i:j], False)
            assert out + decoder.decode(data[j:], True) == text


@given(text=st.text(), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_decoder_round_trips_any_text_in_any_split(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts})
    decoder = Utf8Decoder()
    out, start = [], 0
    for point in points:
        out.append(decoder.decode(data[start:point], False))
        start = point
    out.append(decoder.decode(data[start:], True))
    assert "".join(out) == text


@given(
    data=st.one_of(
        st.binary(max_size=12),
        st.lists(
            st.sampled_from(
                [
                    b"a",
                    b"\xc3",
                    b"\xa9",
                    b"\xed",
                    b"\xa0",
                    b"\x9f",
                    b"\xf4",
                    b"\x90",
                    b"\x8f",
                    b"\xe0",
                    b"\xf0",
                    b"\x80",
                    b"\xbf",
                ]
            ),
            max_size=8,
        ).map(b"".join),
    )
)
def test_decoder_fails_at_the_first_byte_no_completion_can_fix(data: bytes) -> None:
    # Fed byte by byte, the decoder must fail exactly when the prefix stops being
    # the start of some valid UTF-8 text, never earlier and never later (§8.1).
    decoder = Utf8Decoder()
    for i in range(len(data)):
        viable = is_viable_prefix(data[: i + 1])
        if viable:
            decoder.decode(data[i : i + 1], False)
        else:
            with pytest.raises(ProtocolError):
                decoder.decode(data[i : i + 1], False)
            return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(ProtocolError):
            decoder.decode(b"", True)
    else:
        assert decoder.decode(b"", True) == ""
