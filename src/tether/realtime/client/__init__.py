"""The Socket.IO client: :class:`Client` over Engine.IO (:mod:`.engineio`),
WebSocket or long-polling (:mod:`.polling`) upgraded to WebSocket."""

from __future__ import annotations

from .client import Client

__all__ = ["Client"]
