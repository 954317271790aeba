"""The supervisor of ``tether run --workers N``: one listening socket, N
worker processes kept alive, a graceful stop.

It binds the socket (so ``--port 0`` is resolved once, for every worker),
starts each worker with the socket's descriptor (:mod:`.worker`), restarts a
worker that exits (same index, so the sids of the new one name it again) with
a backoff, gives up after :data:`MAX_FAILURES` quick failures in a row, and
on SIGTERM or SIGINT stops accepting, asks every worker to stop (SIGTERM) and
kills those still running after ``grace`` seconds. Without Redis, and unless
the application chose an adapter of its own, it runs the hub of the workers'
cluster adapter, so that rooms, broadcasts and acks span the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import _loops
from ...metrics.endpoint import MetricsEndpoint
from .app import has_own_adapter, load
from .handoff import MAX_WORKERS

__all__ = ["MAX_FAILURES", "Supervisor", "WorkerOptions", "run"]

_log = logging.getLogger("tether.workers")

#: Quick failures in a row (each within STABLE seconds of its start) after
#: which a worker is not restarted again and the supervisor stops (exit 1);
#: the default of ``max_failures``.
MAX_FAILURES = 8
#: A worker that ran this long before it exited starts its failure count anew.
STABLE = 10.0
#: The first restart's delay after a quick failure, doubled each time, at most
#: BACKOFF_CAP; the default of ``backoff``.
BACKOFF = 0.1
BACKOFF_CAP = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """What ``tether run`` was asked for (see :func:`run`)."""

    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis: str | None = None
    grace: float = 10.0
    backlog: int = 1024
    log_level: str = "INFO"
    backoff: float = BACKOFF
    max_failures: int = MAX_FAILURES
    loop: str = "asyncio"
    metrics: str | None = None


def run(
    app: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    redis: str | None = None,
    grace: float = 10.0,
    backlog: int = 1024,
    backoff: float = BACKOFF,
    max_failures: int = MAX_FAILURES,
    loop: str = "auto",
    metrics: str | None = None,
) -> int:
    """Serve the :class:`~tether.realtime.Server` named ``app``
    (``"myapp:server"``) on ``workers`` processes sharing one port, until
    SIGTERM or SIGINT; the exit status (0 after a clean stop)::

        from tether.realtime import workers

        workers.run("myapp:server", host="0.0.0.0", port=8000, workers=4)

    ``redis``: the URL of the Redis server that carries rooms, broadcasts and
    acks between the workers; without it the supervisor runs a hub for the
    cluster adapter. An adapter set by the application itself is kept.
    ``grace``: seconds the workers have to stop before they are killed.
    A worker that dies within :data:`STABLE` seconds of its start is
    restarted after ``backoff`` seconds, doubled at each such failure (at
    most :data:`BACKOFF_CAP`); after ``max_failures`` of them in a row the
    supervisor stops every worker and returns 1. ``loop``: the event loop of
    the supervisor and of every worker, ``"auto"`` (uvloop when it is
    installed), ``"uvloop"`` or ``"asyncio"``. ``metrics``: a path (``"/metrics"``)
    on which any worker serves every worker's metrics, each series labelled
    with its worker (docs/metrics.md); a scrape must then carry the bearer
    token in the environment variable ``TETHER_METRICS_TOKEN``, if it is set.
    Every request of a session reaches the worker that owns it
    (docs/workers.md), so default (polling first) clients work.
    """
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    options = WorkerOptions(
        app=app,
        host=host,
        port=port,
        workers=workers,
        redis=redis,
        grace=grace,
        backlog=backlog,
        log_level=level,
        backoff=backoff,
        max_failures=max_failures,
        loop=_loops.resolve(loop),
        metrics=metrics,
    )
    if metrics is not None:
        MetricsEndpoint(metrics)  # a wrong path or a missing extra fails here, once
    return _loops.run(Supervisor(options).run(), options.loop)


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def _exit_status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """One run of ``tether run``: see the module's docstring."""

    def __init__(self, options: WorkerOptions) -> None:
        if not 1 <= options.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        self.options = options
        #: The running worker processes by index.
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.port = 0
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._gave_up = False
        self._listening: socket.socket | None = None
        self._runtime: Path | None = None
        self._cluster: str | None = None
        # The workers read EOF on this pipe once the supervisor is gone,
        # even if it was killed, and stop.
        self._alive: tuple[int, int] | None = None

    async def run(self) -> int:
        """Serve until signalled; the exit status."""
        options = self.options
        server = load(options.app)  # fails here, once, rather than in each worker
        self._stop = asyncio.Event()
        self._listening = listening = _listen(options.host, options.port, options.backlog)
        self.port = listening.getsockname()[1]
        self._runtime = Path(tempfile.mkdtemp(prefix="tether-run-"))
        self._alive = os.pipe()
        hub: Any = None
        try:
            if options.redis is None and not has_own_adapter(server) and options.workers > 1:
                hub = await self._start_hub()
            self._install_signals()
            host = f"[{options.host}]" if ":" in options.host else options.host
            _log.info(
                "listening on http://%s:%d with %d worker(s) on %s (supervisor pid %d)",
                host,
                self.port,
                options.workers,
                options.loop,
                os.getpid(),
            )
            keepers = [asyncio.create_task(self._keep(i)) for i in range(options.workers)]
            await self._stop.wait()
            await self._shutdown(keepers)
        finally:
            if hub is not None:
                await hub.close()
            listening.close()
            for fd in self._alive:
                os.close(fd)
            shutil.rmtree(self._runtime, ignore_errors=True)
        _log.info("stopped")
        return 1 if self._gave_up else 0

    async def _start_hub(self) -> Any:
        try:
            from ..adapters.cluster import ClusterHub
        except ImportError as exc:
            raise RuntimeError(
                "several workers need --redis URL (the cluster adapter is not available)"
            ) from exc
        assert self._runtime is not None
        self._cluster = str(self._runtime / "cluster.sock")
        hub = ClusterHub(self._cluster)
        await hub.start()
        return hub

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self._on_signal, number)

    def _on_signal(self, number: signal.Signals) -> None:
        _log.info("%s: stopping the workers", number.name)
        self.stop()

    def stop(self) -> None:
        """Stop every worker and return from :meth:`run`."""
        if self._stop is not None:
            self._stop.set()

    def _command(self, index: int) -> list[str]:
        options = self.options
        assert self._listening is not None and self._runtime is not None
        assert self._alive is not None
        command = [sys.executable, "-m", "tether.realtime.workers.worker", options.app]
        command += ["--fd", str(self._listening.fileno()), "--index", str(index)]
        command += ["--count", str(options.workers), "--runtime", str(self._runtime)]
        command += ["--parent-fd", str(self._alive[0]), "--log-level", options.log_level]
        command += ["--loop", options.loop]
        if options.metrics is not None:
            command += ["--metrics", options.metrics]
        if options.redis is not None:
            command += ["--redis", options.redis]
        if self._cluster is not None:
            command += ["--cluster", self._cluster]
        return command

    async def _keep(self, index: int) -> None:
        """Keep worker ``index`` running until the supervisor stops."""
        assert self._listening is not None and self._stop is not None
        assert self._alive is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                *self._command(index), pass_fds=(self._listening.fileno(), self._alive[0])
            )
            self.processes[index] = process
            _log.info("worker %d started (pid %d)", index, process.pid)
            if self._stopping:  # stopped while it was starting
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            self.processes.pop(index, None)
            if self._stopping:
                _log.info("worker %d (pid %d) stopped: %s", index, process.pid, _exit_status(code))
                return
            failures = failures + 1 if loop.time() - started < STABLE else 1
            status = _exit_status(code)
            if failures >= self.options.max_failures:
                message = "worker %d (pid %d) died: %s; %d quick failures in a row: giving up"
                _log.error(message, index, process.pid, status, failures)
                self._gave_up = True
                self.stop()
                return
            delay = min(self.options.backoff * 2 ** (failures - 1), BACKOFF_CAP)
            message = "worker %d (pid %d) died: %s; restarting in %.2f s"
            _log.warning(message, index, process.pid, status, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _shutdown(self, keepers: list[asyncio.Task[None]]) -> None:
        """SIGTERM to every worker; SIGKILL to those left after ``grace``."""
        self._stopping = True
        if self._listening is not None:
            self._listening.close()  # ours only: the workers close theirs as they stop
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(keepers, timeout=self.options.grace)
        if pending:
            for index, process in list(self.processes.items()):
                _log.warning("worker %d (pid %d) still running: killed", index, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.wait(pending)
