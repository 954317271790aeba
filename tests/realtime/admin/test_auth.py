"""tether.realtime.admin.auth: what instrument(auth=...) accepts, the
credentials check, and the session ids handed to logged-in UIs."""

from __future__ import annotations

import asyncio

import pytest

from tether.realtime.admin.auth import BasicAuth, Sessions, make_auth


async def test_the_forms_of_auth() -> None:
    good = {"username": "admin", "password": "pass word"}
    forms = [
        BasicAuth("admin", "pass word"),
        ("admin", "pass word"),
        {"type": "basic", "username": "admin", "password": "pass word"},
        {"username": "admin", "password": "pass word"},
        lambda user, password: (user, password) == ("admin", "pass word"),
    ]
    for form in forms:
        auth = make_auth(form)
        assert auth.enabled
        assert await auth.accepts(good)
        for bad in (
            {"username": "admin", "password": "pass wore"},
            {"username": "Admin", "password": "pass word"},
            {"username": "admin"},
            {"username": "admin", "password": ["pass word"]},
            {},
        ):
            assert not await auth.accepts(bad), (form, bad)


async def test_an_async_check_and_a_truthy_non_true_result() -> None:
    async def check(user: str, password: str) -> bool:
        await asyncio.sleep(0)
        return password == "ok"

    assert await make_auth(check).accepts({"username": "u", "password": "ok"})
    # Only True lets in: a check returning a non-empty string by mistake does not.
    assert not await make_auth(lambda u, p: "yes").accepts({"username": "u", "password": "x"})


async def test_auth_false_lets_anyone_in_and_nothing_else_does() -> None:
    assert await make_auth(False).accepts({})
    for missing in (None, True):
        with pytest.raises(ValueError, match="needs auth="):
            make_auth(missing)
    for invalid in ({"type": "jwt"}, {"username": "a", "password": "b", "role": "x"}, 42):
        with pytest.raises(ValueError, match="invalid auth"):
            make_auth(invalid)
    with pytest.raises(ValueError, match="must not be empty"):
        BasicAuth("admin", "")
    with pytest.raises(ValueError, match="bcrypt"):
        BasicAuth("admin", "$2a$10$" + "a" * 53)


def test_sessions_expire_and_are_bounded() -> None:
    sessions = Sessions(limit=2)
    first, second, third = sessions.new(), sessions.new(), sessions.new()
    assert len({first, second, third}) == 3 and len(third) == 32
    assert not sessions.valid(first)  # the oldest, forgotten past the limit
    assert sessions.valid(second) and sessions.valid(third)
    assert not sessions.valid("nope") and not sessions.valid(None)
    expired = Sessions(lifetime=-1.0)
    assert not expired.valid(expired.new())
