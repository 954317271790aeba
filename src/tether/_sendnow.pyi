"""Type stub for the optional C extension; see :mod:`tether._direct`."""

from collections.abc import Callable, Iterable
from typing import TypeVar

_T = TypeVar("_T")

def send(fd: int, data: bytes | bytearray | memoryview, /) -> int: ...
def fanout(
    connections: Iterable[_T], frame: bytes, open_state: object, fallback: Callable[[_T], bool], /
) -> tuple[int, _T | None]: ...
