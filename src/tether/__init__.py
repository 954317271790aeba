"""tether: real-time WebSockets for Python.

A sans-I/O RFC 6455 + RFC 7692 core (:mod:`tether.protocol`) and one asyncio
layer on top: :func:`serve`, :func:`connect`, :func:`broadcast`. Blocking
clients are in :mod:`tether.sync`, imported on first use.
"""

from typing import Any

from .broadcast import broadcast
from .client import connect
from .connection import Connection, Message
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    HandshakeRejected,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    TetherError,
)
from .handlers import MessageHandler
from .limits import DEFAULT_LIMITS, Limits
from .protocol.deflate import DeflateOptions
from .protocol.http import Headers, Request, Response
from .server import Server, serve
from .version import __version__

__all__ = [
    "DEFAULT_LIMITS",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DeflateOptions",
    "HandshakeError",
    "HandshakeRejected",
    "Headers",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "Limits",
    "Message",
    "MessageHandler",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Response",
    "Server",
    "TetherError",
    "__version__",
    "broadcast",
    "connect",
    "serve",
]


def __getattr__(name: str) -> Any:
    # ``tether.sync`` (the blocking clients) is imported on first use, so that
    # ``import tether`` does not pay for the thread machinery it needs.
    if name == "sync":
        import importlib

        return importlib.import_module(".sync", __name__)
    raise AttributeError(f"module 'tether' has no attribute {name!r}")
