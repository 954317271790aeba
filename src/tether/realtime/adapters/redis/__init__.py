"""Scale-out over Redis: several server processes, on several machines, as one.

::

    from tether import realtime
    from tether.realtime.adapters.redis import Emitter, RedisAdapter

    server = realtime.Server(adapter=RedisAdapter("redis://localhost:6379/0"))

    # from any other process (a worker, a cron job):
    async with Emitter("redis://localhost:6379/0") as emitter:
        await emitter.to("room").emit("news", 1)

Requires the ``redis`` package (``pip install tether[redis]``). The parts:
:mod:`.messages` (what nodes tell each other, no I/O), :mod:`.scripts` (the
Lua steps), :mod:`.subscriber` (Pub/Sub subscriptions and reconnection),
:mod:`.publisher` (publishing, shared with the emitter), :mod:`.adapter`
(:class:`RedisAdapter`: rooms, broadcasts, receiving), :mod:`.requests`
(requests between nodes and their replies), :mod:`.recovery` (restoring a
session from the stream), :mod:`.store` (what a node writes: sessions and
presence, and its heartbeat), :mod:`.stats` (counters and failures),
:mod:`.presence` and :mod:`.emitter`. See docs/scale-out.md.
"""

from __future__ import annotations

from .adapter import RedisAdapter
from .emitter import Emitter
from .presence import Member, Presence, PresenceEvent
from .stats import Failure, RedisStats

__all__ = [
    "Emitter",
    "Failure",
    "Member",
    "Presence",
    "PresenceEvent",
    "RedisAdapter",
    "RedisStats",
]
