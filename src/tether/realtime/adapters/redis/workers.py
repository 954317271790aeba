"""How the Redis adapter's worker tasks are ended at close()."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How often, and how long apart, a worker task is cancelled before it is left.
CANCEL_ROUNDS, CANCEL_GRACE = 5, 1.0


async def cancel_until_done(
    tasks: Iterable[asyncio.Task[Any]], rounds: int = CANCEL_ROUNDS, grace: float = CANCEL_GRACE
) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again the ones that go on.

    A cancellation that lands inside a redis command may come out of
    redis-py as a connection error, which a worker's loop takes for a broker
    failure and goes on (a close() stuck at a contract-suite teardown); the
    next one lands where the worker waits. Bounded: at most ``rounds`` times
    ``grace`` seconds, never a hang. Their errors are retrieved (each was
    logged where it happened).
    """
    workers = set(tasks)
    pending = workers
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace)
    await asyncio.gather(*(task for task in workers if task.done()), return_exceptions=True)
