"""The opening handshake, both sides (RFC 6455 §4, RFC 7692 §5-§7).

Requests and responses are written as raw bytes and parsed with the HTTP
parser, as they arrive from the network.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import random
import string
from collections.abc import Sequence
from typing import Any

import pytest

from tether.exceptions import HandshakeError, HandshakeRejected, InvalidStatus
from tether.protocol.deflate import DeflateOptions, DeflateParams
from tether.protocol.handshake import (
    ClientHandshake,
    HandshakeResult,
    ServerHandshake,
    accept_key,
)
from tether.protocol.http import Request, Response, parse_request, parse_response

# RFC 6455 §1.3's example.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request(
    *extra: tuple[str, str], omit: Sequence[str] = (), method: str = "GET", **replace: str
) -> Request:
    """Parse a raw handshake request: BASE minus ``omit``, ``replace`` applied, ``extra`` added."""
    lines = []
    for name, value in BASE:
        if name in omit:
            continue
        lines.append(f"{name}: {replace.get(name.replace('-', '_'), value)}")
    lines += [f"{name}: {value}" for name, value in extra]
    raw = f"{method} /chat HTTP/1.1\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n"
    parsed = parse_request(raw.encode(), max_bytes=8192, max_count=64)
    assert parsed is not None
    return parsed[0]


def response(status: int, *headers: tuple[str, str]) -> Response:
    raw = f"HTTP/1.1 {status} Whatever\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    parsed = parse_response((raw + "\r\n").encode(), max_bytes=8192, max_count=64)
    assert parsed is not None
    return parsed[0]


def reject(server: ServerHandshake, req: Request) -> Response:
    with pytest.raises(HandshakeRejected) as info:
        server.accept(req)
    return info.value.response


# -- server ----------------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_server_accepts_the_rfc_example_request() -> None:
    handshake = ServerHandshake(server_header=None)
    answer, result = handshake.accept(request())
    assert answer.encode() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )
    assert result == HandshakeResult(None, None)


def test_server_header_names_tether_by_default() -> None:
    answer, _ = ServerHandshake().accept(request())
    assert (answer.headers.get("Server") or "").startswith("tether/")


def test_server_accepts_tokens_in_any_case_and_lists() -> None:
    req = request(Upgrade="WebSocket", Connection="keep-alive, upgrade")
    answer, _ = ServerHandshake().accept(req)
    assert answer.status == 101


@pytest.mark.parametrize(
    "key",
    [
        "",
        "abc",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
        "dGhlIHNhbXBsZSBub25jZQ=!",
        "é" * 24,
    ],
)
def test_server_rejects_invalid_key_with_400(key: str) -> None:
    assert reject(ServerHandshake(), request(Sec_WebSocket_Key=key)).status == 400


def test_the_key_check_is_strict_base64_of_16_bytes() -> None:
    """The server's pattern for Sec-WebSocket-Key accepts exactly what
    base64.b64decode(validate=True) decodes to 16 bytes."""
    rng = random.Random(6455)
    alphabet = string.ascii_letters + string.digits + "+/=!-_é\t"
    keys = [base64.b64encode(rng.randbytes(n)).decode() for n in range(12, 20) for _ in range(30)]
    keys += ["".join(rng.choices(alphabet, k=rng.choice((22, 23, 24, 25)))) for _ in range(2000)]
    for _ in range(300):
        # Near misses of a good key: one character changed, one cut, one added.
        good = base64.b64encode(rng.randbytes(16)).decode()
        i = rng.randrange(24)
        changed = good[:i] + rng.choice(alphabet) + good[i + 1 :]
        keys += [changed, good[:i] + good[i + 1 :], good + "="]
    handshake = ServerHandshake()
    verdicts = set()
    for key in keys:
        req = request(Sec_WebSocket_Key=key)
        seen = req.headers.get("Sec-WebSocket-Key") or ""  # as the parser left it
        try:
            valid = len(base64.b64decode(seen.encode(), validate=True)) == 16
        except (binascii.Error, UnicodeEncodeError):
            valid = False
        verdicts.add(valid)
        if valid:
            assert handshake.accept(req)[0].status == 101, key
        else:
            assert reject(handshake, req).status == 400, key
    assert verdicts == {True, False}


def test_server_rejects_missing_or_repeated_key_with_400() -> None:
    assert reject(ServerHandshake(), request(omit=["Sec-WebSocket-Key"])).status == 400
    repeated = request(("Sec-WebSocket-Key", KEY))
    assert reject(ServerHandshake(), repeated).status == 400


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", ""])
def test_server_rejects_wrong_version_with_426_and_the_supported_one(version: str) -> None:
    answer = reject(ServerHandshake(), request(Sec_WebSocket_Version=version))
    assert answer.status == 426
    assert answer.headers.get_all("Sec-WebSocket-Version") == ["13"]


def test_server_rejects_missing_or_repeated_version_with_426() -> None:
    assert reject(ServerHandshake(), request(omit=["Sec-WebSocket-Version"])).status == 426
    repeated = request(("Sec-WebSocket-Version", "13"))
    assert reject(ServerHandshake(), repeated).status == 426


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "CONNECT"])
def test_server_rejects_other_methods_with_405(method: str) -> None:
    assert reject(ServerHandshake(), request(method=method)).status == 405


@pytest.mark.parametrize("upgrade", [None, "h2c", "websocket2"])
def test_server_rejects_missing_upgrade_with_426(upgrade: str | None) -> None:
    req = request(omit=["Upgrade"]) if upgrade is None else request(Upgrade=upgrade)
    answer = reject(ServerHandshake(), req)
    assert answer.status == 426
    assert answer.headers.get("Upgrade") == "websocket"


@pytest.mark.parametrize("connection", [None, "keep-alive", "close", "upgrades"])
def test_server_rejects_missing_connection_upgrade_with_400(connection: str | None) -> None:
    req = request(omit=["Connection"]) if connection is None else request(Connection=connection)
    assert reject(ServerHandshake(), req).status == 400


def test_server_rejects_missing_or_duplicate_host_with_400() -> None:
    assert reject(ServerHandshake(), request(omit=["Host"])).status == 400
    assert reject(ServerHandshake(), request(("Host", "other.example"))).status == 400


def test_rejection_response_closes_the_connection() -> None:
    answer = reject(ServerHandshake(), request(method="POST"))
    assert answer.headers.get("Connection") == "close"
    assert answer.headers.get("Content-Length") == str(len(answer.body))
    assert answer.body.endswith(b"\n")


@pytest.mark.parametrize(
    ("origins", "origin", "ok"),
    [
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "https://evil.example", False),
        (["https://app.example"], None, False),
        (["https://app.example", None], None, True),
        ([None], "https://app.example", False),
        ([], None, False),
    ],
)
def test_server_checks_origin_against_the_allow_list(
    origins: list[str | None], origin: str | None, ok: bool
) -> None:
    req = request() if origin is None else request(("Origin", origin))
    handshake = ServerHandshake(origins=origins)
    if ok:
        assert handshake.accept(req)[0].status == 101
    else:
        assert reject(handshake, req).status == 403


def test_server_refuses_several_origin_headers_even_if_one_is_allowed() -> None:
    handshake = ServerHandshake(origins=["https://app.example"])
    req = request(("Origin", "https://app.example"), ("Origin", "https://evil.example"))
    assert reject(handshake, req).status == 403


def test_server_without_allow_list_accepts_any_origin() -> None:
    assert ServerHandshake().accept(request(("Origin", "https://x.example")))[0].status == 101


@pytest.mark.parametrize(
    ("server", "offered", "chosen"),
    [
        (["chat"], [], None),
        (["chat"], ["chat"], "chat"),
        (["chat", "superchat"], ["superchat, chat"], "superchat"),  # the client's order
        (["chat"], ["v1", "chat"], "chat"),  # across several headers
        (["chat"], ["Chat"], None),  # case-sensitive (§4.1)
        (["Chat"], ["chat"], None),
        ([], ["chat"], None),
    ],
)
def test_server_selects_a_subprotocol(
    server: list[str], offered: list[str], chosen: str | None
) -> None:
    req = request(*[("Sec-WebSocket-Protocol", value) for value in offered])
    answer, result = ServerHandshake(subprotocols=server).accept(req)
    assert result.subprotocol == chosen
    assert answer.headers.get_all("Sec-WebSocket-Protocol") == ([chosen] if chosen else [])


def test_server_subprotocol_selector() -> None:
    seen: list[Sequence[str]] = []

    def select(req: Request, offered: Sequence[str]) -> str | None:
        seen.append(offered)
        return offered[-1] if offered else None

    req = request(("Sec-WebSocket-Protocol", "a, b"))
    answer, result = ServerHandshake(select_subprotocol=select).accept(req)
    assert seen == [["a", "b"]]
    assert result.subprotocol == "b"
    assert answer.headers.get("Sec-WebSocket-Protocol") == "b"


def test_server_subprotocol_selector_must_pick_an_offered_one() -> None:
    handshake = ServerHandshake(select_subprotocol=lambda req, offered: "other")
    assert reject(handshake, request(("Sec-WebSocket-Protocol", "a"))).status == 500


_DEFAULT_OPTIONS = DeflateOptions()


def offer(
    value: str, compression: DeflateOptions | None = _DEFAULT_OPTIONS
) -> tuple[str | None, DeflateParams | None]:
    """The server's Sec-WebSocket-Extensions answer and agreed params for an offer."""
    answer, result = ServerHandshake(compression=compression).accept(
        request(("Sec-WebSocket-Extensions", value))
    )
    return answer.headers.get("Sec-WebSocket-Extensions"), result.deflate


