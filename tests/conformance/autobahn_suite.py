"""Run Autobahn's whole suite (through kosoku) against tether, both sides.

As a script, runs both sides and rewrites the summary page::

    python tests/conformance/autobahn_suite.py --docs docs/conformance.md

The pytest tests in test_autobahn.py call the same functions.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
# 9.x sends messages of up to 16 MiB; keepalive pings would be frames the cases do not expect.
SERVER_FLAGS = [
    "--max-message-size",
    str(64 * 2**20),
    "--max-frame-size",
    str(64 * 2**20),
    "--ping-interval",
    "none",
]
SUITE_TIMEOUT = 1200.0  # seconds per side, far above the few minutes a run takes
# The server side runs as one kosoku run per group, in this order, so that a
# long run says how far it got: kosoku reports nothing until it is done. The
# compression groups (12, 13) hold 216 of the 517 cases and most of the time.
SERVER_GROUPS = [
    *(f"{n}.*" for n in (1, 2, 3, 4, 5, 6, 7, 9, 10)),
    *(f"12.{n}.*" for n in range(1, 6)),
    *(f"13.{n}.*" for n in range(1, 8)),
]
# The client side prints a line every this many cases (autobahn_client.py).
CLIENT_PROGRESS_EVERY = 50

#: Where progress lines go: the script prints them, the tests show them in pytest's output.
Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Summary:
    side: str
    seconds: float
    behaviors: collections.Counter[str] = field(default_factory=collections.Counter)
    close_behaviors: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: dict[str, str] = field(default_factory=dict)
    lenient: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.behaviors.values())


def _kosoku() -> str:
    candidate = Path(sys.executable).parent / "kosoku"
    return str(candidate) if candidate.exists() else "kosoku"


def _read_line(proc: subprocess.Popen[str], pattern: str, deadline: float) -> re.Match[str]:
    """Read the child's stderr until a line matches (the child prints its port there)."""
    assert proc.stderr is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise RuntimeError(f"no line matching {pattern!r}; child said: {''.join(seen)[-2000:]}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _selection(cases: list[str] | None) -> list[str]:
    return [arg for case in cases or [] for arg in ("-i", case)]


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def summarize(side: str, outdirs: list[Path], seconds: float) -> Summary:
    summary = Summary(side, seconds)
    for outdir in outdirs:
        _add_results(summary, outdir)
    return summary


def _add_results(summary: Summary, outdir: Path) -> None:
    index = json.loads((outdir / "index.json").read_text())
    for results in index.values():
        for case, result in results.items():
            behavior, close = result["behavior"], result["behaviorClose"]
            summary.behaviors[behavior] += 1
            summary.close_behaviors[close] += 1
            if behavior in ("NON-STRICT", "INFORMATIONAL"):
                summary.lenient.append(case)
            if behavior not in PASSING or close not in PASSING:
                report = outdir / result.get("reportfile", "")
                detail = ""
                if report.is_file():
                    detail = json.loads(report.read_text()).get("result", "")
                summary.failures[case] = f"{behavior}/{close}: {detail}"


def server_loops() -> list[str]:
    """The loops the server side runs on: uvloop when installed (what ``--loop
    auto`` picks, so what users get), and asyncio's own loop in any case."""
    from tether._loops import resolve

    return list(dict.fromkeys([resolve("auto"), "asyncio"]))


def run_server_suite(
    outdir: Path,
    cases: list[str] | None = None,
    parallelism: int = 2,
    progress: Progress = print_progress,
    loop: str = "asyncio",
) -> Summary:
    """kosoku's fuzzingclient against ``python -m tether serve --echo --loop LOOP``.

    The whole suite runs group by group (:data:`SERVER_GROUPS`), each in its
    own report directory under ``outdir``, with a progress line per group.
    """
    command = [sys.executable, "-m", "tether", "serve", "--echo", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--loop", loop, *SERVER_FLAGS],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    groups = [cases] if cases else [[group] for group in SERVER_GROUPS]
    outdirs = [outdir / f"{n:02d}" for n in range(len(groups))] if not cases else [outdir]
    try:
        port = _read_line(server, r"ws://[^:]+:(\d+)", time.monotonic() + 30).group(1)
        start = time.monotonic()
        done = 0
        for selection, into in zip(groups, outdirs, strict=True):
            subprocess.run(
                [
                    _kosoku(),
                    "-m",
                    "fuzzingclient",
                    f"127.0.0.1:{port}",
                    "-p",
                    str(parallelism),
                    "-o",
                    str(into),
                    *_selection(selection),
                ],
                timeout=max(1.0, start + SUITE_TIMEOUT - time.monotonic()),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            assert server.poll() is None, "the tether server died during the suite"
            if (into / "index.json").is_file():
                index = json.loads((into / "index.json").read_text())
                done += sum(len(results) for results in index.values())
            elapsed = time.monotonic() - start
            group = " ".join(selection)
            progress(f"autobahn server ({loop}): {group} done, {done} cases in {elapsed:.0f} s")
        seconds = time.monotonic() - start
    finally:
        _stop(server)
    return summarize(f"server ({loop})", outdirs, seconds)


def run_client_suite(
    outdir: Path,
    cases: list[str] | None = None,
    parallelism: int = 2,
    progress: Progress = print_progress,
) -> Summary:
    """tests/conformance/autobahn_client.py against kosoku's fuzzingserver,
    with a progress line every :data:`CLIENT_PROGRESS_EVERY` cases."""
    fuzzer = subprocess.Popen(
        [_kosoku(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(outdir), *_selection(cases)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = _read_line(fuzzer, r"ws://[^:]+:(\d+)", time.monotonic() + 30).group(1)
        start = time.monotonic()
        client = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "autobahn_client.py"),
                f"ws://127.0.0.1:{port}",
                str(parallelism),
                str(CLIENT_PROGRESS_EVERY),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        # The client's lines are read as they come; the timer ends a hung run.
        watchdog = threading.Timer(SUITE_TIMEOUT, client.kill)
        watchdog.start()
        try:
            assert client.stdout is not None
            for line in client.stdout:
                progress(f"autobahn client: {line.strip()} in {time.monotonic() - start:.0f} s")
        finally:
            watchdog.cancel()
        if client.wait() != 0:
            raise RuntimeError(f"autobahn_client.py failed ({client.returncode})")
        fuzzer.wait(60)  # it writes the reports, then exits
        seconds = time.monotonic() - start
    finally:
        _stop(fuzzer)
    return summarize("client", [outdir], seconds)


def render(summaries: list[Summary]) -> str:
    from importlib.metadata import version

    lines = [
        "# Autobahn conformance",
        "",
        "The whole Autobahn TestSuite, run by [kosoku](https://pypi.org/project/kosoku/)"
        f" {version('kosoku')} (Autobahn's own case files) against tether {version('tether')},"
        " as a server (kosoku's fuzzingclient against `python -m tether serve --echo`, on"
        " each event loop: `--loop uvloop`, what the default `--loop auto` picks when uvloop"
        " is installed, and `--loop asyncio`) and as a client"
        " (`tests/conformance/autobahn_client.py` against kosoku's fuzzingserver).",
        "",
        "Regenerate this page with `scripts/autobahn` (about ten minutes on 2 cores)."
        f" Last run: {datetime.date.today().isoformat()}, Python {sys.version.split()[0]}.",
        "",
        "| side | cases | " + " | ".join(sorted(PASSING)) + " | other | wall time |",
        "|---|---|" + "---|" * len(PASSING) + "---|---|",
    ]
    for s in summaries:
        counts = [str(s.behaviors.get(name, 0)) for name in sorted(PASSING)]
        other = s.total - sum(s.behaviors.get(name, 0) for name in PASSING)
        lines.append(
            f"| {s.side} | {s.total} | " + " | ".join(counts) + f" | {other} | {s.seconds:.0f} s |"
        )
    lines += ["", "Close behaviour (`behaviorClose`) and the cases not plain OK:", ""]
    for s in summaries:
        closes = ", ".join(f"{k} {v}" for k, v in sorted(s.close_behaviors.items()))
        lines.append(f"- {s.side}: {closes}")
    for s in summaries:
        if s.failures:
            lines += ["", f"Failing cases ({s.side}):", ""]
            lines += [f"- {case}: {why}" for case, why in sorted(s.failures.items())]
    for s in summaries:
        lenient = ", ".join(sorted(s.lenient, key=_case_key)) or "none"
        lines.append(f"- {s.side}, NON-STRICT or INFORMATIONAL: {lenient}")
    lines += [
        "",
        "NON-STRICT and INFORMATIONAL are passing verdicts in Autobahn. Here NON-STRICT"
        " comes from two choices the RFC allows: every complete frame of one socket read"
        " is parsed before the application runs, so when a bad frame follows a good"
        " message in the same read (3.2-3.4, 4.x.3-4.x.5, 5.15) the connection fails"
        " before the echo of that message is sent; and UTF-8 is validated a whole frame"
        " at a time, so a bad byte inside a frame that arrives in pieces (6.4.3, 6.4.4)"
        " fails the connection when the frame is complete rather than at that byte."
        " INFORMATIONAL cases (7.1.6, 7.13.x) have no verdict.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=Path, help="write the summary page here")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="report directory")
    parser.add_argument("-i", "--include", action="append", help="case id or glob")
    args = parser.parse_args()
    summaries = [
        *(
            run_server_suite(args.out / f"servers-{loop}", args.include, loop=loop)
            for loop in server_loops()
        ),
        run_client_suite(args.out / "clients", args.include),
    ]
    page = render(summaries)
    print(page)
    if args.docs:
        args.docs.write_text(page)
    return 1 if any(s.failures for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
