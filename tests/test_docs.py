"""The documentation: the API reference builds, and the code blocks run.

* docs/api (Sphinx with autodoc) builds with warnings as errors, and every
  name in ``__all__`` of tether, tether.realtime and tether.realtime.adapters.redis is
  in it.
* Every fenced ``python`` block of README.md and docs/*.md runs as a program,
  unless the line just before its fence says why not
  (``<!-- not run: fragment, ... -->``); a program is an asyncio program,
  with ``asyncio.run(...)``. A program that serves forever
  (``serve_forever()`` or ``asyncio.run(...serve(...))``) is started on a
  free port in place of the one it names, answers one client, and stops on
  SIGTERM; any other program must exit 0, printing what its ``print(...)  #
  value`` comments say. Blocks marked ``fragment`` must still compile (as in
  a coroutine), and in every block the ``tether``/``realtime`` names used must
  exist, so a renamed API cannot leave the docs behind.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import re
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tether
from helpers import repo_root, timeout
from realtime.redis_helpers import free_port, redis_server
from tether import realtime

PUBLIC_MODULES = (
    "tether",
    "tether.realtime",
    "tether.realtime.adapters.redis",
    "tether.realtime.adapters.cluster",
    "tether.realtime.workers",
    "tether.realtime.admin",
    "tether.metrics",
    "tether.metrics.realtime",
    "tether.sync",
    "tether.sync.realtime",
)

_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")
_PORT = re.compile(r'"127\.0\.0\.1", \d+')
_REDIS_URL = re.compile(r"redis://127\.0\.0\.1:6379/0")
_SERVES_FOREVER = re.compile(r"serve_forever\(\)|^asyncio\.run\((?:\w+\.)?serve\(", re.M)
_PRINTED = re.compile(r"^\s*print\(.*\)\s*#\s*(.+)$", re.M)
_INVENTORY_LINE = re.compile(r"(.+?)\s+(\S+)\s+(-?\d+)\s+?(\S*)\s+(.*)")


@dataclass(frozen=True)
class Block:
    """One fenced python block of the docs."""

    path: str  # relative to the repository root
    line: int  # of the opening fence
    source: str
    not_run: str | None  # the reason given in the marker, if any

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _blocks() -> list[Block]:
    root = repo_root()
    found = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _NOT_RUN.fullmatch(before.strip())
            found.append(
                Block(
                    path=str(path.relative_to(root)),
                    line=text.count("\n", 0, match.start()) + 1,
                    source=match.group(1),
                    not_run=marker.group(1) if marker else None,
                )
            )
    return found


BLOCKS = _blocks()
PROGRAMS = [block for block in BLOCKS if block.not_run is None]


# The API reference.


def test_api_reference_builds_and_covers_every_public_name(tmp_path: Path) -> None:
    out = tmp_path / "html"
    sources = repo_root() / "docs" / "api"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", sources, out],
        capture_output=True,
        text=True,
        timeout=timeout(120),
    )
    assert result.returncode == 0, result.stderr
    documented = _inventory_names(out / "objects.inv")
    missing = [
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
        if f"{module}.{name}" not in documented
    ]
    assert not missing, f"not in the API reference: {missing}"


def _inventory_names(path: Path) -> set[str]:
    # Sphinx's objects.inv, version 2: four "# " header lines, then zlib-compressed
    # lines "name domain:role priority uri display-name" (parsed here because
    # sphinx.util.inventory's API changed across Sphinx versions).
    header, _, body = path.read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header
    lines = zlib.decompress(body).decode().splitlines()
    return {match.group(1) for match in map(_INVENTORY_LINE.match, lines) if match}


def test_realtime_exports_the_api_not_the_codecs() -> None:
    # The codecs are used through their modules (engineio.encode_packet...).
    assert not {"encode", "decode", "Handshake", "Decoder"} & set(realtime.__all__)
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert all(hasattr(module, public) for public in module.__all__), name


# The code blocks.


def test_the_docs_have_programs_and_every_other_block_says_why() -> None:
    assert len(PROGRAMS) >= 4
    for block in BLOCKS:
        assert block.not_run is None or len(block.not_run) > 10, f"{block}: give the reason"
    # A block that only defines things would "run" without doing anything.
    fragments = [str(block) for block in PROGRAMS if "asyncio.run(" not in block.source]
    assert not fragments, f"not programs: mark them <!-- not run: why --> {fragments}"


def test_every_fence_says_its_language() -> None:
    # A block fenced ```py or left unlabelled would escape the checks below.
    for path in [repo_root() / "README.md", *sorted((repo_root() / "docs").glob("*.md"))]:
        fences = [line[3:] for line in path.read_text().splitlines() if line.startswith("```")]
        labels = fences[0::2]  # opening fences; the closing ones are bare
        assert all(fence == "" for fence in fences[1::2]), path
        known = ("python", "sh", "html", "js", "text")  # text: drawings, never run
        unclear = [label for label in labels if label not in known]
        assert not unclear, f"{path}: fences {unclear}: label them python, sh, html, js or text"


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_names_used_exist(block: Block) -> None:
    for module, pattern in (
        (tether, r"(?<![\w.])tether\.([A-Za-z_]\w*)"),
        (realtime, r"(?<![\w.])realtime\.([A-Za-z_]\w*)"),
    ):
        for name in re.findall(pattern, block.source):
            assert hasattr(module, name), f"{block}: {module.__name__}.{name} does not exist"
    for module_name, names in re.findall(r"^from (tether[\w.]*) import (.+)$", block.source, re.M):
        module = importlib.import_module(module_name)
        for name in names.split(","):
            name = name.strip()
            assert hasattr(module, name), f"{block}: {module_name}.{name} does not exist"


@pytest.mark.parametrize(
    "block", [block for block in BLOCKS if (block.not_run or "").startswith("fragment")], ids=str
)
def test_fragments_compile(block: Block) -> None:
    # As the body of a coroutine: fragments may await.
    compile(block.source, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _program_params() -> list[object]:
    return [
        pytest.param(block, id=str(block), marks=[pytest.mark.redis])
        if _REDIS_URL.search(block.source)
        else pytest.param(block, id=str(block))
        for block in PROGRAMS
    ]


@pytest.mark.parametrize("block", _program_params())
async def test_program_runs(block: Block, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        source = block.source
        if _REDIS_URL.search(source):
            redis = stack.enter_context(redis_server())
            source = _REDIS_URL.sub(redis.url, source)
        # In an empty directory: the programs must not depend on files of the checkout.
        script = tmp_path / "program.py"
        if _SERVES_FOREVER.search(source):
            port = free_port()
            script.write_text(_PORT.sub(f'"127.0.0.1", {port}', source))
            await _serve_and_stop(block, script, port)
        else:
            script.write_text(_PORT.sub('"127.0.0.1", 0', source))
            _run_to_the_end(block, script)


def _run_to_the_end(block: Block, script: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert result.returncode == 0, f"{block}:\n{result.stderr}"
    printed = _PRINTED.findall(block.source)
    if printed and len(printed) == block.source.count("print("):
        assert result.stdout.splitlines() == [value.strip() for value in printed]


async def _serve_and_stop(block: Block, script: Path, port: int) -> None:
    # The port goes on the command line too, for programs that read it there.
    with _started([sys.executable, str(script), str(port)], script.parent) as process:
        await _until_listening(process, port)
        if "realtime.serve(" in block.source:
            await _talk_socketio(block, port)
        else:
            await _talk_websocket(block, port)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=timeout(10))
    assert "Traceback" not in stderr, f"{block}:\n{stderr}"
    # The realtime server shuts down cleanly on SIGTERM; asyncio.run(main()) is just killed.
    assert process.returncode in (0, -signal.SIGTERM), f"{block}:\n{stderr}"


@contextlib.contextmanager
def _started(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=timeout(10))


async def _until_listening(process: subprocess.Popen[str], port: int) -> None:
    async def connectable() -> None:
        while True:
            if process.poll() is not None:
                _, stderr = process.communicate()
                raise AssertionError(f"exited with {process.returncode} before serving:\n{stderr}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                # A process we started has no event to await: poll its port.
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return

    await asyncio.wait_for(connectable(), timeout(20))


async def _talk_websocket(block: Block, port: int) -> None:
    async with tether.connect(f"ws://127.0.0.1:{port}", open_timeout=timeout(5)) as client:
        assert client.open
        if "async def echo" in block.source:
            await client.send("hello")
            assert await asyncio.wait_for(client.recv(), timeout(5)) == "hello"


async def _talk_socketio(block: Block, port: int) -> None:
    client = realtime.Client(reconnection=False)
    await asyncio.wait_for(client.connect(f"http://127.0.0.1:{port}"), timeout(5))
    try:
        assert client.connected
        if '@server.on("echo")' in block.source:
            reply = await client.emit_with_ack("echo", 1, "two", timeout=timeout(5))
            assert reply == (1, "two")
    finally:
        await client.disconnect()
