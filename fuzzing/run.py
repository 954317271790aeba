"""Run tether's fuzz targets.

::

    python fuzzing/run.py [--seconds N] [--engine auto|atheris|hypothesis] [targets...]

Each target (see ``targets.py``; all of them by default) runs for ``N``
seconds (60 by default). With ``atheris`` installed (``pip install -e
'.[fuzz]'``) the run is coverage-guided (libFuzzer), one process per target,
starting from the committed corpus in ``fuzzing/corpus/<target>/``; new
interesting inputs go to a scratch directory unless ``--update-corpus`` asks
to add them to the committed one. Without atheris, hypothesis drives the
same targets with random inputs and mutations of the corpus.

A failing input is written to ``--artifacts`` (``fuzzing/artifacts/`` by
default) and the exit status is 1. Replay one with ``--replay FILE TARGET``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))

Target = Callable[[bytes], None]


def _load_targets() -> dict[str, Target]:
    from targets import TARGETS

    return TARGETS


def _corpus(name: str) -> list[bytes]:
    directory = CORPUS / name
    if not directory.is_dir():
        return [b""]
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()] or [b""]


# -- atheris -------------------------------------------------------------------


def _run_atheris_worker(name: str, seconds: float, artifacts: Path, update: bool) -> int:
    """In a child process: instrument tether, then hand the target to libFuzzer."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["tether"]):
        targets = _load_targets()
    target = targets[name]
    committed = CORPUS / name
    committed.mkdir(parents=True, exist_ok=True)
    # New inputs go to a scratch corpus next to the artifacts, not the committed one.
    scratch = artifacts / f"{name}-corpus"
    scratch.mkdir(parents=True, exist_ok=True)
    dirs = [str(committed)] if update else [str(scratch), str(committed)]
    argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(seconds))}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=16384",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{name}-",
        *dirs,
    ]
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits


def _run_atheris(name: str, seconds: float, artifacts: Path, update: bool) -> bool:
    command = [sys.executable, __file__, "--worker", name, "--seconds", str(seconds)]
    command += ["--artifacts", str(artifacts)] + (["--update-corpus"] if update else [])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = result.stdout.splitlines()
    if result.returncode != 0:
        print("\n".join(lines[-60:]))
        return False
    # libFuzzer's last status line ("#N DONE cov: ... corp: ...") and "Done N runs".
    summary = [line for line in lines if "DONE" in line or line.startswith("Done ")]
    print("  " + " | ".join(summary[-2:]))
    return True


# -- hypothesis ------------------------------------------------------------------


def _mutate(seed: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
    """Apply simple byte-level mutations (flip, overwrite, insert, delete, repeat)."""
    data = bytearray(seed)
    for kind, where, chunk in ops:
        pos = where % (len(data) + 1)
        if kind == 0 and data:
            data[pos % len(data)] ^= 1 << (where % 8)
        elif kind == 1:
            data[pos : pos + len(chunk)] = chunk
        elif kind == 2:
            data[pos:pos] = chunk
        elif kind == 3:
            del data[pos : pos + 1 + where % 16]
        elif kind == 4:
            data[pos:pos] = bytes(data[pos : pos + 8]) * (1 + where % 8)
        elif kind == 5 and data:
            data[pos % len(data)] = (0x00, 0x7F, 0x80, 0xFF, 0x7E)[where % 5]
    return bytes(data)


def _run_hypothesis(name: str, target: Target, seconds: float, artifacts: Path) -> bool:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    corpus = _corpus(name)
    op = st.tuples(st.integers(0, 5), st.integers(0, 1 << 16), st.binary(max_size=8))
    inputs = st.one_of(
        st.builds(_mutate, st.sampled_from(corpus), st.lists(op, max_size=8)),
        st.sampled_from(corpus),
        st.binary(max_size=512),
    )
    last: list[bytes] = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs)
    def fuzz(data: bytes) -> None:
        last[:] = [data]
        target(data)

    runs = 0
    deadline = time.monotonic() + seconds
    try:
        for seed in corpus:
            target(seed)
        while time.monotonic() < deadline:
            fuzz()
            runs += 300
    except Exception as exc:
        artifacts.mkdir(parents=True, exist_ok=True)
        path = artifacts / f"{name}-crash-{random.getrandbits(32):08x}"
        if last:
            path.write_bytes(last[0])
        print(f"  FAILED: {type(exc).__name__}: {exc}\n  input: {path} {last[:1]!r}")
        return False
    print(f"  ~{runs} inputs (hypothesis)")
    return True


# -- command line ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    parser.add_argument("--update-corpus", action="store_true", help="add new inputs to corpus/")
    parser.add_argument("--replay", type=Path, help="run one input file through TARGET and exit")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return _run_atheris_worker(args.worker, args.seconds, args.artifacts, args.update_corpus)
    targets = _load_targets()
    if args.list:
        print("\n".join(targets))
        return 0
    names = args.targets or list(targets)
    unknown = [n for n in names if n not in targets]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}; see --list")
    if args.replay:
        for name in names:
            targets[name](args.replay.read_bytes())
        print("no failure")
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    failed = []
    for name in names:
        print(f"{name}: {engine}, {args.seconds:g} s", flush=True)
        if engine == "atheris":
            ok = _run_atheris(name, args.seconds, args.artifacts, args.update_corpus)
        else:
            ok = _run_hypothesis(name, targets[name], args.seconds, args.artifacts)
        if not ok:
            failed.append(name)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