def test_server_negotiates_deflate() -> None:
    assert offer("permessage-deflate") == ("permessage-deflate", DeflateParams())
    assert offer("permessage-deflate; client_max_window_bits") == (
        "permessage-deflate",
        DeflateParams(),
    )


@pytest.mark.parametrize("bits", range(8, 16))
def test_server_negotiates_window_bits(bits: int) -> None:
    assert offer(f"permessage-deflate; server_max_window_bits={bits}") == (
        f"permessage-deflate; server_max_window_bits={bits}",
        DeflateParams(server_max_window_bits=bits),
    )
    header = "permessage-deflate" + (f"; client_max_window_bits={bits}" if bits < 15 else "")
    assert offer(f'permessage-deflate; client_max_window_bits="{bits}"') == (
        header,
        DeflateParams(client_max_window_bits=bits),
    )


def test_server_negotiates_context_takeover() -> None:
    assert offer("permessage-deflate; server_no_context_takeover") == (
        "permessage-deflate; server_no_context_takeover",
        DeflateParams(server_no_context_takeover=True),
    )
    assert offer(
        "permessage-deflate",
        DeflateOptions(client_no_context_takeover=True, server_no_context_takeover=True),
    ) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True),
    )


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; x_unknown",
        "x-webkit-deflate-frame",
    ],
)
def test_server_declines_invalid_deflate_offers(value: str) -> None:
    assert offer(value) == (None, None)


