"""docs/sync.md: its blocking programs run, and print what their comments say.

tests/test_docs.py runs the page's asyncio programs (the realtime server) and
checks every block's names; the blocking client programs have no
``asyncio.run`` and are marked not run there. Here they run, each in a
process of its own, against the servers the page starts: the command-line
echo server of its ``sh`` block and its realtime server program, each on a
free port in place of the one the page names.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import repo_root, timeout
from realtime.redis_helpers import free_port

PAGE = repo_root() / "docs" / "sync.md"
_BLOCK = re.compile(r"^(<!-- not run: (.+?) -->\n)?```python\n(.*?)^```", re.S | re.M)
_PRINTED = re.compile(r"^\s*print\(.*\)\s*#\s*(.+)$", re.M)
HERE = "tests/sync/test_sync_docs.py"


def _blocks() -> list[tuple[str | None, str]]:
    return [(match.group(2), match.group(3)) for match in _BLOCK.finditer(PAGE.read_text())]


CLIENTS = [source for reason, source in _blocks() if reason and HERE in reason]
SERVERS = [source for reason, source in _blocks() if reason is None]


def test_the_page_has_client_programs_and_one_server() -> None:
    assert len(CLIENTS) == 4
    assert len(SERVERS) == 1 and "realtime.serve(" in SERVERS[0]
    assert ".venv/bin/python -m tether serve --echo --port 8765" in PAGE.read_text()


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    # The page's command, with port 0: the server says which port it took.
    command = [sys.executable, "-m", "tether", "serve", "--echo", "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        assert match, f"the echo server said {line!r}"
        yield int(match.group(1))
    finally:
        process.kill()  # by PID: the process this module started
        process.wait(timeout(10))


@pytest.fixture(scope="module")
def realtime_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    script = tmp_path_factory.mktemp("sync-docs") / "server.py"
    script.write_text(SERVERS[0].replace('"127.0.0.1", 8000', f'"127.0.0.1", {port}'))
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        _until_listening(process, port)
        yield port
    finally:
        process.kill()
        process.wait(timeout(10))


def _until_listening(process: subprocess.Popen[str], port: int) -> None:
    # The program logs nothing when it listens: try its port, and between two
    # tries wait for the process to exit (which fails the test at once).
    for _ in range(int(timeout(20) / 0.05)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout(1)).close()
            return
        except OSError:
            pass
        try:
            process.wait(0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the server exited with {process.returncode}: {process.communicate()[1]}")
    pytest.fail("the server did not listen in time")


@pytest.mark.parametrize("index", range(len(CLIENTS)))
def test_client_program(index: int, echo_port: int, realtime_port: int, tmp_path: Path) -> None:
    source = CLIENTS[index]
    program = source.replace(":8765", f":{echo_port}").replace(":8000", f":{realtime_port}")
    script = tmp_path / "program.py"
    script.write_text(program)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # the program must not depend on the checkout's files
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert result.returncode == 0, result.stderr
    printed = [value.strip() for value in _PRINTED.findall(source)]
    assert printed and len(printed) == source.count("print(")
    assert result.stdout.splitlines() == printed
