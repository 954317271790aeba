"""The C speedups against their pure-Python twins (RFC 6455 §5.2, §5.3, §8.1).

Tests marked ``needs_c`` compare ``tether.protocol._speedups`` with the
Python functions in :mod:`tether.protocol.speedups` and are skipped when the
extension is not built; the rest run both ways.  The whole protocol suite
also runs with ``TETHER_NO_SPEEDUPS=1`` (see ``scripts/test``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.exceptions import ProtocolError
from tether.limits import Limits
from tether.protocol import frames, speedups
from tether.protocol.connection import Connection, Side
from tether.protocol.deflate import DeflateOptions, DeflateParams, PerMessageDeflate
from tether.protocol.events import Event, Ping
from tether.protocol.speedups import (
    STOP_BAD_LENGTH,
    STOP_BAD_MASK,
    STOP_BATCH,
    STOP_HEADER,
    STOP_NEED_DATA,
    apply_mask_py,
    parse_frames_py,
    utf8_valid_prefix_py,
)

_c: ModuleType | None
try:
    from tether.protocol import _speedups as _c
except ImportError:
    _c = None

needs_c = pytest.mark.skipif(_c is None, reason="the C extension is not built")


#: The frame-splitting step the connection's one frame loop calls: the C
#: extension's when it is built (whatever TETHER_NO_SPEEDUPS says), else the
#: pure-Python twin again.
C_STEP: Any = parse_frames_py if _c is None else _c.parse_frames
#: Both implementations of that step, for tests that run the loop over each.
STEPS: list[Any] = [
    pytest.param(parse_frames_py, id="python"),
    pytest.param(C_STEP, id="c", marks=needs_c),
]


@contextlib.contextmanager
def parser(parse: Any, assemble_at: int | None = None) -> Iterator[None]:
    """Make the connection's frame loop split frames with ``parse`` (the
    C ``parse_frames`` or :func:`parse_frames_py`), and optionally assemble
    frames from ``assemble_at`` bytes, for the block."""
    saved = speedups.parse_frames, speedups.ASSEMBLE_AT
    speedups.parse_frames = parse
    if assemble_at is not None:
        speedups.ASSEMBLE_AT = assemble_at
    try:
        yield
    finally:
        speedups.parse_frames, speedups.ASSEMBLE_AT = saved


def c_ext() -> Any:
    assert _c is not None
    return _c


def spelled_out_mask(data: bytes, mask: bytes) -> bytes:
    """§5.3 literally: octet i is XORed with octet i mod 4 of the key."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# -- loader ---------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def test_speedups_are_in_use_when_required() -> None:
    # scripts/test sets TETHER_REQUIRE_SPEEDUPS=1 for its main run, so a build
    # that silently fell back to pure Python fails CI.
    if os.environ.get("TETHER_REQUIRE_SPEEDUPS") != "1" or _env_flag("TETHER_NO_SPEEDUPS"):
        pytest.skip("TETHER_REQUIRE_SPEEDUPS=1 is not set")
    assert speedups.HAVE_SPEEDUPS, "the C extension did not import; is a compiler installed?"


def test_have_speedups_follows_the_environment() -> None:
    if _env_flag("TETHER_NO_SPEEDUPS"):
        assert not speedups.HAVE_SPEEDUPS
    else:
        assert speedups.HAVE_SPEEDUPS is (_c is not None)


def test_implementations_in_use_match_have_speedups() -> None:
    assert frames.apply_mask is speedups.apply_mask
    if speedups.HAVE_SPEEDUPS:
        assert speedups.apply_mask is c_ext().apply_mask
        assert speedups.parse_frames is c_ext().parse_frames
    else:
        assert speedups.apply_mask is apply_mask_py
        assert speedups.parse_frames is parse_frames_py


@pytest.mark.parametrize("value", ["1", "yes"])
def test_environment_variable_forces_pure_python(value: str) -> None:
    code = (
        "from tether.protocol import frames, speedups\n"
        "assert not speedups.HAVE_SPEEDUPS\n"
        "assert frames.apply_mask is speedups.apply_mask_py\n"
    )
    env = {**os.environ, "TETHER_NO_SPEEDUPS": value}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


