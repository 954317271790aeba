"""The event loop a command runs on: ``--loop auto|asyncio|uvloop``.

``auto`` (the default of ``tether serve``, ``tether demo`` and ``tether run``
and of each of ``run``'s workers) picks uvloop when it is installed (the
optional extra ``tether[uvloop]``) and asyncio's own loop otherwise, as an
ASGI server's ``--loop auto`` does: the same code runs on both (the test
suite runs on both), and uvloop's transports are the ones tether's fast
paths write to directly (docs/performance.md). The library itself never picks a loop:
:func:`tether.serve` runs on whatever loop its caller runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "current", "resolve", "run"]

#: The choices of ``--loop``.
LOOPS = ("auto", "asyncio", "uvloop")

_T = TypeVar("_T")


def resolve(name: str) -> str:
    """``"uvloop"`` or ``"asyncio"``: the loop ``name`` means on this machine.

    ``auto`` is uvloop if it can be imported; ``uvloop`` asked for and missing
    is a :exc:`RuntimeError` that says how to install it.
    """
    if name not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {name!r}")
    if name == "asyncio":
        return name
    if importlib.util.find_spec("uvloop") is None:
        if name == "uvloop":
            raise RuntimeError("uvloop is not installed (pip install 'tether[uvloop]')")
        return "asyncio"
    return "uvloop"


def current() -> str:
    """``"uvloop"`` or ``"asyncio"``: the running loop's, for the commands' logs."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, _T], loop: str) -> _T:
    """``asyncio.run(main)`` on the loop ``loop`` resolves to."""
    try:
        chosen = resolve(loop)
    except (ValueError, RuntimeError):
        main.close()  # never to run: no "never awaited" warning
        raise
    if chosen == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
