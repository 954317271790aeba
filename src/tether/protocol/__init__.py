"""The sans-I/O WebSocket protocol core (RFC 6455, RFC 7692).

Bytes in, events out; events in, bytes out. This package never imports
asyncio nor touches a socket: the I/O layer (:mod:`tether.server`,
:mod:`tether.client`) drives it.
"""

from .connection import Connection, Side, State, encode_broadcast_frame
from .deflate import DeflateOptions, DeflateParams, PerMessageDeflate
from .events import Close, Event, Ping, Pong
from .frames import Opcode, apply_mask, encode_frame, is_valid_close_code
from .handshake import ClientHandshake, HandshakeResult, ServerHandshake, accept_key
from .http import Headers, Request, Response, parse_request, parse_response

__all__ = [
    "ClientHandshake",
    "Close",
    "Connection",
    "DeflateOptions",
    "DeflateParams",
    "Event",
    "HandshakeResult",
    "Headers",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "ServerHandshake",
    "Side",
    "State",
    "accept_key",
    "apply_mask",
    "encode_broadcast_frame",
    "encode_frame",
    "is_valid_close_code",
    "parse_request",
    "parse_response",
]
