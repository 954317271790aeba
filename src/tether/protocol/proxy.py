"""HTTP proxies for clients, sans-I/O: which proxy to use, the CONNECT request, its answer.

A client reaches ``host:port`` through an HTTP proxy with a ``CONNECT``
request (RFC 9110 §9.3.6): a 2xx answer turns the proxy connection into a
blind tunnel, inside which the client speaks to the origin (TLS first for
``wss://`` and ``https://``). The proxy comes from an explicit ``proxy=``
option or, by default, from the environment as curl, requests and urllib
read it: ``https_proxy`` for ``wss://``/``https://``, ``http_proxy`` for
``ws://``/``http://``, ``all_proxy`` for either (``wss_proxy`` and
``ws_proxy`` first, for WebSocket connections only), ``no_proxy`` for the hosts
to reach directly (lower or upper case, the lower case one wins).

The I/O that uses this is :func:`tether.client.open_tunnel`.
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from ..exceptions import HandshakeError, InvalidURI, PayloadTooBig, ProxyError
from .http import parse_response

__all__ = [
    "Proxy",
    "ProxyOption",
    "bypass",
    "connect_request",
    "parse_connect_response",
    "select_proxy",
]

ProxyOption = str | bool | None
"""``True``: from the environment (the default); ``None``/``False``: none; a URL: that one."""

# The environment key for each scheme a tether client connects with.
_ENV_KEYS = {"ws": "http", "http": "http", "wss": "https", "https": "https"}


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it is, and the credentials of its URL's userinfo."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """Parse ``http://[user:password@]host[:port]``; port 80 when absent (the
        scheme's default, as requests and urllib take it)."""
        if "://" not in url:
            url = "http://" + url  # "proxy:3128", as curl and requests accept
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() != "http":
            raise InvalidURI(f"proxy {_redact(url)!r}: only http:// proxies are supported")
        if not parts.hostname:
            raise InvalidURI(f"proxy {_redact(url)!r} has no host")
        try:
            port = parts.port if parts.port is not None else 80
        except ValueError as exc:
            raise InvalidURI(f"proxy {_redact(url)!r}: {exc}") from None
        username = urllib.parse.unquote(parts.username) if parts.username is not None else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname, port, username, password)

    @property
    def url(self) -> str:
        """The proxy's URL without its credentials, to name it in errors and logs."""
        return f"http://{_authority(self.host, self.port)}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (RFC 9110 §11.7.2, Basic of RFC 7617), or None."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def select_proxy(
    scheme: str,
    host: str,
    port: int,
    proxy: ProxyOption = True,
    *,
    environ: Mapping[str, str] | None = None,
) -> Proxy | None:
    """The proxy to reach ``scheme://host:port`` through, or None to go directly.

    ``environ`` is a mapping such as :func:`urllib.request.getproxies` returns
    (``{"https": url, "no": "localhost,.corp"}``); by default that function's
    answer (the environment on Linux, the system settings elsewhere).

    >>> select_proxy("wss", "example.com", 443, environ={"https": "http://p:3128"})
    Proxy(host='p', port=3128, username=None, password=None)
    >>> select_proxy("wss", "example.com", 443, environ={"https": "p", "no": "example.com"})
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return Proxy.from_url(proxy)
    proxies = urllib.request.getproxies() if environ is None else environ
    # ws_proxy / wss_proxy (as websockets reads them) name a proxy for
    # WebSocket connections only; then the HTTP ones, then all_proxy.
    url = (
        (proxies.get(scheme) if scheme in ("ws", "wss") else None)
        or proxies.get(_ENV_KEYS.get(scheme, scheme))
        or proxies.get("all")
    )
    if not url:
        return None
    if bypass(host, port, proxies.get("no", "")):
        return None
    return Proxy.from_url(url)


def bypass(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated, as curl reads it) lists ``host:port``.

    Entries: ``*`` (every host), a host name that also matches its subdomains
    (``example.com`` and ``.example.com`` alike), an IP address, any of them
    with ``:port`` to match that port only. CIDR ranges are not supported.

    >>> bypass("api.example.com", 443, "localhost, .example.com")
    True
    """
    host = host.lower().strip("[]").rstrip(".")
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        name, entry_port = entry, ""
        if entry.startswith("["):  # [::1]:8080
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        name = name.lstrip(".").rstrip(".")
        if not name or (entry_port and entry_port != str(port)):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def connect_request(host: str, port: int, proxy: Proxy) -> bytes:
    """The ``CONNECT host:port`` request (RFC 9110 §9.3.6, authority-form of RFC 9112 §3.2.3)."""
    authority = _authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    credentials = proxy.authorization()
    if credentials is not None:
        lines.append(f"Proxy-Authorization: {credentials}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_connect_response(
    buf: bytes | bytearray, proxy: Proxy, *, max_bytes: int, max_count: int
) -> int | None:
    """Check the proxy's answer to CONNECT at the start of ``buf``.

    Returns how many bytes the head used once it is whole, None while it is
    not. Raises :class:`ProxyError` when the proxy refuses (any status but
    2xx: RFC 9110 §9.3.6, "any 2xx (Successful) response indicates that the
    sender ... will switch to tunnel mode"), sends a malformed head, or one
    over ``max_bytes``/``max_count``.
    """
    try:
        parsed = parse_response(buf, max_bytes=max_bytes, max_count=max_count)
    except PayloadTooBig as exc:
        raise ProxyError(f"proxy {proxy.url}: response head too large ({exc})", proxy.url) from None
    except HandshakeError as exc:
        raise ProxyError(f"proxy {proxy.url}: malformed response ({exc})", proxy.url) from None
    if parsed is None:
        return None
    response, used = parsed
    if not 200 <= response.status < 300:
        reason = f" {response.reason}" if response.reason else ""
        raise ProxyError(
            f"proxy {proxy.url} refused the tunnel: HTTP {response.status}{reason}",
            proxy.url,
            response,
        )
    return used


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
