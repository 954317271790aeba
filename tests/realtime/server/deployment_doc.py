"""Helpers for the tests that run docs/deployment.md as written
(test_deployment.py, test_haproxy.py): its fenced blocks, and processes
whose log lines are collected as they come.
"""

from __future__ import annotations

import asyncio
import re

from helpers import repo_root

__all__ = ["BLOCK", "DOC", "LoggedProcess", "doc_block"]

DOC = repo_root() / "docs" / "deployment.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def doc_block(language: str, first_line: str) -> str:
    """The one ``language`` block of docs/deployment.md whose first line is ``first_line``."""
    found = [
        source
        for lang, source in BLOCK.findall(DOC.read_text())
        if lang == language and source.splitlines()[0] == first_line
    ]
    assert len(found) == 1, f"{language} block starting {first_line!r}: {len(found)} found"
    return found[0]


class LoggedProcess:
    """A process whose stderr lines are kept (``lines``, ``log``); with
    ``ready``, ``listening`` resolves to the port of the first line it
    matches (its group 1), or fails with the log if the process ends first."""

    def __init__(
        self, process: asyncio.subprocess.Process, ready: re.Pattern[str] | None = None
    ) -> None:
        self.process = process
        self.ready = ready
        self.lines: list[str] = []
        self.listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = self.ready.search(line) if self.ready is not None else None
            if match and not self.listening.done():
                self.listening.set_result(int(match.group(1)))
        if self.ready is not None and not self.listening.done():
            self.listening.set_exception(AssertionError(f"the process exited:\n{self.log}"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)
