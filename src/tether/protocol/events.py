"""What the sans-I/O connection reports.

Data messages are reported as plain ``str`` (text) or ``bytes`` (binary) with
no wrapper object, so the hot path allocates nothing beyond the message itself;
control frames are reported as the frozen dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Close", "Event", "Ping", "Pong"]


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame was received (the pong is queued automatically, RFC 6455 §5.5.2)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong frame was received."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame; ``code`` is 1005 when the frame carried no status (RFC 6455 §7.1.5)."""

    code: int
    reason: str = ""


Event = Union[str, bytes, Ping, Pong, Close]  # noqa: UP007 (a runtime alias on 3.10)
