"""The README's chat, run the way a new user runs it: ``python chat.py``.

The Python block goes into ``chat.py`` as written (port 0 instead of 8000,
read back from the ``serving on`` line it logs), the HTML block into
``public/index.html``, and the checkout's ``node_modules`` stands in for
``npm install socket.io-client``. Then the page and the browser client are
fetched, a client joins a room, and SIGINT (Ctrl-C) or SIGTERM must stop it
with exit code 0 and no traceback. ``tests/browser/test_readme_page.py``
opens the same page in Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import repo_root, timeout
from tether.realtime.client import Client

SERVING = re.compile(rb"INFO:tether\.realtime:serving on (http://127\.0\.0\.1:(\d+))\n")


def readme_chat(into: Path, port: int = 0) -> Path:
    """Write the README's chat program (serving on ``port``) and page under
    ``into``; the program's path."""
    readme = (repo_root() / "README.md").read_text()
    section = readme.split("\n## A chat server", 1)[1].split("\n## ", 1)[0]
    (program,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (page,) = re.findall(r"```html\n(.*?)```", section, re.S)
    assert "npm install socket.io-client" in section
    served = 'realtime.serve(server, "127.0.0.1", 8000)'
    assert served in program
    chat = into / "chat.py"
    chat.write_text(program.replace(served, served.replace("8000", str(port))))
    (into / "public").mkdir()
    (into / "public" / "index.html").write_text(page)
    modules = repo_root() / "node_modules"
    if not (modules / "socket.io-client").is_dir():
        pytest.skip("node_modules/socket.io-client is not installed (npm ci)")
    (into / "node_modules").symlink_to(modules)
    return chat


@contextlib.asynccontextmanager
async def running_chat(directory: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python chat.py`` in ``directory``; yields the process and the URL it logged."""
    chat = readme_chat(directory)
    process = await asyncio.create_subprocess_exec(
        sys.executable, chat.name, cwd=directory, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), timeout(10))
        serving = SERVING.fullmatch(line)
        assert serving is not None, line
        yield process, serving.group(1).decode()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout(5)) as response:
        body: bytes = response.read()
        return body


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_readme_chat_runs_as_a_program_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    async with running_chat(tmp_path) as (process, url):
        page = await asyncio.to_thread(get, url + "/")
        assert b'<script src="/vendor/socket.io.min.js"></script>' in page
        bundle = await asyncio.to_thread(get, url + "/vendor/socket.io.min.js")
        assert bundle.startswith(b"/*!\n * Socket.IO v4.")
        client = Client(reconnection=False)
        await asyncio.wait_for(client.connect(url), timeout(5))
        said: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        client.on("said", lambda who, text, *_offset: said.put_nowait((who, text)))
        assert await client.emit_with_ack("join", "lobby", timeout=timeout(5)) == "lobby"
        await client.emit("say", "hello")
        assert await asyncio.wait_for(said.get(), timeout(5)) == (client.sid(), "hello")
        gone = asyncio.ensure_future(client.wait())
        process.send_signal(stop)
        # The server says goodbye before it exits: the client is disconnected.
        await asyncio.wait_for(gone, timeout(5))
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), timeout(10))
        assert await asyncio.wait_for(process.wait(), timeout(5)) == 0
    assert b"Traceback" not in rest, rest.decode()
    assert f"{stop.name}: shutting down".encode() in rest
