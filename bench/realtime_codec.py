"""Per-event cost of the realtime layer's sans-I/O codecs, before vs after.

    .venv/bin/python bench/realtime_codec.py SRC_DIR [SRC_DIR ...]
        [--iterations 20000] [--repeat 5] [--callgrind N] [--results-dir DIR]

Each SRC_DIR is a tether ``src/`` directory (for example of a ``git worktree``
of an older commit); the first one is the baseline of the ratios. The cases
(bench/realtime_codec_cases.py) are the shapes of bench/realtime.py's
emit-echo (a 16-char string, and the same with an ack id answered by an
ACK), a ~200-byte chat message object in a namespace, and a 1 KiB binary
attachment, each decoded (Engine.IO frame to the handler's arguments) and
encoded (event to Engine.IO frames), with every check.

Time: each repeat runs every tree once, in turns, in a fresh process
(``time.perf_counter_ns`` over ``--iterations`` operations after a warm-up);
the figure is the median of ``--repeat`` such runs, in ns per operation.

Instructions (``--callgrind N``, needs valgrind): each case runs N and 2N
times under ``valgrind --tool=callgrind``; (2N - N) / N is its instructions
per operation, start-up cancelled out. Deterministic to a fraction of a
percent, which a shared machine's clock is not. Results go to
``bench/results/realtime_codec-<date>.md`` with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CASES = BENCH / "realtime_codec_cases.py"


def child(src: Path, *args: str, valgrind: bool = False) -> subprocess.CompletedProcess[str]:
    # A fixed hash seed: dict and set layouts, so instruction counts, repeat.
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "PYTHONHASHSEED": "0"}
    command = [sys.executable, str(CASES), *args]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done


def timings(sources: list[Path], iterations: int, repeat: int) -> list[dict[str, float]]:
    runs: list[list[dict[str, float]]] = [[] for _ in sources]
    for _ in range(repeat):
        for i, src in enumerate(sources):
            runs[i].append(json.loads(child(src, "time", str(iterations)).stdout))
    return [
        {case: statistics.median(run[case] for run in tree) for case in tree[0]} for tree in runs
    ]


def instructions(src: Path, case: str, n: int) -> float | None:
    counts = []
    for iterations in (n, 2 * n):
        done = child(src, "run", case, str(iterations), valgrind=True)
        if not json.loads(done.stdout.splitlines()[-1])["found"]:
            return None
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no callgrind total in:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / n


def table(
    title: str, unit: str, sources: list[Path], rows: dict[str, list[float | None]]
) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| case | " + " | ".join(f"`{src}` {unit}" for src in sources) + " |",
        "|---|" + "---|" * len(sources),
    ]
    for case, values in rows.items():
        base = values[0]
        cells = []
        for value in values:
            if value is None:
                cells.append("n/a")
            elif base is None:
                cells.append(f"{value:,.0f}")
            else:
                cells.append(f"{value:,.0f} ({value / base:.2f}x)")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="tether src/ directories")
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--callgrind", type=int, default=0, metavar="N", help="0: skip")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    sources: list[Path] = args.sources

    medians = timings(sources, args.iterations, args.repeat)
    names = list(dict.fromkeys(case for tree in medians for case in tree))
    lines = [
        "# Realtime codec cost per event — "
        + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "",
        f"Command: `.venv/bin/python {' '.join(sys.argv)}`. Python {platform.python_version()};"
        f" load average {[round(x, 2) for x in os.getloadavg()]} at the end of the timed runs"
        " (shared machine: the instruction counts are the steadier figure).",
        "",
        "Ratios are against the first tree. *decode*: Engine.IO frame(s) to the"
        " handler's arguments; *encode*: event and arguments to Engine.IO frames,"
        " with `Packet.event`/`ack` + `JsonParser.encode` + `engineio.encode_packet`;"
        " *encode (helper)*: `JsonParser.encode_event`/`encode_ack` + `engineio.encode_message`"
        " (n/a where the tree lacks them).",
        "",
    ]
    rows: dict[str, list[float | None]] = {c: [tree.get(c) for tree in medians] for c in names}
    lines += table(
        f"Time: median of {args.repeat} runs of {args.iterations} operations",
        "ns/op",
        sources,
        rows,
    )
    print("\n".join(lines), flush=True)
    if args.callgrind:
        if shutil.which("valgrind") is None:
            lines.append("valgrind is not installed: no instruction counts.")
        else:
            counted = {c: [instructions(src, c, args.callgrind) for src in sources] for c in names}
            lines += table(
                f"Instructions (callgrind): ({2 * args.callgrind} runs - {args.callgrind}) "
                f"/ {args.callgrind}",
                "instr/op",
                sources,
                counted,
            )
            print("\n".join(lines[-len(names) - 5 :]), flush=True)
    return write(args.results_dir, lines)


def write(directory: Path, lines: list[str]) -> int:
    """Write the report as ``realtime_codec-<UTC date and time>.md``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / time.strftime("realtime_codec-%Y-%m-%d-%H%M%S.md", time.gmtime())
    path.write_text("\n".join([*lines, ""]))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