@needs_c
def test_stop_codes_match() -> None:
    for name in ("STOP_NEED_DATA", "STOP_BATCH", "STOP_HEADER", "STOP_BAD_LENGTH", "STOP_BAD_MASK"):
        assert getattr(c_ext(), name) == getattr(speedups, name)


# -- apply_mask -----------------------------------------------------------

masks = st.binary(min_size=4, max_size=4)


@needs_c
@given(data=st.binary(max_size=300), mask=masks, offset=st.integers(0, 15))
def test_apply_mask_matches_python(data: bytes, mask: bytes, offset: int) -> None:
    # An offset into a memoryview moves the start off 8-byte alignment.
    view = memoryview(bytes(offset) + data)[offset:]
    expected = apply_mask_py(data, mask)
    assert c_ext().apply_mask(view, mask) == expected
    assert c_ext().apply_mask(data, mask) == expected
    assert c_ext().apply_mask(bytearray(data), mask) == expected


@needs_c
def test_apply_mask_every_length_and_alignment() -> None:
    source = bytes(range(256)) * 2
    mask = b"\x01\x80\xfe\x37"
    # Past 64 bytes too: the vector blocks (protocol/_mask.h), then the
    # 8-byte words and single bytes of every tail.
    for offset in range(16):
        for length in range(200):
            data = source[offset : offset + length]
            view = memoryview(source)[offset : offset + length]
            assert c_ext().apply_mask(view, mask) == spelled_out_mask(data, mask)


@needs_c
@pytest.mark.parametrize("length", [4095, 65536, 65537 + 3, (1 << 20) + 5])
@pytest.mark.parametrize("offset", [0, 1, 3, 7])
def test_apply_mask_large(length: int, offset: int) -> None:
    data = os.urandom(length + offset)
    mask = os.urandom(4)
    view = memoryview(data)[offset:]
    assert c_ext().apply_mask(view, mask) == apply_mask_py(view, mask)


@needs_c
def test_apply_mask_is_an_involution_and_returns_bytes() -> None:
    data = os.urandom(1000)
    once = c_ext().apply_mask(data, b"abcd")
    assert type(once) is bytes
    assert c_ext().apply_mask(once, b"abcd") == data
    assert c_ext().apply_mask(b"", b"abcd") == b""


@needs_c
def test_apply_mask_non_contiguous_view() -> None:
    view = memoryview(bytes(range(40)))[::3]
    assert c_ext().apply_mask(view, b"wxyz") == apply_mask_py(view, b"wxyz")


