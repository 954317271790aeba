"""Frame headers, masking and close payloads (RFC 6455 §5.2, §5.3, §5.5.1, §7.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import ProtocolError
from tether.protocol.frames import (
    CONTROL_OPCODES,
    Opcode,
    apply_mask,
    encode_frame,
    encode_header,
    is_valid_close_code,
    pack_close,
    unpack_close,
)


def xor_mask(data: bytes, mask: bytes) -> bytes:
    """§5.3 spelled out: octet i is XORed with octet i mod 4 of the key."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_opcodes_match_the_rfc() -> None:
    assert {op.name: int(op) for op in Opcode} == {
        "CONT": 0,
        "TEXT": 1,
        "BINARY": 2,
        "CLOSE": 8,
        "PING": 9,
        "PONG": 10,
    }
    assert frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG}) == CONTROL_OPCODES


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2**32, b"\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_header_uses_the_minimal_length_encoding(length: int, expected: bytes) -> None:
    assert encode_header(Opcode.BINARY, length) == expected


def test_header_bits() -> None:
    assert encode_header(Opcode.TEXT, 3, fin=False) == b"\x01\x03"
    assert encode_header(Opcode.TEXT, 3, rsv1=True) == b"\xc1\x03"
    assert encode_header(Opcode.CONT, 3, fin=False, rsv1=True) == b"\x40\x03"
    assert encode_header(Opcode.PING, 0, mask=b"abcd") == b"\x89\x80abcd"
    assert encode_header(Opcode.BINARY, 300, mask=b"abcd") == b"\x82\xfe\x01\x2cabcd"


def test_encode_frame_masks_the_payload() -> None:
    mask = b"\x01\x02\x03\x04"
    assert encode_frame(Opcode.TEXT, b"hello") == b"\x81\x05hello"
    assert encode_frame(Opcode.TEXT, b"hello", mask=mask) == (
        b"\x81\x85" + mask + xor_mask(b"hello", mask)
    )
    assert encode_frame(Opcode.BINARY, memoryview(b"ab"), fin=False) == b"\x02\x02ab"


def test_rfc_example_masked_hello() -> None:
    # §5.7: a single-frame masked text message "Hello".
    frame = encode_frame(Opcode.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@given(data=st.binary(max_size=2000), mask=st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_the_definition(data: bytes, mask: bytes) -> None:
    masked = apply_mask(data, mask)
    assert masked == xor_mask(data, mask)
    assert apply_mask(masked, mask) == data
    assert apply_mask(bytearray(data), mask) == masked
    assert apply_mask(memoryview(data), mask) == masked


def test_apply_mask_keeps_leading_and_trailing_zero_bytes() -> None:
    # The big-integer XOR must not drop zero bytes at either end.
    assert apply_mask(b"\x00\x00", b"\x00\x00\x00\x00") == b"\x00\x00"
    assert apply_mask(b"\xab\x00\x00\x00\xab", b"\xab\x00\x00\x00") == b"\x00" * 5


def test_valid_close_codes() -> None:
    expected = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} | set(
        range(3000, 5000)
    )
    assert {code for code in range(65536) if is_valid_close_code(code)} == expected


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "", b"\x03\xe8"),
        (1001, "bye", b"\x03\xe9bye"),
        (4999, "é", b"\x13\x87\xc3\xa9"),
        (1005, "", b""),
        (1000, "x" * 123, b"\x03\xe8" + b"x" * 123),
    ],
)
def test_pack_close(code: int, reason: str, expected: bytes) -> None:
    assert pack_close(code, reason) == expected


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1005, "x"),
        (1006, ""),
        (1004, ""),
        (999, ""),
        (5000, ""),
        (1000, "x" * 124),
        (1000, "é" * 62),
    ],
)
def test_pack_close_rejects(code: int, reason: str) -> None:
    with pytest.raises(ValueError):
        pack_close(code, reason)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x0f\xa0ok \xc3\xa9", (4000, "ok é")),
    ],
)
def test_unpack_close(payload: bytes, expected: tuple[int, str]) -> None:
    assert unpack_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        (b"\x03\xec", 1002),  # 1004
        (b"\x03\xed", 1002),  # 1005
        (b"\x03\xee", 1002),  # 1006
        (b"\x03\xf7", 1002),  # 1015
        (b"\x00\x00", 1002),
        (b"\x03\xe8\xff", 1007),
        (b"\x03\xe8\xed\xa0\x80", 1007),
    ],
)
def test_unpack_close_rejects(payload: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_close(payload)
    assert info.value.close_code == code


@given(code=st.integers(0, 65535), reason=st.text(max_size=40))
def test_close_payload_round_trip(code: int, reason: str) -> None:
    if not is_valid_close_code(code) or len(reason.encode()) > 123:
        return
    assert unpack_close(pack_close(code, reason)) == (code, reason)
