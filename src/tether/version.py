"""The package version, in one place, and which receive loop is in use."""

from __future__ import annotations

import importlib
import logging
import os

__all__ = ["SPEEDUP_MODULES", "__version__", "speedups_status"]

__version__ = "0.1.0"


#: The optional C modules: the core's receive loop, the direct socket writes,
#: and the asyncio layer's per-message step.
SPEEDUP_MODULES = ("tether.protocol._speedups", "tether._sendnow", "tether._hotpath")


def speedups_status() -> str:
    """Whether the optional C speedups are in use, in words.

    ``python -m tether --version`` prints it, and importing tether logs it once
    at DEBUG on the ``tether`` logger: a wheel built without a compiler only
    warns about the missing speedups during ``pip install -v``.
    """
    missing = []
    for name in SPEEDUP_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(str(exc))
    if missing:
        if len(missing) < len(SPEEDUP_MODULES):
            return f"C speedups partly not available ({'; '.join(missing)})"
        return f"C speedups not available ({'; '.join(missing)}), pure Python"
    if os.environ.get("TETHER_NO_SPEEDUPS", "") not in ("", "0"):
        return "C speedups off (TETHER_NO_SPEEDUPS is set), pure Python"
    return "C speedups active"


logging.getLogger("tether").debug("tether %s: %s", __version__, speedups_status())
