"""The demos in a real browser: Debian's Chromium driven by playwright-core (npm).

Each test runs ``python -m tether demo`` on a free port of 127.0.0.1 and one
Node script of this directory against it. The chat script asks for a server
restart by printing ``@kill`` then ``@start``; :func:`drive` does it and
answers ``ok`` on the script's stdin. Screenshots land in
``tests/browser/output/`` (git-ignored); the best are copied to
``docs/images/`` by hand.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
CHROMIUM = os.environ.get("TETHER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing() -> str | None:
    if node_bin() is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (apt-get install chromium)"
    if not (repo_root() / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (npm ci)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """``python -m tether demo`` in a subprocess, restartable on the same port.

    ``python`` and ``cwd`` pick another tether (the wheel installed by
    ``tests/packaging_helpers.py``); ``command`` replaces the demo altogether
    (the README's chat); ``env`` adds variables.
    """

    def __init__(
        self,
        port: int,
        log: Path,
        *,
        python: Path | str = sys.executable,
        cwd: Path | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.log = log
        self.command = command or [str(python), "-m", "tether", "demo", "--port", str(port)]
        self.cwd = cwd or repo_root()
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout(15)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo server exited: {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start listening")
            time.sleep(0.05)  # polling the port: there is nothing to wait on

    def kill(self) -> None:
        """End the process at once, like a crash: no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout(10))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout(10))
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def demo_server(name: str, port: int | None = None, **options: Any) -> Iterator[DemoServer]:
    """A started :class:`DemoServer` (on a free port unless given), logging to
    ``output/NAME.server.log``."""
    missing = _missing()
    if missing is not None:
        pytest.skip(missing)
    OUTPUT.mkdir(exist_ok=True)
    log = OUTPUT / f"{name}.server.log"
    log.unlink(missing_ok=True)
    server = DemoServer(free_port() if port is None else port, log, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def demo(request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    with demo_server(request.node.name) as server:
        yield server


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


def drive(script: str, server: DemoServer, budget: float = 60) -> None:
    """Run a Node test script against ``server``; fail with its output if it fails."""
    node = node_bin()
    assert node is not None
    env = {
        **os.environ,
        "DEMO_URL": server.url,
        "OUTPUT_DIR": str(OUTPUT),
        "TETHER_TEST_TIMEOUT": str(timeout(1)),
        "CHROMIUM": CHROMIUM,
    }
    process = subprocess.Popen(
        [node, str(HERE / script)],
        cwd=repo_root(),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    out: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, out), daemon=True).start()
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True).start()
    printed: list[str] = []
    deadline = time.monotonic() + timeout(budget)
    try:
        while True:
            try:
                line = out.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                problem = f"took more than {timeout(budget)} s"
                break
            if line is None:
                code = process.wait(timeout(5))
                problem = None if code == 0 else f"failed ({code})"
                break
            printed.append(line)
            command = line.strip()
            if command in ("@kill", "@start"):
                server.kill() if command == "@kill" else server.start()
                process.stdin.write("ok\n")
                process.stdin.flush()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if problem is not None:
        pytest.fail(
            f"{script} {problem}:\n{''.join(errors)}{''.join(printed)}\n"
            f"--- server log ---\n{server.log.read_text(errors='replace')[-4000:]}"
        )


def test_chat_rooms_presence_restart_and_limits(demo: DemoServer) -> None:
    drive("chat.mjs", demo)
    assert (OUTPUT / "chat.png").is_file()


def test_ticker_streams_and_follows_subscriptions(demo: DemoServer) -> None:
    drive("ticker.mjs", demo)
    assert (OUTPUT / "ticker.png").is_file()


def test_game_players_move_and_late_joiner_gets_state(demo: DemoServer) -> None:
    drive("game.mjs", demo)
    assert (OUTPUT / "game.png").is_file()


def test_the_index_panel_shows_each_demos_connections_and_rate(demo: DemoServer) -> None:
    drive("stats.mjs", demo)
    assert (OUTPUT / "index-stats.png").is_file()


def test_every_page_loads_with_a_clean_console_and_a_favicon(demo: DemoServer) -> None:
    drive("pages.mjs", demo)


def test_chat_says_what_is_missing_without_its_browser_client(tmp_path: Path) -> None:
    # An empty directory where the bundle should be: as in a tether built without npm.
    nowhere = {"TETHER_SOCKETIO_CLIENT_DIST": str(tmp_path)}
    with demo_server("missing-client", env=nowhere) as server:
        drive("missing_client.mjs", server)
    assert "the chat's browser client (/vendor/socket.io.esm.min.js) is missing" in (
        server.log.read_text()
    )