def test_server_takes_the_first_acceptable_offer() -> None:
    value = (
        "permessage-deflate; server_max_window_bits=99, "
        "permessage-deflate; server_max_window_bits=10, permessage-deflate"
    )
    assert offer(value) == (
        "permessage-deflate; server_max_window_bits=10",
        DeflateParams(server_max_window_bits=10),
    )


def test_server_without_compression_ignores_offers() -> None:
    assert offer("permessage-deflate", compression=None) == (None, None)


def test_server_rejects_malformed_extensions_header_with_400() -> None:
    req = request(("Sec-WebSocket-Extensions", "permessage-deflate; ="))
    assert reject(ServerHandshake(), req).status == 400


# -- client ----------------------------------------------------------------------------


def test_client_request() -> None:
    client = ClientHandshake(
        host="example.com:8080",
        path="/chat?x=1",
        origin="https://app.example",
        subprotocols=["chat", "v2"],
        extra_headers=[("X-Token", "t")],
        user_agent=None,
    )
    assert len(base64.b64decode(client.key, validate=True)) == 16
    assert client.request.encode() == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + client.key.encode() + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: https://app.example\r\n"
        b"Sec-WebSocket-Protocol: chat, v2\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"X-Token: t\r\n"
        b"\r\n"
    )


def test_client_keys_are_random() -> None:
    assert ClientHandshake(host="h", path="/").key != ClientHandshake(host="h", path="/").key


def good_response(client: ClientHandshake, *extra: tuple[str, str]) -> Response:
    return response(
        101,
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(client.key)),
        *extra,
    )


