"""Event-loop lag: how late the loop runs a timer, sampled into a histogram.

A loop that runs a timer 200 ms late made every connection wait 200 ms: a
handler that blocked, a CPU-bound callback, or simply too much work for one
core. One timer every ``interval`` seconds measures it, at the cost of one
callback per interval.
"""

from __future__ import annotations

import asyncio

from .core import Histogram

__all__ = ["LoopLag"]


class LoopLag:
    """Observe, every ``interval`` seconds, how late the loop ran the timer."""

    def __init__(self, histogram: Histogram, interval: float = 0.5) -> None:
        self.histogram = histogram
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start sampling on the running loop (again: no effect)."""
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        self.histogram.observe(max(0.0, self._loop.time() - due))
        self._schedule()
