"""A small client cookie jar (RFC 6265's basic rules), sans-I/O.

Enough for cookie-sticky load balancers (tether's ``cookie=`` option,
socket.io's ``io`` cookie, HAProxy ``cookie ... insert``): the jar stores the
``Set-Cookie`` values of one client's responses and gives the ``Cookie``
header of its later requests. It keeps name and value (§5.2), ``Path``
(§5.2.4, default-path of §5.1.4), ``Domain`` (§5.2.3: host-only unless a
Domain the host domain-matches, §5.1.3), ``Expires``/``Max-Age`` (§5.2.1,
§5.2.2: Max-Age wins; in the past removes) and ``Secure`` (§5.4: only sent
over https/wss). ``HttpOnly`` and ``SameSite`` concern browsers only.

Bounded: at most ``max_cookies`` cookies of at most ``max_cookie_bytes``
(name and value) each; the oldest is evicted first (§6.1's minimums are 50
and 4096).

>>> jar = CookieJar()
>>> jar.store(["io=abc; Path=/; HttpOnly"], "example.com", "/socket.io/", now=0.0)
>>> jar.header("example.com", "/socket.io/?EIO=4", secure=False, now=1.0)
'io=abc'
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Cookie", "CookieJar", "with_cookies"]

MAX_COOKIES = 50
MAX_COOKIE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Cookie:
    """One stored cookie."""

    name: str
    value: str
    domain: str
    host_only: bool
    path: str
    secure: bool
    expires: float | None  # seconds since the epoch; None: until the client ends


class CookieJar:
    """The cookies of one client, keyed by (domain, path, name) as §5.3 step 11."""

    def __init__(
        self, *, max_cookies: int = MAX_COOKIES, max_cookie_bytes: int = MAX_COOKIE_BYTES
    ) -> None:
        self.max_cookies = max_cookies
        self.max_cookie_bytes = max_cookie_bytes
        self._cookies: dict[tuple[str, str, str], Cookie] = {}

    def __len__(self) -> int:
        return len(self._cookies)

    def __iter__(self) -> Iterator[Cookie]:
        return iter(list(self._cookies.values()))

    def store(self, set_cookies: Iterable[str], host: str, path: str, *, now: float) -> None:
        """Store the ``Set-Cookie`` values of a response to ``host`` for ``path``."""
        for line in set_cookies:
            cookie = self._parse(line, host.lower(), path, now)
            if cookie is None:
                continue
            key = (cookie.domain, cookie.path, cookie.name)
            self._cookies.pop(key, None)
            if cookie.expires is not None and cookie.expires <= now:
                continue  # §5.3 step 11: an expired cookie removes the old one
            self._cookies[key] = cookie
            while len(self._cookies) > self.max_cookies:
                del self._cookies[next(iter(self._cookies))]  # the oldest

    def header(self, host: str, target: str, *, secure: bool, now: float) -> str | None:
        """The ``Cookie`` value for a request to ``host`` with ``target`` (§5.4), or None."""
        host = host.lower()
        path = target.split("?", 1)[0] or "/"
        for key, cookie in list(self._cookies.items()):
            if cookie.expires is not None and cookie.expires <= now:
                del self._cookies[key]
        chosen = [
            cookie
            for cookie in self._cookies.values()
            if (cookie.domain == host if cookie.host_only else _domain_match(host, cookie.domain))
            and _path_match(path, cookie.path)
            and (secure or not cookie.secure)
        ]
        if not chosen:
            return None
        # §5.4 step 2: longer paths first; dicts keep creation order for ties.
        chosen.sort(key=lambda cookie: -len(cookie.path))
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in chosen)

    def _parse(self, line: str, host: str, request_path: str, now: float) -> Cookie | None:
        # §5.2: name=value, then ";"-separated attributes; a pair with no "="
        # or an empty name is ignored.
        pair, *attributes = line.split(";")
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or len(name) + len(value) > self.max_cookie_bytes:
            return None
        if any(c in name + value for c in "\r\n\0") or not value.isprintable():
            return None
        domain, path, secure = "", "", False
        expires: float | None = None
        max_age: float | None = None
        for attribute in attributes:
            key, _, arg = attribute.partition("=")
            key, arg = key.strip().lower(), arg.strip()
            if key == "expires":
                expires = _parse_date(arg, expires)
            elif key == "max-age":
                if arg.lstrip("-").isdigit():
                    max_age = now + int(arg) if int(arg) > 0 else float("-inf")
            elif key == "domain" and arg:
                domain = arg.lstrip(".").lower()
            elif key == "path" and arg.startswith("/"):
                path = arg
            elif key == "secure":
                secure = True
        if domain and not _domain_match(host, domain):
            return None  # §5.3 step 6: a Domain the host does not match
        return Cookie(
            name,
            value,
            domain or host,
            not domain,
            path or _default_path(request_path),
            secure,
            max_age if max_age is not None else expires,
        )


def with_cookies(headers: Iterable[tuple[str, str]], cookies: str | None) -> list[tuple[str, str]]:
    """``headers`` with the jar's ``cookies`` added: to the caller's own
    ``Cookie`` header if there is one (§5.4: a request has one Cookie header),
    else as a new one.

    >>> with_cookies([("Cookie", "a=1")], "io=x")
    [('Cookie', 'a=1; io=x')]
    """
    result = list(headers)
    if cookies is None:
        return result
    for index, (name, value) in enumerate(result):
        if name.lower() == "cookie":
            result[index] = (name, f"{value}; {cookies}")
            return result
    result.append(("Cookie", cookies))
    return result


def _parse_date(text: str, default: float | None) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return default  # §5.2.1: an unparsable Expires is ignored


def _default_path(request_path: str) -> str:
    # §5.1.4: the request path up to, not including, its last "/".
    path = request_path.split("?", 1)[0]
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def _domain_match(host: str, domain: str) -> bool:
    # §5.1.3; a bare IP address only matches itself.
    if host == domain:
        return True
    return host.endswith("." + domain) and not host.replace(".", "").isdigit()


def _path_match(path: str, cookie_path: str) -> bool:
    # §5.1.4
    if path == cookie_path:
        return True
    if path.startswith(cookie_path):
        return cookie_path.endswith("/") or path[len(cookie_path)] == "/"
    return False
