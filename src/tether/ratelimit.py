"""Enforcement of the abuse limits of :class:`tether.Limits`.

* :class:`TokenBucket`: ``max_messages_per_second``, per connection.
* :class:`AddressCounter`: ``max_connections_per_ip``, per server.
* :class:`LogLimiter`: repeated log records (a handler failing on every event
  of a flood, ``accept()`` failing at the file-descriptor limit) cost one line
  per interval, not one per occurrence.

All are plain data structures with no I/O: the asyncio layer
(:mod:`tether.connection`, :mod:`tether.server`) calls them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LOG_INTERVAL", "AddressCounter", "LogLimiter", "TokenBucket"]

#: Seconds between two log records of the same kind from a :class:`LogLimiter`.
LOG_INTERVAL = 10.0


class TokenBucket:
    """Allows ``rate`` events per second on average, in bursts of up to
    ``max(rate, 1)`` events (one second's worth).

    >>> bucket = TokenBucket(2, clock=lambda: 0.0)
    >>> bucket.take(2), bucket.take(1)
    (True, False)
    """

    __slots__ = ("_burst", "_clock", "_stamp", "_tokens", "rate")

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._burst = max(float(rate), 1.0)
        self._tokens = self._burst
        self._clock = clock
        self._stamp = clock()

    def take(self, n: int = 1) -> bool:
        """Spend ``n`` tokens; False once the bucket is overdrawn (and from then on
        until it refills)."""
        now = self._clock()
        tokens = self._tokens + (now - self._stamp) * self.rate
        self._stamp = now
        self._tokens = tokens = min(tokens, self._burst) - n
        return tokens >= 0


class AddressCounter:
    """Counts open connections per peer address, for ``max_connections_per_ip``.

    >>> counter = AddressCounter(1)
    >>> counter.add("10.0.0.1"), counter.add("10.0.0.1"), counter.add("10.0.0.2")
    (True, False, True)
    >>> counter.remove("10.0.0.1"); counter.count("10.0.0.1")
    1
    """

    __slots__ = ("_counts", "cap")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self._counts: dict[str, int] = {}

    def add(self, address: str) -> bool:
        """Count one more connection from ``address``; whether it is within the cap.

        A connection over the cap is counted too (it holds a socket until it is
        answered): call :meth:`remove` for every :meth:`add`.
        """
        count = self._counts.get(address, 0) + 1
        self._counts[address] = count
        return self.cap is None or count <= self.cap

    def remove(self, address: str) -> None:
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)  # no entry left behind per address

    def count(self, address: str) -> int:
        return self._counts.get(address, 0)

    def __len__(self) -> int:
        """How many addresses have connections open."""
        return len(self._counts)


class LogLimiter:
    """Logs the first record of each ``key``, then at most one per ``interval``
    seconds, saying how many were suppressed in between::

        limiter = LogLimiter(logger)
        limiter.exception("handler:chat", "handler %r failed", name)

    A flood of failures then costs a line every ``interval`` (with the count),
    not a traceback each. The keys are the caller's: keep them few (an event
    name chosen by a client is not a good key; the handler's name is).
    """

    __slots__ = ("_clock", "_seen", "interval", "logger")

    #: Keys kept at most; past it the oldest is forgotten (a bounded map even
    #: if a caller's keys are not few).
    MAX_KEYS = 1024

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        # key -> [time of the last record logged, occurrences suppressed since]
        self._seen: dict[str, list[float]] = {}

    def _admit(self, key: str) -> int | None:
        """None to suppress this occurrence, else how many were suppressed before it."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= self.MAX_KEYS:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = [now, 0]
            return 0
        if now - entry[0] < self.interval:
            entry[1] += 1
            return None
        suppressed = int(entry[1])
        entry[0], entry[1] = now, 0
        return suppressed

    def log(
        self,
        level: int,
        key: str,
        message: str,
        *args: Any,
        exc_info: bool | BaseException = False,
    ) -> bool:
        """Log ``message % args`` at ``level`` unless ``key`` was logged within the
        interval; whether it was logged. ``exc_info`` as :meth:`logging.Logger.log`
        takes it (an exception: its traceback)."""
        suppressed = self._admit(key)
        if suppressed is None:
            return False
        if suppressed:
            message += " (and %d more like this since the last one, not logged)"
            args = (*args, suppressed)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def exception(self, key: str, message: str, *args: Any) -> bool:
        """:meth:`log` at ERROR with the current exception's traceback."""
        return self.log(logging.ERROR, key, message, *args, exc_info=True)
