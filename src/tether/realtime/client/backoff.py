"""The delay between a realtime client's reconnection attempts."""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int, delay: float, delay_max: float, factor: float, rand: float
) -> float:
    """The delay before reconnection attempt ``attempt + 1``.

    ``delay * 2 ** attempt``, at most ``delay_max``, then moved by up to
    ``factor`` of itself either way (``rand`` in [0, 1) picks where), still at
    most ``delay_max``: jitter that spreads out clients that lost one server.

    >>> backoff_delay(0, 1.0, 5.0, 0.5, 0.5), backoff_delay(3, 1.0, 5.0, 0.0, 0.9)
    (1.0, 5.0)
    """
    base: float = min(delay * 2.0 ** min(attempt, 64), delay_max)
    return min(base * (1 + factor * (2 * rand - 1)), delay_max)
