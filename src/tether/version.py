"""The package version, in one place, and which receive loop is in use."""

from __future__ import annotations

import logging

__all__ = ["__version__", "speedups_status"]

__version__ = "0.1.0"


def speedups_status() -> str:
    """Whether the optional C speedups are in use, in words.

    ``python -m tether --version`` prints it, and importing tether logs it once
    at DEBUG on the ``tether`` logger: a wheel built without a compiler only
    warns about the missing speedups during ``pip install -v``.
    """
    from .protocol.speedups import HAVE_SPEEDUPS

    if HAVE_SPEEDUPS:
        return "C speedups active"
    try:
        import tether.protocol._speedups  # noqa: F401
    except ImportError as exc:
        return f"C speedups not available ({exc}), pure Python"
    return "C speedups off (TETHER_NO_SPEEDUPS is set), pure Python"


logging.getLogger("tether").debug("tether %s: %s", __version__, speedups_status())
