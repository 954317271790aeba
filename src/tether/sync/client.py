"""The blocking WebSocket client: :func:`connect` and its :class:`Connection`.

A thin layer over the asyncio client (:func:`tether.connect`) and connection
(:class:`tether.Connection`): each call runs the asyncio method on the loop
of :mod:`tether.sync.loop` and blocks until it is done. The options, limits,
exceptions and close codes are the asyncio API's.

Timeouts are applied on the loop's side (:func:`tether.sync.loop.within`
around the asyncio call), never by abandoning a call from the waiting thread:
:meth:`tether.Connection.recv` takes a message off its queue only after it
has been woken, so a ``recv`` cancelled by its timeout leaves the message
that was about to arrive queued for the next call. A thread that stopped
waiting on its own could not tell whether the message had been taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from .. import client as async_client
from ..exceptions import ConnectionClosedOK
from . import loop as sync_loop

if TYPE_CHECKING:
    from types import TracebackType

    from ..connection import Connection as AsyncConnection
    from ..connection import Data, Message
    from ..protocol.http import Request, Response

__all__ = ["Closing", "Connection", "connect", "method_with_options_of", "with_options_of"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound="Closing")


def with_options_of(
    target: Callable[P, object],
) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated function ``target``'s parameters, for type checkers:
    the options are defined once, where they are used, and passed on as given."""

    def decorate(function: Callable[..., R]) -> Callable[P, R]:
        return cast("Callable[P, R]", function)

    return decorate


def method_with_options_of(
    target: Callable[Concatenate[Any, P], object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """:func:`with_options_of` for a method, from the method ``target``
    (``__init__`` for a constructor): ``self``, then its parameters."""

    def decorate(method: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        return cast("Callable[Concatenate[Any, P], R]", method)

    return decorate


class Closing:
    """``with`` support for the blocking clients: :meth:`close` on exit."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    async def closing(self) -> None:
        """What :meth:`close` does, on the loop (at exit, for a client left open)."""
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Connection(Closing):
    """An open WebSocket connection, used from any thread by blocking calls.

    ``str`` is a text message, ``bytes`` binary. Iterating yields messages
    until the peer closes cleanly::

        with tether.sync.connect("ws://127.0.0.1:8765") as ws:
            ws.send("hello")
            for message in ws:
                print(message)

    One thread at a time may wait in :meth:`recv` (as with the asyncio API);
    any thread may send, ping or close meanwhile.
    """

    __slots__ = ("__weakref__", "_loop", "connection")

    def __init__(
        self, connection: AsyncConnection, loop: sync_loop.EventLoopThread = sync_loop.shared
    ) -> None:
        self.connection = connection
        """The asyncio connection underneath (only to be used on its loop)."""
        self._loop = loop
        loop.clients.add(self)

    # -- messages ------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`TimeoutError` when none arrives within ``timeout``
        seconds (``None``: wait for ever); the next message is then still
        there for the next call. Raises
        :class:`~tether.exceptions.ConnectionClosedOK` or
        :class:`~tether.exceptions.ConnectionClosedError` once the
        connection is closed and every message received before was read.
        """
        return self._loop.run(sync_loop.within, timeout, self.connection.recv)

    def __iter__(self) -> Iterator[Message]:
        """Messages until the connection closes: cleanly (1000, 1001, 1005) ends
        the loop, any other way raises
        :class:`~tether.exceptions.ConnectionClosedError`."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def send(self, message: Data | Iterable[Data]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable of ``str`` (or of bytes) is sent as one fragmented
        message, a frame per item; it is read here, in the calling thread,
        before anything is sent. Blocks while the write buffer is above
        ``write_high_water`` (backpressure).
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            message = list(message)  # user code stays off the loop's thread
        self._loop.run(self.connection.send, message)

    def ping(self, data: bytes | None = None, timeout: float | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Raises :class:`TimeoutError` after ``timeout`` seconds without the pong.
        """
        return self._loop.run(sync_loop.within, timeout, self.connection.ping, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (RFC 6455 §7) and wait until it is closed.

        Waits at most ``close_timeout`` for the peer, then drops the
        connection. Closing a closed connection does nothing.
        """
        self._loop.run(self.connection.close, code, reason)

    async def closing(self) -> None:
        await self.connection.close()

    # -- state (read from the asyncio connection: no call to the loop) ----------

    @property
    def open(self) -> bool:
        """Whether messages can be sent."""
        return self.connection.open

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is closed."""
        return self.connection.closed

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if the connection dropped without one; None while open."""
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; None while open."""
        return self.connection.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
        return self.connection.subprotocol

    @property
    def request(self) -> Request | None:
        """The handshake request this client sent."""
        return self.connection.request

    @property
    def response(self) -> Response | None:
        """The handshake response the server answered."""
        return self.connection.response

    @property
    def remote_address(self) -> Any:
        """The server's address as the socket reports it."""
        return self.connection.remote_address

    @property
    def local_address(self) -> Any:
        """This end's address as the socket reports it."""
        return self.connection.local_address

    def __repr__(self) -> str:
        return f"<tether.sync.Connection {self.connection!r}>"


async def _open(uri: str, options: dict[str, Any]) -> AsyncConnection:
    return await async_client.connect(uri, **options)


@with_options_of(async_client.connect)
def connect(uri: str, **options: Any) -> Connection:
    """Open a WebSocket connection to ``uri`` and return it once the opening
    handshake is done; as a context manager, it is closed on exit::

        with tether.sync.connect("ws://127.0.0.1:8765", compression=None) as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

    The options are :func:`tether.connect`'s, passed on as given: ``origin``,
    ``subprotocols``, ``extra_headers``, ``compression``, ``ssl``,
    ``server_hostname``, ``sock``, ``user_agent``, ``logger``, ``limits`` and
    the :class:`tether.Limits` fields (``open_timeout`` bounds this call,
    ``max_message_size`` what the server may send...). Reconnecting with
    ``for connection in ...`` is the asyncio client's alone.

    Raises what :func:`tether.connect` raises (:class:`OSError`,
    :class:`~tether.exceptions.InvalidStatus`, ...), and
    :class:`~tether.exceptions.InvalidState` when called from a thread that
    runs an event loop (use :func:`tether.connect` there).
    """
    return Connection(sync_loop.run(_open, uri, options))
