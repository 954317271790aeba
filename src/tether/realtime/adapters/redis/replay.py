"""Reading the recovery stream back: stream ids, where a socket started
listening, and which entries a recovering socket gets. No I/O.

An entry that cannot be decoded (written by another program, or garbage) is
skipped and logged: one bad entry must not make every recovery fail.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ....exceptions import PacketError
from ....ratelimit import LogLimiter
from ..base import replayable
from .messages import Broadcast, decode, opts_from_wire

__all__ = ["is_stream_id", "replayed", "room_marks", "stream_id"]

# A full stream id as XADD makes them: what a client's offset must look like.
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

StreamId = tuple[int, int]


def stream_id(offset: str) -> StreamId:
    """``"ms-seq"`` as a comparable pair."""
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq or 0)


def is_stream_id(offset: str) -> bool:
    return _STREAM_ID.fullmatch(offset) is not None


def room_marks(raw: bytes, sid: str, start: str, logs: LogLimiter) -> dict[str, StreamId]:
    """Where a saved socket started listening (``scripts.SAVE_SESSION``): per
    room, and its own room from the start of the replay."""
    marks: dict[str, StreamId] = {sid: stream_id(start)}
    try:
        joined = json.loads(raw)
        for room, mark in joined.items():
            if room != sid:
                marks[room] = stream_id(mark)
    except (ValueError, TypeError, AttributeError):
        logs.log(logging.WARNING, "marks", "malformed room marks of %s: no room replayed", sid)
    return marks


def replayed(
    body: bytes,
    nsp: str,
    sid: str,
    marks: dict[str, StreamId],
    at: StreamId,
    logs: LogLimiter,
) -> list[Any] | None:
    """The event data of a stream entry for a recovering socket, or None: not
    for it, or not decodable (skipped and logged)."""
    try:
        message = decode(body)
        if not isinstance(message, Broadcast) or message.nsp != nsp:
            return None
        opts = opts_from_wire(message.opts)
        return list(message.data) if replayable(opts, sid, marks, at) else None
    except (PacketError, ValueError, TypeError, AttributeError, KeyError) as exc:
        logs.log(logging.WARNING, "entry", "skipping an undecodable stream entry: %s", exc)
        return None
