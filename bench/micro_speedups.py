"""Micro-benchmarks of the C speedups against their pure-Python twins.

Run: ``.venv/bin/python bench/micro_speedups.py``.  Prints ns per operation
(best of several timeit runs) for masking, UTF-8 checking and frame parsing,
and for ``Connection.receive_data`` with each receive loop.  Without the C
extension only the Python columns are printed.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable

from tether.protocol import speedups
from tether.protocol.connection import Connection, Side
from tether.protocol.frames import Opcode, encode_frame
from tether.protocol.utf8 import Utf8Decoder, decode_text

try:
    from tether.protocol import _speedups as c_ext
except ImportError:
    c_ext = None  # type: ignore[assignment]

MASK = b"\x12\x34\x56\x78"


def ns_per_op(func: Callable[[], object], repeat: int = 5) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e9


def row(label: str, python: Callable[[], object], c: Callable[[], object] | None) -> None:
    py_ns = ns_per_op(python)
    if c is None:
        print(f"{label:<50} {py_ns:>12,.0f}")
        return
    c_ns = ns_per_op(c)
    print(f"{label:<50} {py_ns:>12,.0f} {c_ns:>12,.0f} {py_ns / c_ns:>8.1f}x")


def bench_mask() -> None:
    for size, name in ((16, "16 B"), (1024, "1 KiB"), (65536, "64 KiB"), (1 << 20, "1 MiB")):
        data = os.urandom(size)
        row(
            f"apply_mask {name}",
            lambda d=data: speedups.apply_mask_py(d, MASK),  # type: ignore[misc]
            None if c_ext is None else lambda d=data: c_ext.apply_mask(d, MASK),  # type: ignore[misc]
        )
    odd = memoryview(os.urandom(65536 + 3))[3:]
    row(
        "apply_mask 64 KiB, unaligned memoryview",
        lambda: speedups.apply_mask_py(odd, MASK),
        None if c_ext is None else lambda: c_ext.apply_mask(odd, MASK),
    )


def bench_utf8() -> None:
    corpora = {
        "ASCII": b"The quick brown fox jumps over the lazy dog. " * 23,
        "mixed": "Grüße, 世界! Ελληνικά 😀 ".encode() * 33,
    }
    for name, data in corpora.items():
        data = data[:1024]
        while speedups.utf8_valid_prefix_py(data) != len(data):
            data = data[:-1]  # do not end in the middle of a character
        print(f"-- UTF-8, 1 KiB {name}")
        row(
            "  utf8_valid_prefix",
            lambda d=data: speedups.utf8_valid_prefix_py(d),  # type: ignore[misc]
            None if c_ext is None else lambda d=data: c_ext.utf8_valid_prefix(d),  # type: ignore[misc]
        )
        row("  decode_text = str(data, 'utf-8') (reference)", lambda d=data: decode_text(d), None)
        if c_ext is not None:
            row(
                "  decode_text vs C check + decode",
                lambda d=data: decode_text(d),
                lambda d=data: (c_ext.utf8_valid_prefix(d), str(d, "utf-8")),  # type: ignore[misc]
            )
        # A message in 8 fragments: Utf8Decoder per fragment (what the
        # connection does) against validating each fragment in C and decoding
        # the joined bytes once at the end.
        parts = [data[i : i + 128] for i in range(0, len(data), 128)]

        def incremental(parts: list[bytes] = parts) -> str:
            decoder = Utf8Decoder()
            out = [decoder.decode(p, False) for p in parts[:-1]]
            out.append(decoder.decode(parts[-1], True))
            return "".join(out)

        def validate_then_decode(parts: list[bytes] = parts) -> str:
            assert c_ext is not None
            tail = b""
            for p in parts:
                chunk = tail + p if tail else p
                n = c_ext.utf8_valid_prefix(chunk)
                if n < 0:
                    raise ValueError
                tail = chunk[n:]
            return str(b"".join(parts), "utf-8")

        row(
            "  8 fragments: Utf8Decoder vs C check, decode at end",
            incremental,
            None if c_ext is None else validate_then_decode,
        )


def bench_parse() -> None:
    payloads = [os.urandom(n) for n in (5, 20, 60, 120, 200, 10, 90, 30)] * 4  # 32 frames
    masked = b"".join(encode_frame(Opcode.BINARY, p, mask=MASK) for p in payloads)
    unmasked = b"".join(encode_frame(Opcode.BINARY, p) for p in payloads)
    texts = b"".join(
        encode_frame(Opcode.TEXT, b"hello %d" % i + b"x" * 40, mask=MASK) for i in range(32)
    )
    print(f"-- 32 small frames ({len(masked)} bytes masked)")
    for label, buf, expect in (("masked", masked, True), ("unmasked", unmasked, False)):
        row(
            f"  parse_frames, {label}",
            lambda b=buf, e=expect: speedups.parse_frames_py(b, 0, len(b), e, 1 << 62, 1 << 20),  # type: ignore[misc]
            None
            if c_ext is None
            else lambda b=buf, e=expect: c_ext.parse_frames(b, 0, len(b), e, 1 << 62, 1 << 20),  # type: ignore[misc]
        )

    def receive(buf: bytes, side: Side, fast: bool) -> Callable[[], object]:
        # The connection's frame loop splits frames with speedups.parse_frames.
        parse = c_ext.parse_frames if fast else speedups.parse_frames_py

        def run() -> object:
            speedups.parse_frames = parse
            return Connection(side).receive_data(buf)

        return run

    for label, buf, side in (
        ("server, 32 binary", masked, Side.SERVER),
        ("server, 32 text", texts, Side.SERVER),
        ("client, 32 binary", unmasked, Side.CLIENT),
    ):
        row(
            f"  Connection receive, {label}",
            receive(buf, side, False),
            None if c_ext is None else receive(buf, side, True),
        )


def main() -> None:
    print(f"C extension: {'yes' if c_ext is not None else 'no'}")
    print(f"{'ns per operation':<50} {'Python':>12} {'C':>12} {'speedup':>9}")
    bench_mask()
    bench_utf8()
    bench_parse()


if __name__ == "__main__":
    main()
