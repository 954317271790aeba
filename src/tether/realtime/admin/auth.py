"""Who may open the Admin UI: the credentials check and the sessions it hands out.

The official UI sends ``{"username": ..., "password": ...}`` as the connect
auth of the admin namespace; once accepted, the server emits ``session`` with
an id that the UI keeps (in the browser's localStorage) and sends instead
(``{"sessionId": ...}``) when the page is reloaded.
"""

from __future__ import annotations

import hmac
import inspect
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Auth", "BasicAuth", "Check", "Sessions", "make_auth"]

#: ``check(username, password) -> bool`` (may be async): credentials checked
#: by your own code (a bcrypt or argon2 hash, an LDAP bind...).
Check = Callable[[str, str], "bool | Awaitable[bool]"]

# Hashes of the Node server's bcryptjs: tether does not check them itself.
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True)
class BasicAuth:
    """One username and its password, compared in constant time
    (:func:`hmac.compare_digest`)."""

    username: str
    password: str

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("the Admin UI's username and password must not be empty")
        if self.password.startswith(_BCRYPT_PREFIXES):
            raise ValueError(
                "a bcrypt hash is not checked by tether: give the plain password, "
                "or auth=check with check(username, password) verifying the hash"
            )

    def check(self, username: str, password: str) -> bool:
        # Both compared, whatever the first gives: the time does not say which was wrong.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok


class Auth:
    """The credentials check of an instrumented server (``None``: anyone)."""

    def __init__(self, check: Check | None) -> None:
        self._check = check

    @property
    def enabled(self) -> bool:
        return self._check is not None

    async def accepts(self, credentials: dict[str, Any]) -> bool:
        """Whether ``credentials`` (the connect auth) hold a valid username
        and password."""
        if self._check is None:
            return True
        username = credentials.get("username")
        password = credentials.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        result = self._check(username, password)
        if inspect.isawaitable(result):
            result = await result
        return result is True


def make_auth(auth: Any) -> Auth:
    """The :class:`Auth` for ``instrument(auth=...)``: ``False`` (no
    authentication, explicitly), a :class:`BasicAuth`, a ``(username,
    password)`` pair, a dict ``{"username": ..., "password": ...}`` (the Node
    server's ``{"type": "basic", ...}`` is taken too) or a :data:`Check`.
    ``None`` (not given) is refused: authentication is on by default."""
    if auth is False:
        return Auth(None)
    if auth is None or auth is True:
        raise ValueError(
            "instrument() needs auth=: BasicAuth(username, password), a (username, password) "
            "pair, a check(username, password) function, or auth=False to allow anyone"
        )
    if isinstance(auth, dict):
        extra = set(auth) - {"type", "username", "password"}
        if auth.get("type", "basic") != "basic" or extra:
            raise ValueError(f"invalid auth dict: {sorted(auth)}")
        auth = BasicAuth(auth.get("username", ""), auth.get("password", ""))
    elif isinstance(auth, tuple) and len(auth) == 2:
        auth = BasicAuth(*auth)
    if isinstance(auth, BasicAuth):
        return Auth(auth.check)
    if callable(auth):
        return Auth(auth)
    raise ValueError(f"invalid auth: {type(auth).__name__}")


class Sessions:
    """The session ids handed to logged-in UIs, in this process: each valid for
    ``lifetime`` seconds; at most ``limit`` kept (the oldest forgotten first)."""

    def __init__(self, lifetime: float = 86400.0, limit: int = 1000) -> None:
        self._lifetime = lifetime
        self._limit = limit
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def new(self) -> str:
        session_id = secrets.token_hex(16)
        self._expiry[session_id] = time.monotonic() + self._lifetime
        while len(self._expiry) > self._limit:
            self._expiry.popitem(last=False)
        return session_id

    def valid(self, session_id: Any) -> bool:
        if not isinstance(session_id, str):
            return False
        expiry = self._expiry.get(session_id)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._expiry[session_id]
            return False
        return True
