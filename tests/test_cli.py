"""The command line, run as subprocesses: ``python -m tether serve|connect``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator

import pytest

import tether
from conftest import StartServer, ws_uri
from helpers import repo_root, timeout

LISTENING = re.compile(rb"echo server listening on (ws://\S+) \((\w+)\)")
#: What ``--loop auto`` (the default) picks here.
AUTO_LOOP = b"uvloop" if importlib.util.find_spec("uvloop") else b"asyncio"


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=repo_root(),
    )


def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


@contextlib.asynccontextmanager
async def cli_server(
    *flags: str, loop: bytes = AUTO_LOOP
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``python -m tether serve --echo --port 0 FLAGS``, which must say it runs
    on ``loop``; yields its URI and process."""
    process = await spawn("serve", "--echo", "--port", "0", *flags)
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), timeout(10))
        match = LISTENING.search(line)
        assert match is not None, line
        assert match.group(2) == loop, line
        yield match.group(1).decode(), process
    finally:
        kill(process)
        await asyncio.wait_for(process.wait(), timeout(5))


async def finish(process: asyncio.subprocess.Process, stdin: bytes = b"") -> tuple[bytes, bytes]:
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout(10))
    finally:
        kill(process)
    return out, err


async def test_serve_echoes_text_and_binary() -> None:
    async with cli_server() as (uri, _):
        assert uri.startswith("ws://127.0.0.1:")
        async with tether.connect(uri) as client:
            await client.send("hi")
            assert await asyncio.wait_for(client.recv(), timeout()) == "hi"
            await client.send(b"\x01\x02")
            assert await asyncio.wait_for(client.recv(), timeout()) == b"\x01\x02"


async def test_serve_on_asyncio_s_own_loop() -> None:
    flags = ("--loop", "asyncio")
    async with cli_server(*flags, loop=b"asyncio") as (uri, _), tether.connect(uri) as client:
        await client.send("hi")
        assert await asyncio.wait_for(client.recv(), timeout()) == "hi"


async def test_serve_limit_flags_reach_the_server() -> None:
    flags = ("--max-message-size", "100", "--compression", "none")
    async with cli_server(*flags) as (uri, _), tether.connect(uri) as client:
        assert client.response is not None
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        await client.send("a" * 100)
        assert await asyncio.wait_for(client.recv(), timeout()) == "a" * 100
        await client.send("a" * 101)
        with pytest.raises(tether.ConnectionClosedError) as info:
            await asyncio.wait_for(client.recv(), timeout())
        assert info.value.code == 1009


async def test_serve_shuts_down_gracefully_on_sigterm() -> None:
    async with cli_server() as (uri, process):
        client = await tether.connect(uri)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(tether.ConnectionClosedOK) as info:
            await asyncio.wait_for(client.recv(), timeout(5))
        assert info.value.code == 1001
        assert await asyncio.wait_for(process.wait(), timeout(5)) == 0
        assert process.stderr is not None
        assert b"shutting down" in await process.stderr.read()


async def test_connect_prints_echoes_and_exits_0_on_eof(echo_server: tether.Server) -> None:
    process = await spawn("connect", ws_uri(echo_server))
    assert process.stdin is not None and process.stdout is not None
    try:
        for line in ("hello", "wörld"):
            process.stdin.write(line.encode() + b"\n")
            echoed = await asyncio.wait_for(process.stdout.readline(), timeout(10))
            assert echoed.decode().rstrip("\n") == line
        out, err = await finish(process)  # closes stdin: EOF
    finally:
        kill(process)
    assert process.returncode == 0, err
    assert out == b""
    assert b"connection closed: 1000" in err


async def test_connect_exits_when_the_server_closes(start_server: StartServer) -> None:
    async def handler(connection: tether.Connection) -> None:
        await connection.send("bye")
        await connection.close(1001, "restarting")

    server = await start_server(handler)
    process = await spawn("connect", ws_uri(server))
    assert process.stdout is not None
    try:
        # stdin stays open: the client must notice the close by itself.
        assert await asyncio.wait_for(process.stdout.readline(), timeout(10)) == b"bye\n"
        assert await asyncio.wait_for(process.wait(), timeout(5)) == 0
        assert process.stderr is not None
        assert b"connection closed: 1001 restarting" in await process.stderr.read()
    finally:
        kill(process)


async def test_connect_reports_a_refused_handshake_without_a_traceback(
    start_server: StartServer,
) -> None:
    server = await start_server(origins=["https://only.example"])
    process = await spawn("connect", ws_uri(server))
    _, err = await finish(process)
    assert process.returncode == 1
    assert b"403" in err
    assert b"Traceback" not in err


async def test_connect_to_nothing_fails_cleanly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await spawn("connect", f"ws://127.0.0.1:{port}/")
    _, err = await finish(process)
    assert process.returncode == 1
    assert err.startswith(b"error: ")


async def test_version_says_whether_the_speedups_are_active() -> None:
    _, out = await run_quickly("--version")
    speedups = tether.protocol.speedups.HAVE_SPEEDUPS
    state = "active" if speedups else "off (TETHER_NO_SPEEDUPS is set), pure Python"
    assert out.decode() == f"tether {tether.__version__}: C speedups {state}\n"


async def test_version_names_the_import_error_when_the_speedups_are_missing() -> None:
    # None in sys.modules makes the import fail, as for a wheel built without a compiler.
    code = (
        "import sys; sys.modules['tether.protocol._speedups'] = None\n"
        "from tether.cli import main; main(['--version'])"
    )
    _, out = await run_quickly("-c", code, module=False)
    assert out.startswith(
        f"tether {tether.__version__}: C speedups partly not available (".encode()
    )
    assert b"tether.protocol._speedups" in out


async def test_version_says_pure_python_when_no_c_module_imports() -> None:
    code = (
        "import sys\n"
        "from tether.version import SPEEDUP_MODULES\n"
        "for name in SPEEDUP_MODULES: sys.modules[name] = None\n"
        "from tether.cli import main; main(['--version'])"
    )
    _, out = await run_quickly("-c", code, module=False)
    assert out.startswith(f"tether {tether.__version__}: C speedups not available (".encode())
    assert out.endswith(b"), pure Python\n")


async def test_importing_tether_logs_the_speedups_state_once_at_debug() -> None:
    code = "import logging; logging.basicConfig(level=logging.DEBUG); import tether, tether.cli"
    err, _ = await run_quickly("-c", code, module=False)
    lines = [line for line in err.decode().splitlines() if "speedups" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"DEBUG:tether:tether {tether.__version__}: C speedups ")


async def run_quickly(*args: str, module: bool = True) -> tuple[bytes, bytes]:
    """Run ``python [-m tether] ARGS`` to completion; its stderr and stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *(("-m", "tether") if module else ()),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=repo_root(),
    )
    out, err = await finish(process)
    assert process.returncode == 0, err
    return err, out
