"""What a :class:`~tether.realtime.adapters.redis.RedisAdapter` counts and reports.

:class:`RedisStats` holds its counters; :class:`Failure` describes what could
not be published, and :func:`report` turns one into a log line, a count and a
call of the user's ``on_failure`` handler. No I/O of its own.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .messages import Message

__all__ = ["Failure", "RedisStats", "report"]

_log = logging.getLogger("tether.realtime.adapters.redis")


@dataclass(slots=True)
class RedisStats:
    """Counters of a :class:`~tether.realtime.adapters.redis.RedisAdapter`, for monitoring."""

    published: int = 0
    publish_failures: int = 0  # messages that could not be published
    write_failures: int = 0  # session/presence writes that failed (retried later)
    reconnects: int = 0  # Pub/Sub connections re-established after a loss
    received: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    """What could not be published: given to ``on_failure``, logged, counted.

    ``what`` is ``"broadcast"``, ``"ack"``, ``"fetch_sockets"``, ``"rooms"``,
    ``"disconnect"``, ``"data"``, ``"server_event"`` or ``"reply"``; ``local`` tells
    whether the local part was done anyway (local sockets got the event).
    """

    what: str
    namespace: str | None
    message: Message
    error: BaseException
    local: bool


def report(
    failure: Failure,
    stats: RedisStats,
    on_failure: Callable[[Failure], Any] | None,
    run_in_order: Callable[[Any], None],
) -> None:
    """Count and log ``failure``, then tell ``on_failure`` (an awaitable it
    returns is run by ``run_in_order``, after the handlers called before)."""
    stats.publish_failures += 1
    _log.warning(
        "could not publish %s to redis (%s)%s",
        failure.what,
        failure.error,
        "; delivered to local sockets only" if failure.local else "",
    )
    if on_failure is None:
        return
    try:
        result = on_failure(failure)
    except Exception:
        _log.exception("on_failure failed")
        return
    if inspect.isawaitable(result):
        run_in_order(result)