def test_client_accepts_a_good_response() -> None:
    client = ClientHandshake(host="h", path="/", subprotocols=["chat"])
    result = client.check(
        good_response(
            client,
            ("Sec-WebSocket-Protocol", "chat"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
        )
    )
    assert result == HandshakeResult(
        "chat", DeflateParams(server_no_context_takeover=True), DeflateOptions()
    )


def test_client_rejects_non_101_with_invalid_status() -> None:
    client = ClientHandshake(host="h", path="/")
    answer = response(403, ("Content-Length", "0"))
    with pytest.raises(InvalidStatus) as info:
        client.check(answer)
    assert info.value.response is answer
    assert isinstance(info.value, HandshakeError)


@pytest.mark.parametrize(
    "headers",
    [
        [("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "{accept}")],
        [("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "{accept}")],
        [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "{accept}")],
        [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)],
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "{accept}"),
            ("Sec-WebSocket-Accept", "{accept}"),
        ],
    ],
)
def test_client_rejects_a_bad_101(headers: list[tuple[str, str]]) -> None:
    client = ClientHandshake(host="h", path="/")
    accept = accept_key(client.key)
    answer = response(101, *[(k, v.format(accept=accept)) for k, v in headers])
    with pytest.raises(HandshakeError):
        client.check(answer)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ([], ["chat"]),
        (["chat"], ["Chat"]),
        (["chat"], ["other"]),
        (["chat", "v2"], ["chat", "v2"]),
        (["chat", "v2"], ["chat, v2"]),
    ],
)
def test_client_rejects_a_subprotocol_it_did_not_offer(
    offered: list[str], answered: list[str]
) -> None:
    client = ClientHandshake(host="h", path="/", subprotocols=offered)
    extra = [("Sec-WebSocket-Protocol", value) for value in answered]
    with pytest.raises(HandshakeError):
        client.check(good_response(client, *extra))


@pytest.mark.parametrize(
    ("compression", "answered"),
    [
        ((), ["permessage-deflate"]),
        ((DeflateOptions(),), ["x-unknown"]),
        ((DeflateOptions(),), ["permessage-deflate, permessage-deflate"]),
        ((DeflateOptions(),), ["permessage-deflate", "permessage-deflate"]),
        ((DeflateOptions(),), ["permessage-deflate; client_max_window_bits"]),
        (
            (DeflateOptions(client_max_window_bits=10),),
            ["permessage-deflate; client_max_window_bits=11"],
        ),
        ((DeflateOptions(server_max_window_bits=10),), ["permessage-deflate"]),
        ((DeflateOptions(server_no_context_takeover=True),), ["permessage-deflate"]),
        ((DeflateOptions(),), ["permessage-deflate; server_max_window_bits=7"]),
        ((DeflateOptions(),), ["permessage-deflate;"]),
    ],
)
def test_client_rejects_an_extension_answer_it_cannot_accept(
    compression: Sequence[DeflateOptions], answered: list[str]
) -> None:
    client = ClientHandshake(host="h", path="/", compression=compression)
    extra = [("Sec-WebSocket-Extensions", value) for value in answered]
    with pytest.raises(HandshakeError):
        client.check(good_response(client, *extra))


def test_client_without_compression_offers_nothing() -> None:
    client = ClientHandshake(host="h", path="/", compression=())
    assert "Sec-WebSocket-Extensions" not in client.request.headers
    assert client.check(good_response(client)) == HandshakeResult(None, None)


# -- both sides ------------------------------------------------------------------------

OPTION_COMBOS = [
    DeflateOptions(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=sbits,
        client_max_window_bits=cbits,
    )
    for snct, cnct, sbits, cbits in itertools.product(
        (False, True), (False, True), (8, 9, 12, 15), (8, 9, 12, 15)
    )
]


@pytest.mark.parametrize("options", OPTION_COMBOS)
def test_client_and_server_agree_on_deflate(options: DeflateOptions) -> None:
    client = ClientHandshake(host="h", path="/", compression=[options])
    parsed = parse_request(client.request.encode(), max_bytes=8192, max_count=64)
    assert parsed is not None
    answer, server_result = ServerHandshake().accept(parsed[0])
    parsed_answer = parse_response(answer.encode(), max_bytes=8192, max_count=64)
    assert parsed_answer is not None
    client_result = client.check(parsed_answer[0])
    expected: dict[str, Any] = {
        "server_no_context_takeover": options.server_no_context_takeover,
        "server_max_window_bits": options.server_max_window_bits,
        "client_max_window_bits": options.client_max_window_bits,
    }
    assert server_result.deflate == DeflateParams(client_no_context_takeover=False, **expected)
    # The client's own client_no_context_takeover is a promise it keeps without
    # the server having to answer it (RFC 7692 §7.1.1.2).
    assert client_result.deflate == DeflateParams(
        client_no_context_takeover=options.client_no_context_takeover, **expected
    )
    assert (
        dataclasses.replace(client_result.deflate, client_no_context_takeover=False)
        == server_result.deflate
    )


def test_client_accepts_header_names_and_tokens_in_any_case() -> None:
    client = ClientHandshake(host="h", path="/")
    answer = response(
        101,
        ("UPGRADE", "WebSocket"),
        ("connection", "upgrade"),
        ("sec-websocket-accept", accept_key(client.key)),
    )
    assert client.check(answer) == HandshakeResult(None, None)
