"""examples/migrating/: the python-socketio chat and its tether port behave the same.

Each app runs as its own process, ``uvicorn <app>:app`` on a socket this test
binds to 127.0.0.1 port 0 and hands over (``--fd``), so clients queue until
uvicorn is ready instead of racing its startup. chat_driver.mjs then drives it
with five official socket.io-client sockets (npm ``socket.io-client`` 4.8,
from node_modules) through one scripted conversation, and prints what each
client received; with the client's default transports (long-polling upgraded
to WebSocket), WebSocket only, and long-polling only. Both servers must give
exactly :data:`EXPECTED`: the same acknowledgements, room isolation, nick
from the session, presence on disconnect, and a refused connection.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from realtime.node_clients import run_script
from tether import realtime

pytestmark = pytest.mark.interop

pytest.importorskip("socketio")  # python-socketio, for psio_chat.py
pytest.importorskip("uvicorn")

EXAMPLES = repo_root() / "examples" / "migrating"
DRIVER = Path(__file__).with_name("chat_driver.mjs")
APPS = ("psio_chat", "tether_chat")


def _ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def _no(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _presence(nick: str, joined: bool) -> list[Any]:
    return ["event", "presence", {"room": "lobby", "nick": nick, "joined": joined}]


#: What each client of chat_driver.mjs must have received, in order.
EXPECTED: dict[str, list[list[Any]]] = {
    "mallory": [["connect_error", "bad token", "no data"]],
    "ada": [
        ["connect"],
        ["ack", "join", _no("log in first")],
        ["ack", "login", _ok(nick="ada")],
        ["ack", "login", _no("already logged in")],
        ["ack", "join", _ok(room="lobby")],
        _presence("bob", True),
        ["ack", "say", _ok()],
        _presence("bob", False),
        ["ack", "say", _ok()],  # "alone now": bob has left, nobody hears it
        _presence("bob", True),
        _presence("cy", True),
        ["ack", "whoami", {"nick": "ada"}],
        ["disconnect", "io client disconnect"],
    ],
    "bob": [
        ["connect"],
        ["ack", "login", _ok(nick="bob")],
        ["ack", "join", _ok(room="lobby")],
        ["event", "message", {"room": "lobby", "nick": "ada", "text": "hello lobby"}],
        ["ack", "dm", _ok()],
        ["ack", "dm", _no("no such user")],
        ["ack", "leave", _ok(room="lobby")],
        ["ack", "leave", _no("not in lobby")],
        ["ack", "join", _ok(room="lobby")],
        _presence("cy", True),
        _presence("ada", False),
        ["ack", "dm", _ok()],
        ["ack", "whoami", {"nick": "bob"}],
    ],
    "cy": [
        ["connect"],
        ["ack", "login", _no("nick taken")],
        ["ack", "login", _no("bad nick")],
        ["ack", "login", _ok(nick="cy")],
        ["ack", "whoami", {"nick": "cy"}],
        ["ack", "join", _ok(room="games")],
        ["ack", "say", _no("not in lobby")],
        ["ack", "say", _ok()],
        ["event", "dm", {"from": "bob", "text": "hi cy"}],
        ["ack", "join", _ok(room="lobby")],
        _presence("ada", False),
        ["ack", "whoami", {"nick": "cy"}],
    ],
    "dan": [
        ["connect"],
        ["ack", "login", _ok(nick="ada")],
        ["event", "dm", {"from": "bob", "text": "is that you?"}],
        ["ack", "whoami", {"nick": "ada"}],
    ],
}


async def _run_driver(url: str, transports: str) -> dict[str, Any]:
    limit_ms = int(timeout(10) * 1000)  # per acknowledgement; the whole run gets 3x
    _, result = await run_script(DRIVER, url, str(limit_ms), transports, wait=40)
    return result  # on failure (exit status 1) it says why: result["error"]


async def _conversation(app: str, transports: str) -> tuple[dict[str, Any], str]:
    """Serve ``app`` under uvicorn, run the driver against it; its result and
    uvicorn's stderr."""
    listener = socket.socket()
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        uvicorn = [sys.executable, "-m", "uvicorn", f"{app}:app", "--app-dir", str(EXAMPLES)]
        server = subprocess.Popen(
            [*uvicorn, "--fd", str(fd), "--log-level", "warning"],
            pass_fds=[fd],
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        result = await _run_driver(f"http://127.0.0.1:{port}", transports)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            _, stderr = server.communicate(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate(timeout=timeout(10))
    return result, stderr


@pytest.mark.parametrize("transports", ["polling,websocket", "websocket", "polling"])
@pytest.mark.parametrize("app", APPS)
async def test_the_official_client_gets_the_same_transcript(app: str, transports: str) -> None:
    if node_bin() is None:
        pytest.skip("node is not installed")
    result, stderr = await _conversation(app, transports)
    assert "error" not in result, f"{result['error']}\n{stderr}"
    # Per client, so that a failure names the client whose log differs.
    for name, expected in EXPECTED.items():
        assert result["logs"][name] == expected, name
    assert result["logs"].keys() == EXPECTED.keys()
    # A handler that failed is logged, not sent to a client: look for it too.
    assert "Traceback" not in stderr, stderr


def code_hunks() -> list[str]:
    """The hunks of the unified diff from psio_chat.py to tether_chat.py, the
    module docstrings left out."""

    def code(name: str) -> list[str]:
        text = (EXAMPLES / f"{name}.py").read_text()
        _, _, body = text.partition('"""\n')  # after the module docstring's end
        return body.lstrip("\n").splitlines()

    diff = difflib.unified_diff(code("psio_chat"), code("tether_chat"), lineterm="", n=1)
    return _hunks("\n".join(list(diff)[2:]))  # without the ---/+++ header


def _hunks(diff: str) -> list[str]:
    return re.split(r"\n(?=@@ )", diff.strip("\n")) if diff.strip() else []


def _renamed_only(hunk: str) -> bool:
    """Whether a hunk only turns ``sid`` into ``socket.sid`` (the handlers'
    first parameter): applying that to its old lines gives its new lines."""
    lines = hunk.splitlines()[1:]
    old = [line[1:] for line in lines if not line.startswith("+")]
    new = [line[1:] for line in lines if not line.startswith("-")]
    renamed = [re.sub(r"\bsid\b", "socket.sid", line) for line in old]
    # The parameter itself is the socket: "def join(socket.sid," -> "def join(socket,".
    renamed = [re.sub(r"(def \w+\()socket\.sid", r"\1socket", line) for line in renamed]
    return renamed == new


def test_migrating_md_shows_every_change_of_the_port() -> None:
    text = (repo_root() / "docs" / "migrating.md").read_text()
    shown = re.findall(r"^```text\n(@@.*?)^```", text, re.S | re.M)
    assert shown, "docs/migrating.md shows no diff"
    hunks = code_hunks()
    doc_hunks = [hunk for block in shown for hunk in _hunks(block)]
    # What the page shows is the diff as it is...
    stale = [hunk for hunk in doc_hunks if hunk not in hunks]
    assert not stale, f"not in the diff of the two apps: {stale}"
    # ...and every change beyond sid -> socket.sid is shown.
    missing = [hunk for hunk in hunks if not _renamed_only(hunk) and hunk not in doc_hunks]
    assert not missing, f"docs/migrating.md leaves out: {missing}"
    assert any(_renamed_only(hunk) for hunk in hunks)  # the check above can tell them apart


async def test_the_change_beyond_names_and_the_disconnect_handler() -> None:
    """What tether_chat.py changes beyond names, because tether differs there:
    a connect handler that refuses disconnects a client that has connected
    (and its disconnect handler runs); a middleware refuses before. And what
    it need not change: the disconnect handler finds ``rooms(sid)`` and
    ``get_session(sid)`` as python-socketio's does."""
    server = realtime.Server()
    seen: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    @server.use
    def middleware(socket: realtime.Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") == "refused by the middleware":
            raise realtime.ConnectionRefused("bad token")

    @server.event
    async def connect(socket: realtime.Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") != "letmein":
            raise realtime.ConnectionRefused("bad token")
        await server.save_session(socket.sid, {"nick": "ada"})
        await server.enter_room(socket.sid, "lobby")

    @server.event
    async def disconnect(socket: realtime.Socket, reason: str) -> None:
        try:
            await server.get_session(socket.sid)
            session = "found"
        except KeyError:
            session = "KeyError"
        rooms = sorted(socket.rooms - {socket.sid})
        by_sid = [room for room in server.rooms(socket.sid) if room != socket.sid]
        seen.put_nowait((by_sid, session, rooms, socket.data))

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        url = f"http://127.0.0.1:{http.port}"
        reasons: asyncio.Queue[str] = asyncio.Queue()
        client = realtime.Client(reconnection=False)
        client.on("disconnect", reasons.put_nowait)
        with pytest.raises(realtime.ConnectionRefused):
            await asyncio.wait_for(
                client.connect(url, auth={"token": "refused by the middleware"}), timeout(5)
            )
        await asyncio.wait_for(client.connect(url, auth={"token": "guess"}), timeout(5))
        assert await asyncio.wait_for(reasons.get(), timeout(5)) == "io server disconnect"
        assert await asyncio.wait_for(seen.get(), timeout(5)) == ([], "found", [], {})
        await asyncio.wait_for(client.connect(url, auth={"token": "letmein"}), timeout(5))
        await client.disconnect()
        expected = (["lobby"], "found", ["lobby"], {"nick": "ada"})
        assert await asyncio.wait_for(seen.get(), timeout(5)) == expected
        assert seen.empty()  # nothing for the client the middleware refused
