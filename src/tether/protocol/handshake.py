"""The opening handshake (RFC 6455 §4), both sides, sans-I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..exceptions import HandshakeError, HandshakeRejected, InvalidStatus, ProtocolError
from ..version import __version__
from .deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    DeflateParams,
    client_offer,
    match_response,
    negotiate_offer,
)
from .extensions import parse_extensions, serialize_extension
from .http import Headers, Request, Response, comma_tokens
from .speedups import accept_plain as _accept_plain

__all__ = [
    "SERVER_NAME",
    "ClientHandshake",
    "HandshakeResult",
    "ServerHandshake",
    "accept_key",
    "error_response",
]

# §1.3: the GUID concatenated with the key to prove the server read the handshake.
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SERVER_NAME = f"tether/{__version__}"
_DEFAULT_DEFLATE = DeflateOptions()
_UPGRADE_LINE = ("Upgrade", "websocket")
_CONNECTION_LINE = ("Connection", "Upgrade")
_ONLY_WEBSOCKET = ["websocket"]
_ONLY_UPGRADE = ["Upgrade"]

SubprotocolSelector = Callable[[Request, Sequence[str]], "str | None"]


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (§4.2.2)."""
    digest = hashlib.sha1((key + _GUID).encode()).digest()
    return binascii.b2a_base64(digest, newline=False).decode()


