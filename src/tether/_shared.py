"""What the connections of one event loop share: a read buffer, keepalive
timers and the end-of-iteration flush.

All three are per-connection costs turned into per-loop ones. Reading every
socket into one scratch buffer replaces a new bytes object per read (up to
256 KiB for big messages: fresh memory to page-fault, or allocator churn)
with memory that stays hot in the cache. Keepalive deadlines kept in shared
buckets replace a ``TimerHandle`` per connection (~500 bytes with its event
loop timer: a tenth of an idle connection). Writes queued during one loop
iteration go out at its end through one callback for every connection, not
one ``call_soon`` handle per connection per iteration (request/response over
many connections paid ~1 µs a message for those).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Protocol

__all__ = ["MIN_READ", "SCRATCH_SIZE", "LoopShared", "for_loop"]

#: What one read may bring at most. Big messages arrive many per read
#: (32 of 64 KiB in flight: a 256 KiB read held 3.5 of them, and each read
#: costs a system call and a pass through the parser for the frame it cuts).
SCRATCH_SIZE = 1024 * 1024
#: What one read may bring at least. A connection's read is also capped at the
#: bytes its queue still has room for (max_queue_bytes minus what waits), so
#: what a read leaves held back unparsed, added to the queue, stays under
#: max_queue_bytes + MIN_READ (docs/security.md) whatever SCRATCH_SIZE is.
MIN_READ = 256 * 1024

# A keepalive deadline is rounded up to a multiple of this fraction of its
# delay, so connections whose deadlines fall in one slot share a bucket and
# one timer: a ping or a pong timeout fires at most 1/16 of its delay late.
_SLOTS_PER_DELAY = 16


class Scheduled(Protocol):
    """A connection as the keepalive buckets see it."""

    keepalive_at: float | None  # the deadline it is scheduled at, None when not

    def keepalive_due(self) -> None: ...


class Flushable(Protocol):
    """A connection as the end-of-iteration flush sees it."""

    def flush(self) -> None: ...


class LoopShared:
    """The scratch buffer and keepalive buckets of one event loop."""

    __slots__ = ("__weakref__", "_buckets", "_flushes", "_loop", "scratch")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: _SHARED's entry for the loop goes with the loop only if its
        # value does not hold the loop (each loop's 1 MiB scratch buffer
        # stayed for good before, one per asyncio.run).
        self._loop = weakref.ref(loop)
        #: Every connection of the loop reads into it: the loop reads a socket
        #: and hands the bytes to its protocol in one go (get_buffer, then
        #: buffer_updated), and the core copies out whatever it keeps.
        self.scratch = memoryview(bytearray(SCRATCH_SIZE))
        self._buckets: dict[float, set[Scheduled]] = {}
        self._flushes: list[Flushable] = []

    def _running(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        # Only the loop itself, or a connection (which holds its loop), calls.
        assert loop is not None, "the loop is gone"
        return loop

    def flush_soon(self, item: Flushable) -> None:
        """Call ``item.flush()`` once the loop is done with what is ready now."""
        flushes = self._flushes
        flushes.append(item)
        if len(flushes) == 1:
            self._running().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        flushes = self._flushes
        self._flushes = []
        for item in flushes:
            try:
                item.flush()
            except Exception as exc:  # one connection's failure must not skip the others
                self._running().call_exception_handler(
                    {"message": "flush failed", "exception": exc, "protocol": item}
                )

    def schedule(self, item: Scheduled, delay: float) -> float:
        """Call ``item.keepalive_due()`` in about ``delay`` seconds; return the deadline."""
        loop = self._running()
        due = loop.time() + delay
        slot = delay / _SLOTS_PER_DELAY
        if slot > 0:
            due = math.ceil(due / slot) * slot
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = set()
            loop.call_at(due, self._fire, due)
        bucket.add(item)
        return due

    def cancel(self, item: Scheduled, due: float) -> None:
        bucket = self._buckets.get(due)
        if bucket is not None:
            bucket.discard(item)

    def _fire(self, due: float) -> None:
        for item in self._buckets.pop(due, ()):
            if item.keepalive_at != due:
                continue
            item.keepalive_at = None
            try:
                item.keepalive_due()
            except Exception as exc:  # one connection's failure must not skip the others
                self._running().call_exception_handler(
                    {"message": "keepalive failed", "exception": exc, "protocol": item}
                )


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopShared] = (
    weakref.WeakKeyDictionary()
)


# The LoopShared asked for last: every connection asks at its creation,
# nearly always for the same loop, and a WeakKeyDictionary lookup makes a
# weak reference each time.
_last: LoopShared | None = None


def for_loop(loop: asyncio.AbstractEventLoop) -> LoopShared:
    """The :class:`LoopShared` of ``loop``, created on first use."""
    global _last
    last = _last
    if last is not None and last._loop() is loop:
        return last
    shared = _SHARED.get(loop)
    if shared is None:
        shared = _SHARED[loop] = LoopShared(loop)
    _last = shared
    return shared
