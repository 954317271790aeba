"""Finding the application's server, and giving it the adapter the workers share."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ..adapters.base import Adapter
from ..server.server import Server

__all__ = ["has_own_adapter", "load", "share_rooms"]


def load(spec: str) -> Server:
    """The :class:`~tether.realtime.Server` named ``module:attribute``
    (``myapp:server``), the module imported from the working directory first
    (as ``python -m`` would)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"APP must look like module:attribute, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    value: Any = importlib.import_module(module_name)
    for name in attribute.split("."):
        value = getattr(value, name)
    if not isinstance(value, Server):
        raise TypeError(f"{spec} is {type(value).__name__}, not a tether.realtime.Server")
    return value


def has_own_adapter(server: Server) -> bool:
    """Whether the application chose an adapter (kept as it is), rather than
    the in-memory default (replaced so that rooms span the workers)."""
    return type(server.adapter) is not Adapter


def share_rooms(server: Server, *, redis: str | None, cluster: str | None) -> None:
    """Give ``server`` the adapter its workers share: Redis at ``redis``, or
    the supervisor's hub at the Unix socket ``cluster``; before it starts."""
    if has_own_adapter(server):
        return
    adapter: Adapter
    if redis is not None:
        from ..adapters.redis import RedisAdapter

        adapter = RedisAdapter(redis)
    elif cluster is not None:
        from ..adapters.cluster import ClusterAdapter

        adapter = ClusterAdapter(cluster)
    else:
        return
    server.adapter = adapter
    adapter.attach(server.local_sockets)