def error_response(
    status: int, reason: str, message: str, headers: Headers | None = None
) -> Response:
    """A plain-text HTTP error answer, closing the connection."""
    body = (message + "\n").encode()
    response = Response(status, reason, headers or Headers(), body)
    response.headers.set("Server", SERVER_NAME)
    response.headers.set("Content-Type", "text/plain; charset=utf-8")
    response.headers.set("Content-Length", str(len(body)))
    response.headers.set("Connection", "close")
    return response


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a handshake agreed on."""

    subprotocol: str | None
    deflate: DeflateParams | None
    #: Client side: which of our offers the answer accepted (its level, min_size...).
    deflate_offer: DeflateOptions | None = None


# What most handshakes agree on (frozen: one shared by them all).
_PLAIN = HandshakeResult(None, None)


def _reject(
    status: int, reason: str, message: str, headers: Headers | None = None
) -> HandshakeRejected:
    return HandshakeRejected(message, error_response(status, reason, message, headers))


class ServerHandshake:
    """Validates handshake requests and builds the 101 answer (§4.2).

    ``origins``: when given, the ``Origin`` header must be one of them (None
    in the list admits requests with no Origin, i.e. non-browser clients);
    this is the defence against cross-site WebSocket hijacking (§10.2).
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SubprotocolSelector | None = None,
        origins: Sequence[str | None] | None = None,
        compression: DeflateOptions | None = _DEFAULT_DEFLATE,
        server_header: str | None = SERVER_NAME,
    ) -> None:
        self.subprotocols = list(subprotocols)
        self.select_subprotocol = select_subprotocol
        self.origins = None if origins is None else list(origins)
        self.compression = compression
        self.server_header = server_header
        self._server_line = ("Server", server_header) if server_header else None
        if self._server_line is not None:
            Headers().add(*self._server_line)  # ValueError now for a CR or LF in it
        # A plain handshake's 101 as Response.encode writes it, cut around its
        # accept value: the C step (accept_encoded) writes the value between.
        head = self._switching("\0").encode()
        self._head_prefix, _, self._head_suffix = head.partition(b"\0")

    def accept_encoded(self, request: Request) -> tuple[Response, HandshakeResult, bytes]:
        """:meth:`accept`, and the response as sent (its :meth:`Response.encode`).

        The common case, a request that negotiates nothing and passes every
        check, is checked and answered in C (``_handshake.c``) when built;
        everything else goes through :meth:`accept`, which raises the same
        :class:`HandshakeRejected` either way.
        """
        # Read at each call, not kept from __init__: both are public, and a
        # list set later must not be skipped. With either, accept() checks
        # what the C step does not.
        if (
            _accept_plain is not None
            and self.origins is None
            and self.select_subprotocol is None
            and request.method == "GET"
        ):
            done = _accept_plain(request.headers.flat(), self._head_prefix, self._head_suffix)
            if done is not None:
                value, head = done
                return self._switching(value), _PLAIN, head
        response, result = self.accept(request)
        return response, result, response.encode()

    def _switching(self, value: str) -> Response:
        """The 101 of a plain handshake, whose Sec-WebSocket-Accept is ``value``."""
        # The lines every 101 has are shared strings (every connection keeps
        # its response, so only the accept key is its own), put in flat, past
        # Headers.add's checks: names and values of ours, the Server line
        # checked in __init__.
        items = [*_UPGRADE_LINE, *_CONNECTION_LINE, "Sec-WebSocket-Accept", value]
        if self._server_line is not None:
            items += self._server_line
        return Response(101, "Switching Protocols", Headers.from_flat(items))

    def accept(self, request: Request) -> tuple[Response, HandshakeResult]:
        """Check ``request``; return the 101 response, or raise :class:`HandshakeRejected`."""
        # One pass over the headers, then a dict lookup per check.
        headers = request.headers.by_name()
        if request.method != "GET":
            raise _reject(405, "Method Not Allowed", "WebSocket handshakes use GET")
        # Each token check first compares the one value nearly every client
        # sends, and splits the header's tokens only for any other.
        upgrade = headers.get("upgrade")
        if upgrade != _ONLY_WEBSOCKET and "websocket" not in comma_tokens(upgrade or ()):
            raise _reject(
                426,
                "Upgrade Required",
                "this endpoint speaks WebSocket only",
                Headers([("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]),
            )
        connection = headers.get("connection")
        if connection != _ONLY_UPGRADE and "upgrade" not in comma_tokens(connection or ()):
            raise _reject(400, "Bad Request", "missing 'Connection: Upgrade'")
        if len(headers.get("host", ())) != 1:
            raise _reject(400, "Bad Request", "missing or repeated Host header")
        if headers.get("sec-websocket-version") != ["13"]:
            # §4.4: answer an unsupported version with the versions we support.
            raise _reject(
                426,
                "Upgrade Required",
                "unsupported WebSocket version (13 is required)",
                Headers([("Sec-WebSocket-Version", "13")]),
            )
        keys = headers.get("sec-websocket-key", ())
        if len(keys) != 1 or not _valid_key(keys[0]):
            raise _reject(400, "Bad Request", "missing or invalid Sec-WebSocket-Key")
        if self.origins is not None:
            # Several Origin headers could smuggle an allowed one past a
            # check that reads only the first: accept exactly zero or one.
            found = headers.get("origin", ())
            origin = found[0] if len(found) == 1 else None
            if len(found) > 1 or origin not in self.origins:
                raise _reject(403, "Forbidden", "origin not allowed")
        offered = headers.get("sec-websocket-protocol")
        subprotocol = None
        if offered is not None or self.select_subprotocol is not None:
            subprotocol = self._subprotocol(request, offered or ())
        deflate = extension = None
        if (extensions := headers.get("sec-websocket-extensions")) is not None:
            deflate, extension = self._extensions(extensions)
        response = self._switching(accept_key(keys[0]))
        if subprotocol is None and deflate is None:
            return response, _PLAIN
        if subprotocol is not None:
            response.headers.add("Sec-WebSocket-Protocol", subprotocol)
        if extension is not None:
            response.headers.add("Sec-WebSocket-Extensions", extension)
        return response, HandshakeResult(subprotocol, deflate)

    def _subprotocol(self, request: Request, values: Sequence[str]) -> str | None:
        # Not comma_tokens(): that lower-cases, and subprotocol names are
        # case-sensitive (§4.1 item 10).
        offered = [token.strip() for value in values for token in value.split(",") if token.strip()]
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise _reject(500, "Internal Server Error", "selected a subprotocol not offered")
            return chosen
        for name in offered:
            if name in self.subprotocols:
                return name
        return None

    def _extensions(self, values: list[str]) -> tuple[DeflateParams | None, str | None]:
        try:
            offers = parse_extensions(values)
        except ValueError as exc:
            raise _reject(400, "Bad Request", f"invalid Sec-WebSocket-Extensions: {exc}") from None
        if self.compression is None:
            return None, None
        # §9.1: take the first acceptable offer, in the client's order of preference.
        for name, params in offers:
            if name != EXTENSION_NAME:
                continue
            agreed = negotiate_offer(params, self.compression)
            if agreed is not None:
                response_params, deflate = agreed
                return deflate, serialize_extension(EXTENSION_NAME, response_params)
        return None, None


# §4.1: a base64-encoded 16-byte value. Sixteen bytes are 22 base64
# characters and "==", and that is every string strict base64 decodes to
# sixteen bytes (tests/protocol/test_handshake.py checks it against
# base64.b64decode(validate=True)); the pattern costs a tenth of decoding.
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


def _valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


class ClientHandshake:
    """Builds the handshake request and checks the server's answer (§4.1)."""

    def __init__(
        self,
        *,
        host: str,
        path: str,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        compression: Sequence[DeflateOptions] = (_DEFAULT_DEFLATE,),
        extra_headers: Sequence[tuple[str, str]] = (),
        user_agent: str | None = SERVER_NAME,
    ) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.subprotocols = list(subprotocols)
        self.offers = list(compression)
        headers = Headers(
            [
                ("Host", host),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        if origin is not None:
            headers.add("Origin", origin)
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self.subprotocols))
        if self.offers:
            offers = [serialize_extension(EXTENSION_NAME, client_offer(o)) for o in self.offers]
            headers.add("Sec-WebSocket-Extensions", ", ".join(offers))
        if user_agent:
            headers.add("User-Agent", user_agent)
        for name, value in extra_headers:
            headers.add(name, value)
        self.request = Request(path, headers)

    def check(self, response: Response) -> HandshakeResult:
        """Validate the server's answer (§4.1, the client's checks 1-6)."""
        if response.status != 101:
            raise InvalidStatus(response)
        headers = response.headers
        if "websocket" not in headers.tokens("Upgrade"):
            raise HandshakeError("response lacks 'Upgrade: websocket'")
        if "upgrade" not in headers.tokens("Connection"):
            raise HandshakeError("response lacks 'Connection: Upgrade'")
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise HandshakeError("wrong Sec-WebSocket-Accept")
        protocols = headers.get_all("Sec-WebSocket-Protocol")
        subprotocol: str | None = None
        if protocols:
            if len(protocols) > 1 or protocols[0] not in self.subprotocols:
                raise HandshakeError(f"server chose a subprotocol we did not offer: {protocols}")
            subprotocol = protocols[0]
        try:
            extensions = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except ValueError as exc:
            raise HandshakeError(f"invalid Sec-WebSocket-Extensions: {exc}") from None
        deflate: DeflateParams | None = None
        offer: DeflateOptions | None = None
        for name, params in extensions:
            # §9.1: the server may only answer with extensions the client offered.
            if name != EXTENSION_NAME or not self.offers or deflate is not None:
                raise HandshakeError(f"server accepted an extension we did not offer: {name}")
            try:
                deflate, offer = match_response(params, self.offers)
            except ProtocolError as exc:
                raise HandshakeError(str(exc)) from None
        return HandshakeResult(subprotocol, deflate, offer)
