"""What the parser tests send through ``default=``: a datetime and a dataclass."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

AT = datetime.datetime(2026, 12, 3, 7, 0, tzinfo=datetime.UTC)


@dataclasses.dataclass
class Point:
    x: int
    y: int


def hook(value: Any) -> Any:
    """A ``default=`` hook: datetimes as ISO 8601, dataclasses as dicts."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
