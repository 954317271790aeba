"""permessage-deflate (RFC 7692): negotiation and the per-message codec.

Decompression is bounded: :meth:`PerMessageDeflate.decompress` never inflates
more than the remaining message budget plus one byte, so a few kilobytes that
would inflate to gigabytes cost at most ``max_message_size`` before the
connection is failed with 1009.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..exceptions import PayloadTooBig, ProtocolError
from .extensions import ExtensionParams

__all__ = [
    "EXTENSION_NAME",
    "DeflateOptions",
    "DeflateParams",
    "PerMessageDeflate",
    "accept_response",
    "client_offer",
    "match_response",
    "negotiate_offer",
]

EXTENSION_NAME = "permessage-deflate"
# RFC 7692 §7.2.1: the 4 bytes a sync flush ends with, removed before sending.
_TAIL = b"\x00\x00\xff\xff"
_PARAM_NAMES = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What one side is willing to do; the same options serve as the client's offer.

    ``server_max_window_bits`` / ``client_max_window_bits``: the largest LZ77
    window (as a power of two, 8-15) each side may compress with. Smaller
    windows save memory (``2**bits`` bytes per context) at some cost in ratio.
    ``*_no_context_takeover``: that side resets its compression context after
    each message, trading ratio for memory that is freed between messages.
    ``min_size``: messages shorter than this are sent uncompressed (RFC 7692
    lets each message choose). The default compresses everything, as
    websockets does; raise it to save CPU on tiny messages, which rarely shrink.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    level: int = 6
    mem_level: int = 8
    min_size: int = 0

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if not 8 <= bits <= 15:
                raise ValueError("window bits must be between 8 and 15 (RFC 7692 §7.1.2)")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be between 1 and 9")


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The parameters agreed by a handshake."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


def _parse_params(params: ExtensionParams) -> dict[str, int | None]:
    """Validate one permessage-deflate parameter list (RFC 7692 §7.1).

    Returns the parameters as a dict (window bits as ints, flags as None);
    raises ValueError on an unknown or repeated name or an invalid value.
    """
    seen: dict[str, int | None] = {}
    for name, value in params:
        if name not in _PARAM_NAMES:
            raise ValueError(f"unknown permessage-deflate parameter {name!r}")
        if name in seen:
            raise ValueError(f"repeated permessage-deflate parameter {name!r}")
        if name.endswith("context_takeover"):
            if value is not None:
                raise ValueError(f"{name} takes no value")
            seen[name] = None
        elif value is None:
            # §7.1.2.2: client_max_window_bits may come without a value in an offer.
            if name != "client_max_window_bits":
                raise ValueError(f"{name} needs a value")
            seen[name] = None
        else:
            # §7.1.2: a decimal integer 8-15 with no leading zeros.
            if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
                raise ValueError(f"invalid {name} value {value!r}")
            seen[name] = int(value)
    return seen


def client_offer(options: DeflateOptions) -> ExtensionParams:
    """The offer a client sends for ``options`` (RFC 7692 §7.1)."""
    params: ExtensionParams = []
    if options.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if options.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if options.server_max_window_bits < 15:
        params.append(("server_max_window_bits", str(options.server_max_window_bits)))
    # Always say we accept a client_max_window_bits from the server (§7.1.2.2),
    # with a value only when we want to restrict ourselves.
    bits = options.client_max_window_bits
    params.append(("client_max_window_bits", str(bits) if bits < 15 else None))
    return params


def negotiate_offer(
    offer: ExtensionParams, options: DeflateOptions
) -> tuple[ExtensionParams, DeflateParams] | None:
    """Server side: accept one client offer, or return None to decline it.

    Returns the response parameters and the agreed :class:`DeflateParams`.
    """
    try:
        got = _parse_params(offer)
    except ValueError:
        return None  # §7.1: decline an offer with invalid parameters
    response: ExtensionParams = []
    server_nct = options.server_no_context_takeover or "server_no_context_takeover" in got
    if server_nct:
        response.append(("server_no_context_takeover", None))
    client_nct = options.client_no_context_takeover
    if client_nct:
        response.append(("client_no_context_takeover", None))
    # §7.1.2.1: answer a requested server window with one no larger.
    server_bits = options.server_max_window_bits
    requested = got.get("server_max_window_bits")
    if requested is not None:
        server_bits = min(server_bits, requested)
    if requested is not None or server_bits < 15:
        response.append(("server_max_window_bits", str(server_bits)))
    # §7.1.2.2: we may only limit the client's window if it said it accepts that.
    client_bits = 15
    if "client_max_window_bits" in got:
        offered = got["client_max_window_bits"] or 15
        client_bits = min(offered, options.client_max_window_bits)
        if client_bits < 15:
            response.append(("client_max_window_bits", str(client_bits)))
    params = DeflateParams(
        server_no_context_takeover=server_nct,
        # The client's own client_no_context_takeover is only a hint (§7.1.1.2),
        # and some clients (Autobahn's) send it as "I would accept it" and
        # keep their context: only what we answered binds the client.
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    return response, params


def accept_response(response: ExtensionParams, offers: list[DeflateOptions]) -> DeflateParams:
    """Client side: the parameters the server's answer agrees to (see :func:`match_response`)."""
    return match_response(response, offers)[0]


