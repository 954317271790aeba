"""Rate-limited reports of ``accept()`` failing, for :class:`tether.Server`.

At the file-descriptor limit (EMFILE, ENFILE) asyncio's selector loop backs
off for a second, but first retries up to ``backlog`` times, logging a
traceback each time through the loop's exception handler and scheduling a
retry each time: megabytes of logs a minute. :class:`AcceptFailureFilter`
turns those reports into one line per interval (with the count), and drops
the retries still pending once the server is closed, which fail on the closed
socket; every other report goes to the handler that was there before. uvloop
does not report these failures.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from .ratelimit import LogLimiter

__all__ = ["AcceptFailureFilter"]

#: What asyncio's selector loop reports, through the loop's exception handler,
#: when accept() fails for want of file descriptors or memory.
_ACCEPT_FAILED = "socket.accept() out of system resource"


class AcceptFailureFilter:
    """The loop's exception handler while a server listens on ``sockets()``."""

    __slots__ = ("_installed", "_log", "_sockets")

    def __init__(
        self, logger: logging.Logger, sockets: Callable[[], tuple[socket.socket, ...]]
    ) -> None:
        self._log = LogLimiter(logger)
        self._sockets = sockets
        self._installed: tuple[asyncio.AbstractEventLoop, Any, Any] | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Rate-limit the loop's reports of accept() failing on our sockets."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            sock = context.get("socket")
            if (
                sock is not None
                and context.get("message") == _ACCEPT_FAILED
                and any(s.fileno() == sock.fileno() for s in self._sockets())
            ):
                error = context.get("exception")
                message = "accept() failed (%s); retrying every second"
                self._log.log(logging.ERROR, "accept", message, error)
                return
            if _stale_accept_retry(context):
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        self._installed = (loop, handler, previous)

    def uninstall(self) -> None:
        """Give the loop its handler back, once the pending retries have run."""
        if self._installed is not None:
            loop, handler, previous = self._installed
            self._installed = None

            def uninstall() -> None:
                # Unless someone set another handler since, which stays.
                if loop.get_exception_handler() is handler:
                    loop.set_exception_handler(previous)

            # After the retries asyncio scheduled (a second away) have run.
            loop.call_later(2.0, uninstall)


def _stale_accept_retry(context: dict[str, Any]) -> bool:
    """Whether the loop reports a retry of accept() that failed because its
    listening socket was closed meanwhile: nothing is wrong."""
    handle = context.get("handle")
    callback = getattr(handle, "_callback", None)
    args: tuple[Any, ...] = getattr(handle, "_args", None) or ()
    return (
        getattr(callback, "__name__", "") == "_start_serving"
        and len(args) > 1
        and isinstance(args[1], socket.socket)
        and args[1].fileno() == -1
    )
