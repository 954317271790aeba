"""A real HTTP proxy for the proxy tests: tinyproxy (the Debian package), started
on 127.0.0.1 with a configuration written to the test's directory.

::

    with Tinyproxy.start(tmp_path, connect_ports=[server_port]) as proxy:
        ... connect through proxy.url ...
        proxy.wait_for("Established connection")   # a line of its log

tinyproxy has no "port 0", so the port is one the kernel just gave us and let
go (retried when someone took it in between). Its log goes to its stdout,
which a thread copies to ``proxy.log_path`` and keeps for :meth:`wait_for`;
it is stopped by PID when the block ends.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from helpers import timeout

__all__ = ["Tinyproxy"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Tinyproxy:
    """A running tinyproxy; ``url`` (with credentials when ``auth`` was given)."""

    def __init__(self, process: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self.lines.append("<exited>")
            self._changed.notify_all()

    def wait_for(self, pattern: str, units: float = 3) -> str:
        """The first log line matching ``pattern`` (a regex), waiting for it."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: (
                    next((line for line in self.lines if regex.search(line)), None)
                    or ("<exited>" in self.lines and "<exited>")
                ),
                timeout(units),
            )
        if not found or found == "<exited>":
            raise AssertionError(f"no tinyproxy log line matches {pattern!r}: {self.lines[-5:]}")
        return str(found)

    def logged(self, pattern: str) -> list[str]:
        with self._changed:
            return [line for line in self.lines if re.search(pattern, line)]

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        directory: Path,
        *,
        connect_ports: Iterable[int] = (),
        auth: tuple[str, str] | None = None,
    ) -> Iterator[Tinyproxy]:
        executable = shutil.which("tinyproxy") or (
            "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
        )
        if executable is None:
            pytest.skip("tinyproxy is not installed (scripts/test installs it)")
        for _ in range(3):
            port = _free_port()
            config = directory / f"tinyproxy-{port}.conf"
            lines = [
                f"Port {port}",
                "Listen 127.0.0.1",
                f"Timeout {int(timeout(30))}",
                "LogLevel Info",
                f'PidFile "{directory / f"tinyproxy-{port}.pid"}"',
                "MaxClients 32",
                "Allow 127.0.0.1",
                *(f"ConnectPort {p}" for p in connect_ports),
            ]
            if not connect_ports:
                lines.append("ConnectPort 1")  # no line would allow every port
            if auth is not None:
                lines.append(f"BasicAuth {auth[0]} {auth[1]}")
            config.write_text("\n".join(lines) + "\n")
            process = subprocess.Popen(
                [executable, "-d", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            proxy = cls(process, port, directory / f"tinyproxy-{port}.log")
            try:
                try:
                    proxy.wait_for("Accepting connections", units=10)
                except AssertionError:
                    if "<exited>" in proxy.lines:
                        # Its output ended: it exits (the port was taken in
                        # between); reap it and try another port.
                        process.wait(timeout(5))
                        continue
                    raise
                yield proxy
                return
            finally:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout(5))
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout(5))
                proxy._reader.join(timeout(5))
        raise AssertionError("tinyproxy did not start in 3 attempts")
