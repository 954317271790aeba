"""Enforcement of the abuse limits of :class:`tether.Limits`.

* :class:`TokenBucket`: ``max_messages_per_second``, per connection.
* :class:`AddressCounter`: ``max_connections_per_ip``, per server.

Both are plain data structures with no I/O: the asyncio layer
(:mod:`tether.connection`, :mod:`tether.server`) calls them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["AddressCounter", "TokenBucket"]


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
