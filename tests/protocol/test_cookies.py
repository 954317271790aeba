"""tether.protocol.cookies: the client cookie jar (RFC 6265's basic rules), sans-I/O."""

from __future__ import annotations

import pytest

from tether.protocol.cookies import CookieJar, with_cookies

HOST = "app.example.com"


def header(
    jar: CookieJar, target: str = "/", *, host: str = HOST, secure: bool = False, now: float = 100.0
) -> str | None:
    return jar.header(host, target, secure=secure, now=now)


def test_name_value_sent_back() -> None:
    jar = CookieJar()
    jar.store(["io=abc; Path=/; HttpOnly; SameSite=Lax", "lb=s1"], HOST, "/socket.io/", now=0)
    # Longer paths first (§5.4 step 2): lb=s1 has /socket.io, io=abc has /.
    assert header(jar, "/socket.io/?EIO=4&transport=polling") == "lb=s1; io=abc"
    assert header(jar, "/other") == "io=abc"  # lb's default path is /socket.io
    assert header(jar, host="other.example.com") is None


def test_replaced_by_name_domain_and_path() -> None:
    jar = CookieJar()
    jar.store(["a=1; Path=/"], HOST, "/", now=0)
    jar.store(["a=2; Path=/"], HOST, "/", now=0)
    jar.store(["a=3; Path=/x"], HOST, "/", now=0)
    assert len(jar) == 2
    # Longer paths first (§5.4 step 2).
    assert header(jar, "/x/y") == "a=3; a=2"


@pytest.mark.parametrize(
    ("request_path", "target", "sent"),
    [
        ("/socket.io/", "/socket.io/?x", True),  # default path /socket.io
        ("/socket.io/", "/socket.io", True),
        ("/socket.io/", "/socket.iox", False),
        ("/a", "/b", True),  # default path /
        ("", "/", True),
    ],
)
def test_default_path(request_path: str, target: str, sent: bool) -> None:
    jar = CookieJar()
    jar.store(["k=v"], HOST, request_path, now=0)
    assert (header(jar, target) == "k=v") is sent


def test_max_age_expires_and_removal() -> None:
    jar = CookieJar()
    jar.store(
        ["short=1; Max-Age=10", "dated=2; Expires=Thu, 01 Jan 1970 00:03:20 GMT"], HOST, "/", now=0
    )
    assert header(jar, now=5) == "short=1; dated=2"
    assert header(jar, now=50) == "dated=2"
    assert header(jar, now=250) is None
    assert len(jar) == 0
    # Max-Age wins over Expires; Max-Age=0 or an Expires in the past removes.
    jar.store(["both=1; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=1000"], HOST, "/", now=0)
    assert header(jar, now=500) == "both=1"
    jar.store(["both=gone; Max-Age=0"], HOST, "/", now=600)
    assert header(jar, now=600) is None
    jar.store(["old=1", "old=2; Expires=Thu, 01 Jan 1970 00:00:01 GMT"], HOST, "/", now=600)
    assert header(jar, now=600) is None
    # An unparsable Expires is ignored: a session cookie.
    jar.store(["odd=1; Expires=soon"], HOST, "/", now=0)
    assert header(jar, now=10**9) == "odd=1"


def test_secure_only_over_tls() -> None:
    jar = CookieJar()
    jar.store(["s=1; Secure", "p=2"], HOST, "/", now=0)
    assert header(jar) == "p=2"
    assert header(jar, secure=True) == "s=1; p=2"


def test_domain_attribute() -> None:
    jar = CookieJar()
    jar.store(["wide=1; Domain=.example.com", "host=2"], HOST, "/", now=0)
    jar.store(["foreign=3; Domain=other.com"], HOST, "/", now=0)  # refused (§5.3 step 6)
    assert header(jar) == "wide=1; host=2"
    assert header(jar, host="ws.example.com") == "wide=1"
    assert header(jar, host="example.com") == "wide=1"
    assert header(jar, host="badexample.com") is None
    ip = CookieJar()
    ip.store(["x=1; Domain=0.0.1"], "127.0.0.1", "/", now=0)  # an IP matches only itself
    assert len(ip) == 0


@pytest.mark.parametrize("line", ["novalue", "=v", "a=b\x00c", "a=b\x7f"])
def test_malformed_ignored(line: str) -> None:
    jar = CookieJar()
    jar.store([line], HOST, "/", now=0)
    assert len(jar) == 0


def test_bounded_in_count_and_bytes() -> None:
    jar = CookieJar(max_cookies=3, max_cookie_bytes=16)
    jar.store([f"c{n}=v" for n in range(5)], HOST, "/", now=0)
    assert header(jar) == "c2=v; c3=v; c4=v"  # the oldest evicted
    jar.store(["big=" + "x" * 14], HOST, "/", now=0)
    assert "big" not in (header(jar) or "")
    jar.store(["fits=" + "x" * 12], HOST, "/", now=0)
    assert "fits=" in (header(jar) or "")
    assert [cookie.name for cookie in jar] == ["c3", "c4", "fits"]


def test_with_cookies_merges_into_the_callers_header() -> None:
    assert with_cookies([("X", "1")], None) == [("X", "1")]
    assert with_cookies([("X", "1")], "io=a") == [("X", "1"), ("Cookie", "io=a")]
    assert with_cookies([("cookie", "mine=1"), ("X", "1")], "io=a") == [
        ("cookie", "mine=1; io=a"),
        ("X", "1"),
    ]
