"""Shared test helpers. Tests import them as ``from helpers import timeout``.

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml's pytest
configuration; it is deliberately not a package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["TIMEOUT_UNIT", "node_bin", "repo_root", "skip_conformance", "timeout"]

#: The one knob for every timeout in the suite: raise ``TETHER_TEST_TIMEOUT``
#: (e.g. to 5) on a slow or loaded machine instead of editing individual tests.
TIMEOUT_UNIT = float(os.environ.get("TETHER_TEST_TIMEOUT", "1.0"))


def timeout(n: float = 1.0) -> float:
    """Return ``n`` timeout units in seconds."""
    return n * TIMEOUT_UNIT


def repo_root() -> Path:
    """The repository root (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parent.parent


def node_bin() -> str | None:
    """Path to the ``node`` executable (``TETHER_NODE`` overrides), or None if absent."""
    return os.environ.get("TETHER_NODE") or shutil.which("node")


def skip_conformance() -> bool:
    """True when ``TETHER_SKIP_CONFORMANCE=1`` asks to skip the Autobahn suite."""
    return os.environ.get("TETHER_SKIP_CONFORMANCE") == "1"
