"""tether.metrics.lag: the event loop's lag, sampled into a histogram."""

from __future__ import annotations

import asyncio
import time

from helpers import timeout
from realtime.sio_helpers import eventually
from tether.metrics import Histogram, LoopLag


async def test_a_blocked_loop_shows_and_stop_ends_the_sampling() -> None:
    histogram = Histogram("lag_seconds", "Lag")
    lag = LoopLag(histogram, interval=0.01)
    lag.start()
    lag.start()  # once only
    await eventually(lambda: histogram.count >= 2)
    time.sleep(0.1)  # a handler that blocks the loop for 100 ms
    await eventually(lambda: histogram.sum >= 0.09)
    assert histogram.counts[-1] == 0  # nothing over 10 s
    lag.stop()
    count = histogram.count
    later = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(timeout(0.1), later.set_result, None)
    await later  # ten intervals and more: no sample taken after stop()
    assert histogram.count == count