@needs_c
@pytest.mark.parametrize("mask", [b"", b"abc", b"abcde"])
def test_apply_mask_rejects_a_key_that_is_not_4_bytes(mask: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        c_ext().apply_mask(b"data", mask)


@needs_c
def test_apply_mask_rejects_wrong_arguments() -> None:
    with pytest.raises(TypeError):
        c_ext().apply_mask("text", b"abcd")
    with pytest.raises(TypeError):
        c_ext().apply_mask(b"data")


# -- utf8_valid_prefix ----------------------------------------------------

UTF8_CASES = [
    # (data, expected): -1 invalid, else the length of the whole characters.
    (b"", 0),
    (b"ascii only", 10),
    ("é€𝄞\U0010ffff\ud7ff\ue000".encode(), 19),
    (b"\xc3", 0),  # truncated: could still become valid
    (b"ab\xe2\x82", 2),
    (b"ab\xf0\x9f\x98", 2),
    (b"\xed\x9f", 0),  # U+D7xx so far
    (b"\xf4\x8f\xbf", 0),  # up to U+10FFFF so far
    (b"\x80", -1),  # lone continuation byte
    (b"\xbf", -1),
    (b"\xc0\x80", -1),  # overlong NUL
    (b"\xc1\xbf", -1),  # overlong
    (b"\xc0", -1),  # C0 and C1 can only start overlongs
    (b"\xe0\x80\x80", -1),  # overlong 3-byte form
    (b"\xe0\x9f", -1),  # ... detected on its second byte
    (b"\xf0\x8f\xbf\xbf", -1),  # overlong 4-byte form
    (b"\xf0\x80", -1),
    (b"\xed\xa0\x80", -1),  # U+D800, a surrogate
    (b"\xed\xa0", -1),  # ... detected on its second byte
    (b"\xed\xbf\xbf", -1),  # U+DFFF
    (b"\xf4\x90\x80\x80", -1),  # above U+10FFFF
    (b"\xf4\x90", -1),
    (b"\xf5", -1),  # leads that only start code points above U+10FFFF
    (b"\xff", -1),
    (b"\xc3\x28", -1),  # lead without its continuation
    (b"\xe2\x82\x28", -1),
    (b"\xe2\x28\xa1", -1),
    (b"\xf0\x9f\x98\x28", -1),
    (b"\xe2\x82\xac\x80", -1),  # one continuation too many
    (b"a\xc3\xa9\xc3", 3),
]


@pytest.mark.parametrize(("data", "expected"), UTF8_CASES)
def test_utf8_valid_prefix_python(data: bytes, expected: int) -> None:
    assert utf8_valid_prefix_py(data) == expected


@needs_c
@pytest.mark.parametrize(("data", "expected"), UTF8_CASES)
def test_utf8_valid_prefix_c(data: bytes, expected: int) -> None:
    assert c_ext().utf8_valid_prefix(data) == expected
    # After runs of ASCII of every length around the 8-byte fast path.
    for n in range(18):
        shifted = c_ext().utf8_valid_prefix(b"a" * n + data)
        assert shifted == (-1 if expected < 0 else expected + n)
        assert c_ext().utf8_valid_prefix(memoryview(b"a" * n + data)[n:]) == expected


def _reference_prefix(data: bytes) -> int:
    """An independent definition: -1 unless some completion decodes."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        tail = data[cut:]
        if not tail:
            return cut
        # The tail must be a proper prefix of some valid 2-4 byte sequence.
        for rest in itertools.product((b"\x80", b"\x90", b"\xa0", b"\xbf"), repeat=4 - len(tail)):
            for k in range(len(rest) + 1):
                try:
                    (tail + b"".join(rest[:k])).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                return cut
        return -1
    return -1


@needs_c
def test_utf8_every_one_and_two_byte_sequence() -> None:
    utf8_valid_prefix = c_ext().utf8_valid_prefix
    for a in range(256):
        one = bytes((a,))
        assert utf8_valid_prefix(one) == utf8_valid_prefix_py(one), one
        for b in range(256):
            two = bytes((a, b))
            assert utf8_valid_prefix(two) == utf8_valid_prefix_py(two), two


@needs_c
def test_utf8_three_and_four_byte_boundaries() -> None:
    # The byte values where RFC 3629's ranges start and end, in every position.
    edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF]
    edges += [0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    for seq in itertools.product(edges, repeat=3):
        data = bytes(seq)
        assert c_ext().utf8_valid_prefix(data) == utf8_valid_prefix_py(data), data
    for seq in itertools.product([0xF0, 0xF4], [0x80, 0x8F, 0x90, 0xBF], [0x80, 0xC0], edges):
        data = bytes(seq)
        assert c_ext().utf8_valid_prefix(data) == utf8_valid_prefix_py(data), data


_UTF8_PIECES = [b"a", b"\xc3", b"\xa9", b"\xed", b"\xa0", b"\x9f", b"\xf4", b"\x90", b"\x8f"]
_UTF8_PIECES += [b"\xe0", b"\xf0", b"\x80", b"\xbf", b"\xc0", b"\xf5", "€".encode(), b"abcdefgh"]
utf8_inputs = st.one_of(
    st.binary(max_size=40),
    st.text().map(str.encode),
    st.lists(st.sampled_from(_UTF8_PIECES), max_size=12).map(b"".join),
    st.tuples(st.text(), st.binary(max_size=4)).map(lambda t: t[0].encode() + t[1]),
)


@given(data=utf8_inputs)
def test_utf8_python_matches_the_definition(data: bytes) -> None:
    assert utf8_valid_prefix_py(data) == _reference_prefix(data)


@needs_c
@given(data=utf8_inputs, offset=st.integers(0, 9))
def test_utf8_c_matches_python(data: bytes, offset: int) -> None:
    view = memoryview(bytes(offset) + data)[offset:]
    assert c_ext().utf8_valid_prefix(view) == utf8_valid_prefix_py(data)


# -- parse_frames ---------------------------------------------------------


def header(b0: int, length: int, mask: bytes | None, form: int | None = None) -> bytes:
    """A frame header; ``form`` forces the 7-, 16- or 64-bit length encoding."""
    bit = 0x80 if mask is not None else 0
    if form is None:
        form = 7 if length < 126 else 16 if length < 0x10000 else 64
    if form == 7:
        head = bytes((b0, bit | length))
    elif form == 16:
        head = struct.pack("!BBH", b0, bit | 126, length)
    else:
        head = struct.pack("!BBQ", b0, bit | 127, length)
    return head + (mask or b"")


def frame(b0: int, payload: bytes, mask: bytes | None, form: int | None = None) -> bytes:
    body = payload if mask is None else spelled_out_mask(payload, mask)
    return header(b0, len(payload), mask, form) + body


ParseFunc = Callable[..., tuple[list[tuple[int, bytes]], int, int, int, int]]
PARSERS: list[Any] = [
    pytest.param(parse_frames_py, id="python"),
    pytest.param(lambda *a: c_ext().parse_frames(*a), id="c", marks=needs_c),
]


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_frames_returns_unmasked_payloads(parse: ParseFunc) -> None:
    buf = frame(0x81, b"hello", b"abcd") + frame(0x02, b"x" * 300, b"\x00\xff\x10\x01")
    buf += frame(0x89, b"", b"wxyz")
    assert parse(buf, 0, len(buf), True, 100, 1000) == (
        [(0x81, b"hello"), (0x02, b"x" * 300), (0x89, b"")],
        len(buf),
        STOP_NEED_DATA,
        0,
        0,
    )
    unmasked = frame(0x82, b"abc", None) + frame(0x82, b"de", None, form=64)
    assert parse(unmasked, 0, len(unmasked), False, 100, 1000)[:3] == (
        [(0x82, b"abc"), (0x82, b"de")],
        len(unmasked),
        STOP_NEED_DATA,
    )


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_frames_stops(parse: ParseFunc) -> None:
    one = frame(0x82, b"abc", b"mask")
    # Nothing, or a header cut before its length is complete.
    for cut in (b"", b"\x82", b"\x82\xfe\x01", b"\x82\xff\x00\x00\x00"):
        assert parse(one + cut, 0, len(one + cut), True, 9, 99) == (
            [(0x82, b"abc")],
            len(one),
            STOP_NEED_DATA,
            0,
            0,
        )
    # A complete header whose mask key or payload has not all arrived.
    for cut in (b"\x81\x85", b"\x81\x85ab", b"\x81\x85abcd", b"\x81\x85abcdxxxx"):
        assert parse(one + cut, 0, len(one + cut), True, 9, 99) == (
            [(0x82, b"abc")],
            len(one),
            STOP_HEADER,
            0x81,
            5,
        )
    # A declared length over max_len, even though the frame is all there.
    big = frame(0x02, b"z" * 200, b"mask")
    assert parse(one + big, 0, len(one + big), True, 9, 199) == (
        [(0x82, b"abc")],
        len(one),
        STOP_HEADER,
        0x02,
        200,
    )
    # A huge declared length fails at once, before any payload.
    huge = header(0x82, (1 << 63) - 1, b"mask")
    assert parse(huge, 0, len(huge), True, 9, 99) == ([], 0, STOP_HEADER, 0x82, (1 << 63) - 1)
    bad_length = header(0x82, 1 << 63, b"mask", form=64)
    assert parse(one + bad_length, 0, len(one) + 10, True, 9, 99)[1:] == (
        len(one),
        STOP_BAD_LENGTH,
        0,
        0,
    )
    unmasked = frame(0x82, b"abc", None)
    assert parse(one + unmasked, 0, len(one + unmasked), True, 9, 99)[1:3] == (
        len(one),
        STOP_BAD_MASK,
    )
    assert parse(unmasked + one, 0, len(one + unmasked), False, 9, 99)[1:3] == (
        len(unmasked),
        STOP_BAD_MASK,
    )
    # max_frames: the batch ends before the next header is even looked at.
    assert parse(one * 3 + b"\x00", 0, 3 * len(one) + 1, True, 2, 99) == (
        [(0x82, b"abc")] * 2,
        2 * len(one),
        STOP_BATCH,
        0,
        0,
    )
    assert parse(one, 0, len(one), True, 0, 99) == ([], 0, STOP_BATCH, 0, 0)


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_frames_window(parse: ParseFunc) -> None:
    one = frame(0x82, b"abc", None)
    buf = b"junk" + one * 2
    assert parse(buf, 4, len(buf), False, 9, 99)[:2] == ([(0x82, b"abc")] * 2, len(buf))
    assert parse(buf, 4, len(buf) - 1, False, 9, 99)[:3] == (
        [(0x82, b"abc")],
        4 + len(one),
        STOP_HEADER,
    )
    # end beyond the buffer is clipped; huge limits saturate.
    assert parse(buf, 4, 1 << 40, False, 1 << 70, 1 << 70)[:2] == ([(0x82, b"abc")] * 2, len(buf))
    assert parse(memoryview(buf)[4:], 0, len(buf), False, 9, 99)[1] == len(buf) - 4
    with pytest.raises(ValueError):
        parse(buf, len(buf) + 1, len(buf) + 5, False, 9, 99)
    with pytest.raises(ValueError):
        parse(buf, 5, 4, False, 9, 99)
    with pytest.raises(ValueError):
        parse(buf, 0, len(buf), False, -1, 99)
    with pytest.raises(ValueError):
        parse(buf, -1, len(buf), False, 9, 99)


@st.composite
def frame_streams(draw: st.DrawFn, masked: bool) -> bytes:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        b0 = draw(st.integers(0, 255))
        payload = draw(st.binary(max_size=draw(st.sampled_from([10, 130, 300]))))
        form = draw(st.sampled_from([None, None, 16, 64]))
        wrong = draw(st.integers(0, 9)) == 0
        key = draw(masks) if masked is not wrong else None
        out.append(frame(b0, payload, key, form))
        if draw(st.integers(0, 30)) == 0:
            out.append(header(b0, draw(st.integers(1 << 63, (1 << 64) - 1)), None, form=64))
    return b"".join(out)


@needs_c
@given(
    data=st.data(),
    masked=st.booleans(),
    max_frames=st.sampled_from([0, 1, 2, 5, 1 << 62]),
    max_len=st.sampled_from([0, 5, 125, 300, 1 << 20]),
)
def test_parse_frames_c_matches_python(
    data: st.DataObject, masked: bool, max_frames: int, max_len: int
) -> None:
    buf = data.draw(frame_streams(masked))
    pos = data.draw(st.integers(0, len(buf)))
    end = data.draw(st.integers(pos, len(buf) + 2))
    for kind in (bytes, bytearray, memoryview):
        arg = kind(buf)
        assert c_ext().parse_frames(arg, pos, end, masked, max_frames, max_len) == (
            parse_frames_py(arg, pos, end, masked, max_frames, max_len)
        )


# -- the connection's receive loop, C-backed against pure Python -----------


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@st.composite
def wire_frames(draw: st.DrawFn, masked: bool) -> bytes:
    """Mostly well-formed traffic, with every kind of protocol error mixed in."""
    out = []
    for _ in range(draw(st.integers(1, 8))):
        opcode = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 2, 2, 8, 9, 9, 10, 10, 3, 11]))
        fin = draw(st.sampled_from([0x80, 0x80, 0]))
        rsv = draw(st.sampled_from([0] * 8 + [0x40, 0x40, 0x10]))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            payload = draw(st.binary(max_size=200))
        elif kind == 1:
            payload = draw(st.text(max_size=60)).encode()
        elif kind == 2:
            payload = _raw_deflate(draw(st.text(max_size=60)).encode())
        else:
            code = draw(st.sampled_from([1000, 1001, 1005, 1006, 3000, 999]))
            payload = struct.pack("!H", code) + draw(st.binary(max_size=8))
        if draw(st.integers(0, 3)) == 0 and len(payload) > 1:
            payload = payload[: draw(st.integers(1, len(payload) - 1))]  # split a character
        use_mask = masked if draw(st.integers(0, 40)) else not masked
        key = draw(masks) if use_mask else None
        out.append(frame(fin | rsv | opcode, payload, key, draw(st.sampled_from([None, 16, 64]))))
        if draw(st.integers(0, 40)) == 0:
            out.append(header(0x82, 1 << 63, key, form=64))
    return b"".join(out)


def _run_connection(
    parse: Any, side: Side, stream: bytes, cuts: list[int], rooms: list[int | None], **opts: Any
) -> list[object]:
    """Feed ``stream`` in pieces; record everything observable about the connection."""
    with parser(parse):
        conn = Connection(side, **opts)
        record: list[object] = []
        points = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
        for i, (start, stop) in enumerate(itertools.pairwise(points)):
            events: list[Event] = conn.receive_data(stream[start:stop], rooms[i % len(rooms)])
            record.append((events, conn.pending_bytes))
        for _ in range(3):  # drain what max_messages held back
            record.append((conn.receive_data(b""), conn.pending_bytes))
        sent = b"".join(conn.data_to_send())
        # A client masks with random keys: compare what the frames say.
        record.append(parse_frames_py(sent, 0, len(sent), conn.is_client, 1 << 62, 1 << 62))
        error = conn.error
        code = None if error is None else error.close_code
        record.append((conn.state, conn.close_rcvd, conn.close_sent, type(error), str(error), code))
        return record


@settings(max_examples=300)
@given(
    data=st.data(),
    side=st.sampled_from([Side.SERVER, Side.CLIENT]),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
    rooms=st.lists(st.sampled_from([None, None, 0, 1, 2]), min_size=1, max_size=3),
    limits=st.sampled_from([{}, {"max_frame_size": 100}, {"max_message_size": 150}]),
    deflate=st.booleans(),
    assemble_at=st.sampled_from([speedups.ASSEMBLE_AT, 4, 30]),
)
def test_receive_loop_matches_pure_python(
    data: st.DataObject,
    side: Side,
    cuts: list[int],
    rooms: list[int | None],
    limits: dict[str, int],
    deflate: bool,
    assemble_at: int,
) -> None:
    # A small ASSEMBLE_AT sends most partial frames, control frames included,
    # through the Assembler path of both loops.
    stream = data.draw(wire_frames(side is Side.SERVER))
    results = []
    saved = speedups.ASSEMBLE_AT
    speedups.ASSEMBLE_AT = assemble_at
    try:
        for parse in (parse_frames_py, C_STEP):
            opts: dict[str, Any] = {"limits": Limits(**limits)}
            if deflate:
                opts["deflate"] = PerMessageDeflate(
                    DeflateParams(), is_client=side is Side.CLIENT, options=DeflateOptions()
                )
            results.append(_run_connection(parse, side, stream, cuts, rooms, **opts))
    finally:
        speedups.ASSEMBLE_AT = saved
    assert results[0] == results[1]


def test_receive_loop_checks_a_huge_header_before_its_payload() -> None:
    # RFC 6455 §10.4 / limits: the declared length fails the connection at once.
    for parse in (parse_frames_py, C_STEP):
        with parser(parse):
            conn = Connection(Side.SERVER)
            conn.receive_data(frame(0x81, b"hi", b"abcd") + header(0x82, 1 << 40, b"abcd"))
        assert isinstance(conn.error, ProtocolError)
        assert conn.error.close_code == 1009


@pytest.mark.parametrize("parse", STEPS)
def test_control_frame_over_a_small_max_frame_size_is_accepted(parse: Any) -> None:
    # _check_header lets a control frame of up to 125 bytes through whatever
    # max_frame_size says (§5.5), so the C splitter must not hold it back.
    with parser(parse):
        conn = Connection(Side.SERVER, limits=Limits(max_frame_size=100))
        events = conn.receive_data(frame(0x89, b"p" * 120, b"abcd") + frame(0x82, b"x", b"abcd"))
    assert events == [Ping(b"p" * 120), b"x"]
    assert conn.pending_bytes == 0


# -- Assembler and reading into a shared buffer -----------------------------

ASSEMBLERS: list[Any] = [
    pytest.param(speedups.AssemblerPy, id="python"),
    pytest.param(lambda *a: c_ext().Assembler(*a), id="c", marks=needs_c),
]


@pytest.mark.parametrize("make", ASSEMBLERS)
@given(
    payload=st.binary(max_size=200),
    mask=st.one_of(st.just(b""), masks),
    cuts=st.lists(st.integers(0, 200), max_size=5),
    offset=st.integers(0, 9),
)
def test_assembler_unmasks_across_any_chunks(
    make: Any, payload: bytes, mask: bytes, cuts: list[int], offset: int
) -> None:
    # §5.3: the key phase follows the offset in the payload, not in the chunk.
    wire = spelled_out_mask(payload, mask) if mask else payload
    trailer = b"next frame"
    stream = bytes(offset) + wire + trailer
    assembler = make(len(payload), mask)
    points = sorted({offset, len(stream), *(offset + min(c, len(wire)) for c in cuts)})
    pos = offset
    for start, stop in itertools.pairwise(points):
        if assembler.missing:
            assert start == pos
            pos = assembler.feed(memoryview(stream)[:stop], start, stop)
    assert assembler.missing == 0
    assert pos == offset + len(payload)
    assert assembler.take() == payload


@pytest.mark.parametrize("make", ASSEMBLERS)
def test_assembler_refuses_misuse(make: Any) -> None:
    with pytest.raises(ValueError):
        make(4, b"abc")
    with pytest.raises(ValueError):
        make(-1, b"")
    assembler = make(4, b"")
    assert assembler.feed(b"ab", 0, 2) == 2
    with pytest.raises(ValueError):
        assembler.take()  # not complete
    with pytest.raises(ValueError):
        assembler.feed(b"ab", 2, 1)  # pos beyond end
    assert assembler.feed(b"cdef", 0, 10) == 2  # end is clamped; stops at the payload's end
    assert assembler.take() == b"abcd"
    with pytest.raises(ValueError):
        assembler.feed(b"x", 0, 1)  # already taken
    with pytest.raises(ValueError):
        assembler.take()


def _feed_through_scratch(
    conn: Connection, stream: bytes, cuts: list[int], size: int
) -> list[Event]:
    """What an asyncio.BufferedProtocol does: get_buffer, write the read into it, buffer_updated."""
    scratch = memoryview(bytearray(size))
    events: list[Event] = []
    pos = 0
    points = sorted({*(min(c, len(stream)) for c in cuts), len(stream)})
    for stop in points:
        while pos < stop:
            view = conn.get_buffer(scratch)
            n = min(len(view), stop - pos)
            view[:n] = stream[pos : pos + n]
            events.extend(conn.buffer_updated(scratch, n))
            pos += n
    return events


@pytest.mark.parametrize("parse", STEPS)
@pytest.mark.parametrize("assemble_at", [4, 8192])
@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 3, 125, 126, 5000, 70000]), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 300000), max_size=6),
    scratch=st.sampled_from([512, 4096, 256 * 1024]),
    side=st.sampled_from([Side.SERVER, Side.CLIENT]),
)
def test_large_frames_across_reads_give_the_same_messages(
    parse: Any,
    assemble_at: int,
    sizes: list[int],
    cuts: list[int],
    scratch: int,
    side: Side,
) -> None:
    masked = side is Side.SERVER
    payloads = [bytes([i % 251]) * n + os.urandom(min(n, 8)) for i, n in enumerate(sizes)]
    stream = b"".join(
        frame(
            0x82 if i % 2 else 0x81,
            p.hex().encode() if i % 2 == 0 else p,
            b"k3y!" if masked else None,
        )
        for i, p in enumerate(payloads)
    ) + frame(0x89, b"ping", b"k3y!" if masked else None)
    expected: list[object] = [p.hex() if i % 2 == 0 else p for i, p in enumerate(payloads)] + [
        Ping(b"ping")
    ]
    with parser(parse, assemble_at):
        limits = Limits(max_frame_size=1 << 20, max_message_size=1 << 20)
        by_pieces = Connection(side, limits=limits)
        events: list[Event] = []
        points = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
        for start, stop in itertools.pairwise(points):
            events.extend(by_pieces.receive_data(stream[start:stop]))
        through_scratch = Connection(side, limits=limits)
        scratch_events = _feed_through_scratch(through_scratch, stream, cuts, scratch)
    assert events == expected
    assert scratch_events == expected
    assert by_pieces.pending_bytes == through_scratch.pending_bytes == 0
    assert by_pieces.error is None and through_scratch.error is None


@pytest.mark.parametrize("parse", STEPS)
def test_messages_held_back_survive_reads_into_a_small_scratch(parse: Any) -> None:
    # max_messages holds frames back; more than half the scratch of them is
    # not moved around but appended to, and nothing is lost or reordered.
    with parser(parse):
        conn = Connection(Side.SERVER)
        scratch = memoryview(bytearray(256))
        stream = b"".join(frame(0x82, bytes([i]) * 40, b"abcd") for i in range(20))
        got: list[Event] = []
        pos = 0
        while pos < len(stream):
            view = conn.get_buffer(scratch)
            n = min(len(view), len(stream) - pos)
            view[:n] = stream[pos : pos + n]
            got.extend(conn.buffer_updated(scratch, n, 1))
            pos += n
        while conn.pending_bytes:
            got.extend(conn.receive_data(b"", 1))
    assert got == [bytes([i]) * 40 for i in range(20)]


@pytest.mark.parametrize("parse", STEPS)
def test_a_frame_over_the_limit_is_refused_before_any_assembly(parse: Any) -> None:
    with parser(parse):
        conn = Connection(Side.SERVER, limits=Limits(max_frame_size=10000))
        conn.receive_data(header(0x82, 20000, b"abcd") + b"x" * 9000)
    assert isinstance(conn.error, ProtocolError) and conn.error.close_code == 1009
    assert not conn._reader.assembling


@pytest.mark.parametrize("parse", STEPS)
def test_invalid_utf8_in_an_assembled_text_frame_fails_with_1007(parse: Any) -> None:
    with parser(parse):
        conn = Connection(Side.SERVER)
        wire = frame(0x81, b"a" * 10000 + b"\xff", b"abcd")
        conn.receive_data(wire[:5000])
        assert conn._reader.assembling
        conn.receive_data(wire[5000:])
    assert isinstance(conn.error, ProtocolError) and conn.error.close_code == 1007


def test_send_vectored_frames_like_send() -> None:
    server = Connection(Side.SERVER)
    for message in (b"x" * 70000, "é" * 300, bytearray(b"ab"), memoryview(b"cd" * 100)):
        head, payload = server.send_vectored(message)
        assert head + payload == server.send(message)
        if type(message) is bytes:
            assert payload is message  # not copied
        assert type(payload) is bytes
    client = Connection(Side.CLIENT)
    head, payload = client.send_vectored(b"hello" * 1000)
    frames_, _, stop, _, _ = parse_frames_py(head + payload, 0, 1 << 30, True, 10, 1 << 30)
    assert frames_ == [(0x82, b"hello" * 1000)] and stop == STOP_NEED_DATA
    client.send_close()
    with pytest.raises(Exception, match="closing"):
        client.send_vectored(b"late")
