"""The Redis adapter under its documented name; see :mod:`tether.realtime.redis`."""

from __future__ import annotations

from ..redis import Emitter, RedisAdapter

__all__ = ["Emitter", "RedisAdapter"]