def match_response(
    response: ExtensionParams, offers: list[DeflateOptions]
) -> tuple[DeflateParams, DeflateOptions]:
    """Client side: check the server's answer against our offers (RFC 7692 §7.1).

    Returns the agreed parameters and the offer they answer. The answer does
    not say which offer it accepts; we take the first offer it is consistent
    with. Raises :class:`ProtocolError` (the handshake fails) when
    it fits none.
    """
    try:
        got = _parse_params(response)
    except ValueError as exc:
        raise ProtocolError(f"invalid permessage-deflate response: {exc}", 1010) from None
    if "client_max_window_bits" in got and got["client_max_window_bits"] is None:
        raise ProtocolError("client_max_window_bits without a value in a response", 1010)
    for offer in offers:
        server_bits = got.get("server_max_window_bits")
        if offer.server_max_window_bits < 15 and (
            server_bits is None or server_bits > offer.server_max_window_bits
        ):
            continue
        if offer.server_no_context_takeover and "server_no_context_takeover" not in got:
            continue
        client_bits = got.get("client_max_window_bits")
        if client_bits is not None and client_bits > offer.client_max_window_bits:
            continue
        agreed = DeflateParams(
            server_no_context_takeover="server_no_context_takeover" in got,
            client_no_context_takeover=offer.client_no_context_takeover
            or "client_no_context_takeover" in got,
            server_max_window_bits=server_bits or 15,
            client_max_window_bits=client_bits or offer.client_max_window_bits,
        )
        return agreed, offer
    raise ProtocolError("permessage-deflate response matches none of our offers", 1010)


class PerMessageDeflate:
    """Compresses outgoing and inflates incoming messages for one connection."""

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_deflate_bits",
        "_inflate_bits",
        "_level",
        "_mem_level",
        "_reset_in",
        "_reset_out",
        "min_size",
    )

    def __init__(self, params: DeflateParams, *, is_client: bool, options: DeflateOptions) -> None:
        if is_client:
            out_bits, in_bits = params.client_max_window_bits, params.server_max_window_bits
            self._reset_out = params.client_no_context_takeover
            self._reset_in = params.server_no_context_takeover
        else:
            out_bits, in_bits = params.server_max_window_bits, params.client_max_window_bits
            self._reset_out = params.server_no_context_takeover
            self._reset_in = params.client_no_context_takeover
        self._deflate_bits = out_bits
        # A larger window inflates anything a smaller one produced; zlib has no
        # 256-byte window for deflate, and we keep inflate symmetrical with it.
        self._inflate_bits = max(in_bits, 9)
        self._level = options.level
        self._mem_level = options.mem_level
        self.min_size = options.min_size
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def _new_compressor(self) -> zlib._Compress:
        if self._deflate_bits == 8:
            # zlib cannot deflate with a 256-byte window (it silently uses 512).
            # Run-length matches only reach one byte back, so they fit any window.
            return zlib.compressobj(self._level, zlib.DEFLATED, -9, self._mem_level, zlib.Z_RLE)
        return zlib.compressobj(self._level, zlib.DEFLATED, -self._deflate_bits, self._mem_level)

    def compress(self, data: bytes | bytearray | memoryview, final: bool = True) -> bytes:
        """Compress one message (or, with ``final=False``, one non-final fragment of it)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._new_compressor()
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if not final:
            return out
        if self._reset_out:
            # No context takeover (§7.2.1): the next message must not refer to
            # this one; dropping the context also frees its memory.
            self._compressor = None
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes | bytearray | memoryview, final: bool, budget: int) -> bytes:
        """Inflate one fragment of a compressed message, producing at most ``budget`` bytes.

        Raises :class:`PayloadTooBig` as soon as the output would exceed the
        budget, without inflating any further.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._inflate_bits)
        try:
            out = decompressor.decompress(data, budget + 1)
            if len(out) > budget:
                raise PayloadTooBig("message exceeds max_message_size once inflated")
            if final:
                # §7.2.2: append the sync-flush tail that the sender removed.
                tail = decompressor.decompress(_TAIL, budget - len(out) + 1)
                if tail:
                    out += tail
                    if len(out) > budget:
                        raise PayloadTooBig("message exceeds max_message_size once inflated")
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}", 1007) from None
        if final and (self._reset_in or decompressor.eof):
            self._decompressor = None
        return out
