"""permessage-deflate: parameter negotiation and the bounded codec (RFC 7692)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.exceptions import PayloadTooBig, ProtocolError
from tether.protocol.deflate import (
    DeflateOptions,
    DeflateParams,
    PerMessageDeflate,
    accept_response,
    client_offer,
    match_response,
    negotiate_offer,
)
from tether.protocol.extensions import ExtensionParams

TAIL = b"\x00\x00\xff\xff"


def codec(
    params: DeflateParams | None = None, *, is_client: bool = False, **options: int
) -> PerMessageDeflate:
    return PerMessageDeflate(
        params or DeflateParams(), is_client=is_client, options=DeflateOptions(**options)
    )


def inflate(data: bytes, wbits: int = 15) -> bytes:
    """Reference inflater for one message as sent on the wire (tail removed)."""
    return zlib.decompressobj(-wbits).decompress(data + TAIL)


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"mem_level": 0},
        {"mem_level": 10},
    ],
)
def test_options_reject_out_of_range_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DeflateOptions(**kwargs)


@pytest.mark.parametrize(
    ("options", "offer"),
    [
        (DeflateOptions(), [("client_max_window_bits", None)]),
        (
            DeflateOptions(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=10,
                client_max_window_bits=9,
            ),
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "10"),
                ("client_max_window_bits", "9"),
            ],
        ),
    ],
)
def test_client_offer(options: DeflateOptions, offer: ExtensionParams) -> None:
    assert client_offer(options) == offer


# -- server side negotiation -------------------------------------------------------------


def test_server_accepts_an_empty_offer() -> None:
    assert negotiate_offer([], DeflateOptions()) == ([], DeflateParams())


@pytest.mark.parametrize("bits", range(8, 16))
def test_server_honours_requested_server_max_window_bits(bits: int) -> None:
    response, params = negotiate_offer(
        [("server_max_window_bits", str(bits))], DeflateOptions()
    ) or pytest.fail("declined")
    assert response == [("server_max_window_bits", str(bits))]
    assert params == DeflateParams(server_max_window_bits=bits)


@pytest.mark.parametrize("bits", range(8, 16))
def test_server_answers_with_no_larger_window_than_requested(bits: int) -> None:
    options = DeflateOptions(server_max_window_bits=12)
    response, params = negotiate_offer(
        [("server_max_window_bits", str(bits))], options
    ) or pytest.fail("declined")
    assert response == [("server_max_window_bits", str(min(bits, 12)))]
    assert params.server_max_window_bits == min(bits, 12)


def test_server_may_limit_its_own_window_unasked() -> None:
    result = negotiate_offer([], DeflateOptions(server_max_window_bits=10))
    assert result == ([("server_max_window_bits", "10")], DeflateParams(server_max_window_bits=10))


@pytest.mark.parametrize("bits", range(8, 16))
def test_server_takes_client_max_window_bits_value(bits: int) -> None:
    response, params = negotiate_offer(
        [("client_max_window_bits", str(bits))], DeflateOptions()
    ) or pytest.fail("declined")
    assert response == ([("client_max_window_bits", str(bits))] if bits < 15 else [])
    assert params == DeflateParams(client_max_window_bits=bits)


def test_server_limits_client_window_only_when_the_client_allows_it() -> None:
    options = DeflateOptions(client_max_window_bits=10)
    # §7.1.2.2: without client_max_window_bits in the offer, the response must not carry it.
    assert negotiate_offer([], options) == ([], DeflateParams())
    assert negotiate_offer([("client_max_window_bits", None)], options) == (
        [("client_max_window_bits", "10")],
        DeflateParams(client_max_window_bits=10),
    )
    assert negotiate_offer([("client_max_window_bits", "9")], options) == (
        [("client_max_window_bits", "9")],
        DeflateParams(client_max_window_bits=9),
    )


def test_server_no_context_takeover_requested_by_the_client_is_granted() -> None:
    assert negotiate_offer([("server_no_context_takeover", None)], DeflateOptions()) == (
        [("server_no_context_takeover", None)],
        DeflateParams(server_no_context_takeover=True),
    )


def test_client_no_context_takeover_is_only_a_hint_from_the_client() -> None:
    assert negotiate_offer([("client_no_context_takeover", None)], DeflateOptions()) == (
        [],
        DeflateParams(),
    )
    options = DeflateOptions(client_no_context_takeover=True)
    assert negotiate_offer([], options) == (
        [("client_no_context_takeover", None)],
        DeflateParams(client_no_context_takeover=True),
    )


@pytest.mark.parametrize(
    "offer",
    [
        [("server_max_window_bits", "7")],
        [("server_max_window_bits", "16")],
        [("server_max_window_bits", "08")],
        [("server_max_window_bits", "ten")],
        [("server_max_window_bits", None)],
        [("client_max_window_bits", "7")],
        [("client_max_window_bits", "16")],
        [("client_max_window_bits", "+9")],
        [("server_no_context_takeover", "1")],
        [("client_no_context_takeover", "")],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "10")],
        [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
        [("mystery", None)],
    ],
)
def test_server_declines_invalid_offers(offer: ExtensionParams) -> None:
    assert negotiate_offer(offer, DeflateOptions()) is None


# -- client side checks --------------------------------------------------------------------


def test_client_accepts_a_plain_response() -> None:
    assert accept_response([], [DeflateOptions()]) == DeflateParams()


def test_client_applies_what_the_server_answered() -> None:
    response = [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "9"),
        ("client_max_window_bits", "10"),
    ]
    assert accept_response(response, [DeflateOptions()]) == DeflateParams(True, True, 9, 10)


@pytest.mark.parametrize(
    ("response", "offer"),
    [
        # We asked for a server window of at most 10.
        ([], DeflateOptions(server_max_window_bits=10)),
        ([("server_max_window_bits", "11")], DeflateOptions(server_max_window_bits=10)),
        # We asked for server_no_context_takeover (§7.1.1.1: it must be echoed).
        ([], DeflateOptions(server_no_context_takeover=True)),
        # A client window larger than we said we would use.
        ([("client_max_window_bits", "11")], DeflateOptions(client_max_window_bits=10)),
        # §7.1.2.2: a response's client_max_window_bits needs a value.
        ([("client_max_window_bits", None)], DeflateOptions()),
        ([("server_max_window_bits", "16")], DeflateOptions()),
        ([("unknown", None)], DeflateOptions()),
        ([("server_no_context_takeover", None)] * 2, DeflateOptions()),
    ],
)
def test_client_rejects_responses_that_fit_no_offer(
    response: ExtensionParams, offer: DeflateOptions
) -> None:
    with pytest.raises(ProtocolError) as info:
        accept_response(response, [offer])
    assert info.value.close_code == 1010


def test_client_takes_the_first_offer_the_response_fits() -> None:
    offers = [DeflateOptions(server_max_window_bits=9), DeflateOptions(client_max_window_bits=12)]
    assert accept_response([("client_max_window_bits", "12")], offers) == DeflateParams(
        client_max_window_bits=12
    )
    assert accept_response([("server_max_window_bits", "9")], offers) == DeflateParams(
        server_max_window_bits=9
    )


def test_client_own_no_context_takeover_offer_binds_itself() -> None:
    params = accept_response([], [DeflateOptions(client_no_context_takeover=True)])
    assert params == DeflateParams(client_no_context_takeover=True)


# -- the codec ---------------------------------------------------------------------------


def test_compress_removes_the_sync_flush_tail() -> None:
    data = codec().compress(b"Hello")
    assert not data.endswith(TAIL)
    assert inflate(data) == b"Hello"


def test_rfc_7692_example_hello_decompresses() -> None:
    # RFC 7692 §7.2.3.1: "Hello" compressed with no context takeover.
    assert codec().decompress(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"


def test_rfc_7692_example_shared_window() -> None:
    # §7.2.3.2: the second "Hello" refers back into the first message.
    receiver = codec()
    assert receiver.decompress(bytes.fromhex("f248cdc9c90700"), True, 100) == b"Hello"
    assert receiver.decompress(bytes.fromhex("f200110000"), True, 100) == b"Hello"


def test_rfc_7692_example_uncompressed_block() -> None:
    # §7.2.3.3: a stored (BTYPE=00) block.
    assert codec().decompress(bytes.fromhex("0005 00fa ff48 656c 6c6f 00"), True, 100) == b"Hello"


def test_non_final_fragment_keeps_the_tail() -> None:
    sender = codec()
    first = sender.compress(b"Hel", final=False)
    assert first.endswith(TAIL)
    last = sender.compress(b"lo", final=True)
    assert inflate(first + last) == b"Hello"


@pytest.mark.parametrize("reset", [False, True])
def test_context_takeover_on_the_sending_side(reset: bool) -> None:
    sender = codec(DeflateParams(server_no_context_takeover=reset))
    message = b"the same sentence, again and again. " * 4
    first, second = sender.compress(message), sender.compress(message)
    if reset:
        assert first == second
        assert inflate(second) == message
    else:
        assert len(second) < len(first) // 2
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(first + TAIL) == message
        assert inflater.decompress(second + TAIL) == message


@pytest.mark.parametrize("reset", [False, True])
def test_context_takeover_on_the_receiving_side(reset: bool) -> None:
    # The peer (a client) compresses two messages sharing one context.
    sender = zlib.compressobj(6, zlib.DEFLATED, -15)
    message = b"the same sentence, again and again. " * 4
    first = (sender.compress(message) + sender.flush(zlib.Z_SYNC_FLUSH))[:-4]
    second = (sender.compress(message) + sender.flush(zlib.Z_SYNC_FLUSH))[:-4]
    receiver = codec(DeflateParams(client_no_context_takeover=reset))
    assert receiver.decompress(first, True, 1000) == message
    if reset:
        # The context was dropped as negotiated: a back-reference cannot resolve.
        with pytest.raises(ProtocolError):
            receiver.decompress(second, True, 1000)
    else:
        assert receiver.decompress(second, True, 1000) == message


def test_decompress_budget_is_exact() -> None:
    data = codec().compress(b"a" * 100)
    assert codec().decompress(data, True, 100) == b"a" * 100
    with pytest.raises(PayloadTooBig):
        codec().decompress(data, True, 99)


def test_decompress_budget_applies_to_each_fragment() -> None:
    sender = codec()
    first, last = sender.compress(b"c" * 600, final=False), sender.compress(b"d" * 600)
    receiver = codec()
    assert receiver.decompress(first, False, 1000) == b"c" * 600
    # The caller passes what is left of the message budget.
    with pytest.raises(PayloadTooBig):
        receiver.decompress(last, True, 1000 - 600)


def test_decompression_bomb_stops_at_the_budget() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (compressor.compress(b"\0" * (10 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(PayloadTooBig) as info:
        codec().decompress(bomb, True, 1 << 20)
    assert info.value.close_code == 1009


def test_invalid_compressed_data_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        codec().decompress(b"\xff\xff\xff", True, 100)
    assert not isinstance(info.value, PayloadTooBig)


def test_final_block_resets_the_decompressor() -> None:
    # A message ending with BFINAL=1 ends the deflate stream; the next message
    # starts a new one (the RFC 7692 §7.2.3.4 example).
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = compressor.compress(b"Hello") + compressor.flush(zlib.Z_FINISH)
    receiver = codec()
    assert receiver.decompress(final, True, 100) == b"Hello"
    assert receiver.decompress(codec().compress(b"again"), True, 100) == b"again"


@pytest.mark.parametrize("bits", range(8, 16))
def test_compressor_respects_the_window_in_a_strict_inflater(bits: int) -> None:
    # Repeats 300 and 20000 bytes back, beyond the smaller windows.
    block = bytes((i * 7919) % 251 for i in range(20000))
    message = block + block[:300] + block[19500:] + block[:1000]
    sender = codec(DeflateParams(server_max_window_bits=bits))
    data = sender.compress(message) + TAIL
    inflater = zlib.decompressobj(-bits)
    out = bytearray()
    while data:  # a few bytes per call, so distances must fit the window
        out += inflater.decompress(data, 8)
        data = inflater.unconsumed_tail
    assert bytes(out) == message


@settings(deadline=None)
@given(
    messages=st.lists(st.binary(max_size=2000), min_size=1, max_size=5),
    sbits=st.integers(8, 15),
    cbits=st.integers(8, 15),
    snct=st.booleans(),
    cnct=st.booleans(),
)
def test_codec_round_trip(
    messages: list[bytes], sbits: int, cbits: int, snct: bool, cnct: bool
) -> None:
    params = DeflateParams(snct, cnct, sbits, cbits)
    client, server = codec(params, is_client=True), codec(params)
    for message in messages:
        assert server.decompress(client.compress(message), True, len(message)) == message
        assert client.decompress(server.compress(message), True, len(message)) == message


def test_match_response_names_the_offer_the_answer_fits() -> None:
    strict = DeflateOptions(server_max_window_bits=9, min_size=1000)
    plain = DeflateOptions(min_size=7)
    # No server_max_window_bits in the answer: it cannot be for the first offer.
    params, offer = match_response([], [strict, plain])
    assert offer is plain
    assert params == DeflateParams()
    params, offer = match_response([("server_max_window_bits", "9")], [strict, plain])
    assert offer is strict
    assert params.server_max_window_bits == 9
