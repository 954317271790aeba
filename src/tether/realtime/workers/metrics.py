"""``/metrics`` under ``tether run --workers N``: every worker's figures, from any worker.

A scrape of the shared port lands on one worker, so each worker publishes
its figures (its WebSocket server's and its realtime server's) to the
supervisor's runtime folder every :data:`PUBLISH_INTERVAL` seconds, as
``metrics-<index>.json`` written whole and renamed into place. The worker
that answers a scrape serves its own figures as they are and the others' as
last published (at most that old), every series labelled ``worker="<index>"``:
add them up in the query (``sum without (worker) (rate(...))``). A worker
that has not published for :data:`STALE` seconds (stopped, or dead) is left
out; its replacement, under the same index, starts its counters from zero,
which Prometheus takes as a counter reset.

The folder is the supervisor's (``mkdtemp``: the user's own); the files are a
few kilobytes, read and written on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ...metrics.core import Family, MetricSet, dump_families, load_families
from ...metrics.endpoint import MetricsEndpoint

__all__ = ["PUBLISH_INTERVAL", "STALE", "TOKEN_ENV", "WorkersEndpoint"]

#: Seconds between two publications of a worker's figures.
PUBLISH_INTERVAL = 1.0
#: A worker's figures older than this many seconds are not served.
STALE = 5.0
#: The environment variable the scrape's bearer token comes from (not a
#: command-line option: other users of the machine can read those).
TOKEN_ENV = "TETHER_METRICS_TOKEN"


def _path(directory: Path, index: int) -> Path:
    return directory / f"metrics-{index}.json"


class WorkersEndpoint(MetricsEndpoint):
    """A worker's metrics endpoint: its figures and the other workers' (see the module)."""

    def __init__(self, path: str, *, token: str | None, directory: Path, index: int) -> None:
        super().__init__(path, token=token)
        self.directory = directory
        self.index = index
        self._sources: Callable[[], list[MetricSet]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, sources: Callable[[], list[MetricSet]]) -> None:
        """Publish the figures of ``sources()`` now and every :data:`PUBLISH_INTERVAL` s."""
        self._sources = sources
        self.publish()
        self._task = asyncio.get_running_loop().create_task(self._publish_forever())

    def close(self) -> None:
        """Stop publishing; withdraw this worker's file."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        with contextlib.suppress(OSError):
            _path(self.directory, self.index).unlink()

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            try:
                self.publish()
            except OSError:  # the folder is gone: the supervisor is stopping
                return

    def publish(self) -> None:
        """Write this worker's figures for the others to serve."""
        if self._sources is None:
            return
        families = [family for source in self._sources() for family in source.families()]
        data = {"index": self.index, "time": time.time(), "families": dump_families(families)}
        path = _path(self.directory, self.index)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(data))
        os.replace(partial, path)  # readers see the old file or the new one, never half

    def render(self, sets: list[MetricSet]) -> bytes:
        from ...metrics.prometheus import render_by

        groups = {self.index: [family for s in sets for family in s.families()]}
        groups.update(self._others())
        return render_by("worker", {str(index): groups[index] for index in sorted(groups)})

    def _others(self) -> dict[int, list[Family]]:
        """The figures the other live workers published last."""
        now = time.time()
        found: dict[int, list[Family]] = {}
        for path in self.directory.glob("metrics-*.json"):
            try:
                data = json.loads(path.read_text())
                index, published = int(data["index"]), float(data["time"])
                if index != self.index and now - published <= STALE:
                    found[index] = load_families(data["families"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # replaced or withdrawn meanwhile, or not ours
        return found
