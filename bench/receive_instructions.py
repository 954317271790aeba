"""Instructions per ``Connection.receive_data`` call, counted by callgrind.

Run: ``.venv/bin/python bench/receive_instructions.py [SRC ...]``, where each
SRC is a ``src`` folder to import tether from (default: this checkout's); the
first is the one the others are compared with, e.g. a checkout of an older
commit with its C extension built. Needs ``valgrind``.

A server-side connection reads masked client frames of 16 bytes (binary),
one frame a read and 1,000 frames a read, with the C step and with the pure
Python one (``TETHER_NO_SPEEDUPS=1``). Each figure is the instructions of a
run with N reads less those of the same run with none (start-up, imports and
warm-up reads), divided by N. Callgrind counts are deterministic where
wall-clock time on a shared machine is not: use it to compare versions of
the receive path, ``bench/micro_speedups.py`` for nanoseconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
MASK = b"\x12\x34\x56\x78"
#: (label, frames a read, reads measured, warm-up reads)
KINDS = (("1 frame", 1, 20000, 300), ("1000 frames", 1000, 50, 5))


def drive(frames: int, reads: int, warm: int) -> None:
    """The measured program: ``warm`` + ``reads`` reads of ``frames`` frames."""
    from tether.protocol.connection import Connection, Side

    payload = b"hello, tether 16"
    body = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
    data = (bytes([0x82, 0x80 | len(payload)]) + MASK + body) * frames
    receive = Connection(Side.SERVER).receive_data
    for _ in range(warm + reads):
        receive(data)
    assert len(receive(data)) == frames


def count(src: str, pure: bool, frames: int, reads: int, warm: int) -> int:
    env = {**os.environ, "PYTHONPATH": src, "PYTHONHASHSEED": "0"}
    env["TETHER_NO_SPEEDUPS"] = "1" if pure else ""
    program = [sys.executable, str(HERE), "--drive", str(frames), str(reads), str(warm)]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", *program],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found, out.stderr
    return int(found.group(1))


def main(srcs: list[str]) -> None:
    print(f"{'instructions per read':<34}" + "".join(f"{Path(s).parent.name:>22}" for s in srcs))
    for pure in (True, False):
        for label, frames, reads, warm in KINDS:
            row = []
            for src in srcs:
                base = count(src, pure, frames, 0, warm)
                row.append((count(src, pure, frames, reads, warm) - base) / reads)
            cells = [f"{row[0]:>22,.0f}"]
            cells += [f"{n:>13,.0f} ({n / row[0]:.3f}x)" for n in row[1:]]
            print(f"{('pure Python' if pure else 'C'):<12}{label:<22}" + "".join(cells))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        drive(*(int(arg) for arg in sys.argv[2:5]))
    else:
        main(sys.argv[1:] or [str(HERE.parent.parent / "src")])
