"""The blocking Socket.IO clients: :class:`Client` and :class:`SimpleClient`.

Both drive the asyncio client (:class:`tether.realtime.client.Client`) on the
loop of :mod:`tether.sync.loop`: the protocol, reconnection, buffering while
reconnecting, limits and exceptions are its own.

* :class:`Client` is for programs that react to events: ``@client.on(...)``
  handlers, ``emit(..., callback=)``, ``call``, ``wait``. Handlers run one at
  a time, in the order the events arrived, on a thread of the client's own
  (never on the event loop's): a slow handler delays the next one, not the
  connection, and a handler may call ``emit``/``call`` itself.
* :class:`SimpleClient` is for scripts that ask and read: ``emit``, ``call``,
  and ``receive()`` for the next event.

::

    from tether.sync.realtime import SimpleClient

    with SimpleClient() as client:
        client.connect("http://127.0.0.1:8000", auth={"token": "secret"})
        print(client.call("echo", "hello", timeout=5))
        event, *args = client.receive(timeout=5)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from ..exceptions import Disconnected, InvalidState
from ..realtime.client import client as async_realtime
from ..realtime.client.events import CATCH_ALL
from ..realtime.protocol.socketio import DEFAULT_NAMESPACE
from . import loop as sync_loop
from .client import Closing, method_with_options_of

__all__ = ["CATCH_ALL", "Client", "SimpleClient"]

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...], "concurrent.futures.Future[Any]"]


class HandlerThread:
    """Runs functions one at a time, in the order given, on a daemon thread
    started on first use: a handler that never returns does not keep the
    interpreter from exiting, and handlers still run while it exits (the
    ``"disconnect"`` ones of a client closed then)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue ``function(*args)``; its result (or exception) in the future returned."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._stopped:
                raise InvalidState("the client is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put((function, args, future))
        return future

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            function, args, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except Exception as exc:
                    future.set_exception(exc)

    def on_it(self) -> bool:
        """Whether the caller runs on this thread (in a handler)."""
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def drain(self) -> None:
        """Wait until what was queued before has run (at once from a handler,
        which would otherwise wait for itself, or once stopped)."""
        if not self.on_it() and not self._stopped:
            self.submit(_nothing).result()

    async def drained(self) -> None:
        """:meth:`drain`, for the event loop."""
        if not self._stopped:
            await asyncio.wrap_future(self.submit(_nothing))

    def stop(self) -> None:
        """Run what is queued, then end the thread (without waiting for it from a handler)."""
        with self._lock:
            thread, self._stopped = self._thread, True
        if thread is not None:
            self._queue.put(None)
            if thread.ident != threading.get_ident():
                thread.join()


def _nothing() -> None:
    pass


class Client(Closing):
    """A blocking Socket.IO client, in the shape of python-socketio's ``Client``.

    The options are those of :class:`tether.realtime.client.Client`, passed
    on as given (``reconnection``, ``reconnection_attempts``,
    ``reconnection_delay``, ``transports``, ``connect_timeout``,
    ``max_buffered``, ``limits``, ``logger``)::

        client = Client(transports=("polling", "websocket"))

        @client.on("news")
        def news(headline):
            print(headline)

        client.connect("http://127.0.0.1:8000")
        client.wait()  # until disconnected for good
    """

    @method_with_options_of(async_realtime.Client.__init__)
    def __init__(self, **options: Any) -> None:
        self.client = async_realtime.Client(**options)
        """The asyncio client underneath (only to be used on its loop)."""
        self._loop = sync_loop.shared
        # One thread runs every handler, in order: handlers see events in the
        # order they arrived, as with the asyncio client's plain functions.
        self._handlers = HandlerThread("tether.sync.realtime handlers")
        self._waiting: set[asyncio.Task[Any]] = set()  # emits with a callback, on the loop
        self._loop.clients.add(self)

    # -- handlers --------------------------------------------------------------

    @overload
    def on(
        self, event: str, handler: None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Callable[[H], H]: ...

    @overload
    def on(self, event: str, handler: H, *, namespace: str = DEFAULT_NAMESPACE) -> H: ...

    def on(
        self, event: str, handler: H | None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> H | Callable[[H], H]:
        """Register ``handler`` (a plain function) for ``event`` in ``namespace``;
        usable as a decorator.

        It runs on the client's handler thread with the event's arguments; its
        return value answers the server's acknowledgement when one was asked
        for. The special events are the asyncio client's: ``"connect"``,
        ``"disconnect"`` (the reason), ``"connect_error"`` (the exception),
        and ``"*"`` (any event without a handler of its own, its name first).
        """

        def register(handler: H) -> H:
            if inspect.iscoroutinefunction(handler):
                # It would run on no loop: its coroutine would never be awaited.
                raise TypeError(
                    "the blocking client's handlers are plain functions; "
                    "tether.realtime.client.Client takes coroutine functions"
                )
            self.client.on(event, self._off_the_loop(handler), namespace=namespace)
            return handler

        if handler is not None:
            return register(handler)
        return register

    def _off_the_loop(self, handler: Handler) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def run_on_handler_thread(*args: Any) -> Any:
            # Run on the loop by the asyncio client, which sends the result
            # back as the acknowledgement. A coroutine function, so that the
            # client counts it in max_handler_tasks before it starts: at most
            # that many events wait for the handler thread, and the rest wait
            # in the client's table, bounded in bytes (max_pending_bytes).
            return await asyncio.wrap_future(self._handlers.submit(handler, *args))

        run_on_handler_thread.__name__ = getattr(handler, "__name__", "handler")
        return run_on_handler_thread

    # -- connecting --------------------------------------------------------------

    @method_with_options_of(async_realtime.Client.connect)
    def connect(self, url: str, **options: Any) -> None:
        """Connect to ``url`` and join the namespaces; return once the server
        accepted every one.

        The options are :meth:`tether.realtime.client.Client.connect`'s
        (``namespaces``, ``auth``, ``headers``, ``path``, ``ssl``), as are the
        exceptions: :class:`~tether.exceptions.ConnectionRefused`,
        :class:`TimeoutError` after ``connect_timeout``, :class:`OSError`...
        """
        self._loop.run(self.client.connect, url, **options)

    def disconnect(self) -> None:
        """Leave every namespace, close the connection and stop reconnecting;
        return once the ``"disconnect"`` handlers have run (called from a
        handler: at once, and they run after it)."""
        self._loop.run(self.client.disconnect)
        if not self._handlers.on_it():
            # Events waiting for a handler slot (max_handler_tasks) are not on
            # the handler thread yet, nor the "disconnect" handler behind them.
            self._loop.run(self.client._handlers.settled)
        self._handlers.drain()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client is disconnected for good (by :meth:`disconnect`,
        by the server, or when reconnection gives up); False after ``timeout``."""
        future = self._loop.start(self.client.wait)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # waiting on an Event: nothing is lost
            return False
        return True

    async def closing(self) -> None:
        await self.client.disconnect()
        await self._handlers.drained()

    def close(self) -> None:
        """:meth:`disconnect`, then stop the handler thread (from a handler:
        once the handlers queued are done)."""
        self.disconnect()
        self._handlers.stop()

    # -- emitting ---------------------------------------------------------------

    def emit(
        self,
        event: str,
        *args: Any,
        namespace: str = DEFAULT_NAMESPACE,
        callback: Handler | None = None,
    ) -> None:
        """Send an event with ``args`` (JSON-able values, ``bytes`` anywhere in them).

        With ``callback``, the server is asked for an acknowledgement, and
        ``callback`` runs with its arguments on the handler thread when it
        comes (never, if the connection is lost first). While reconnecting,
        the event waits in the buffer. Raises
        :class:`~tether.exceptions.Disconnected` when the client is not
        connected and not reconnecting.
        """
        if callback is None:
            self._loop.run(self.client.emit, event, *args, namespace=namespace)
        else:
            self._loop.run(self._emit_with_callback, event, args, namespace, callback)

    async def _emit_with_callback(
        self, event: str, args: tuple[Any, ...], namespace: str, callback: Handler
    ) -> None:
        call = self.client.emit_with_ack(event, *args, timeout=None, namespace=namespace)
        task = asyncio.get_running_loop().create_task(call)
        # The event is sent (or refused) by the task's first step, which runs
        # before this coroutine resumes: a refusal is raised to the caller.
        await asyncio.sleep(0)
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error
        self._waiting.add(task)  # a strong reference until the ack (the loop keeps a weak one)
        task.add_done_callback(lambda done: self._callback(done, callback))

    def _callback(self, done: asyncio.Task[Any], callback: Handler) -> None:
        self._waiting.discard(done)
        if done.cancelled() or done.exception() is not None:
            return  # lost with the connection: python-socketio never calls it either
        value = done.result()
        values = () if value is None else value if isinstance(value, tuple) else (value,)
        self._handlers.submit(self._run_callback, callback, values)

    def _run_callback(self, callback: Handler, values: tuple[Any, ...]) -> None:
        try:
            callback(*values)
        except Exception:
            self.client.logger.exception("error in acknowledgement callback %s", callback)

    def call(
        self,
        event: str,
        *args: Any,
        timeout: float | None = 60.0,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Any:
        """Send an event and return the server's acknowledgement: ``None`` for
        none, the argument, or a tuple of several.

        Raises :class:`~tether.exceptions.AckTimeout` (a :class:`TimeoutError`)
        after ``timeout`` seconds, :class:`~tether.exceptions.Disconnected`
        when the connection is lost before the event reached the server.
        """
        return self._loop.run(
            self.client.emit_with_ack, event, *args, timeout=timeout, namespace=namespace
        )

    # -- state -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether every namespace still in use is connected."""
        return self.client.connected

    @property
    def transport(self) -> str | None:
        """The current transport, ``"websocket"`` or ``"polling"``; None when disconnected."""
        return self.client.transport

    def sid(self, namespace: str = DEFAULT_NAMESPACE) -> str | None:
        """The id the server gave this client in ``namespace``, or None."""
        return self.client.sid(namespace)


#: An event for :meth:`SimpleClient.receive`: ``[event, *args]``, and the
#: future its handler waits on until the event is read.
_Received = tuple[list[Any], "asyncio.Future[None]"]


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _on_loop_of(loop: asyncio.AbstractEventLoop, function: Callable[..., None], *args: Any) -> None:
    """``function(*args)`` on ``loop``'s thread, unless the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(function, *args)


class SimpleClient(Closing):
    """A blocking Socket.IO client for scripts, in the shape of python-socketio's
    ``SimpleClient``: one namespace, events read with :meth:`receive`.

    The options are :class:`Client`'s (those of
    :class:`tether.realtime.client.Client`); reconnection is on, as there.
    An event not yet taken by :meth:`receive` holds one of the client's
    handler slots (``limits.max_handler_tasks``, 16 by default), and events
    that come while every slot is held wait behind them, up to
    ``limits.max_pending_bytes`` (1 MiB), past which the client drops the
    connection and reconnects: a script that stops reading costs that much,
    not an unbounded queue.
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.client: Client | None = None
        self.namespace = DEFAULT_NAMESPACE
        self._events: queue.Queue[_Received | None] = queue.Queue()
        self._done: concurrent.futures.Future[None] | None = None

    def connect(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        transports: tuple[str, ...] | None = None,
        **options: Any,
    ) -> None:
        """Connect to ``url`` and join ``namespace``.

        ``transports`` (e.g. ``("polling", "websocket")``) overrides the
        client option; the other options are :meth:`Client.connect`'s
        (``auth``, ``headers``, ``path``, ``ssl``).
        """
        if self.client is not None and self.client.client.connected:
            raise Disconnected("already connected: disconnect() first")
        client_options = dict(self.options)
        if transports is not None:
            client_options["transports"] = transports
        client = Client(**client_options)
        self.namespace = namespace
        events: queue.Queue[_Received | None] = queue.Queue()
        self._events = events
        unread: set[asyncio.Future[None]] = set()  # on the loop only

        async def record(event: str, *args: Any) -> None:
            # On the loop, to a thread-safe queue; the handler (and its slot)
            # lasts until receive() took the event. No acknowledgement is
            # asked of a script (it answers with none).
            taken = asyncio.get_running_loop().create_future()
            unread.add(taken)
            events.put(([event, *args], taken))
            try:
                await taken
            finally:
                unread.discard(taken)

        def release_all() -> None:
            for taken in list(unread):
                _set_done(taken)

        client.client.on(CATCH_ALL, record, namespace=namespace)
        try:
            client.connect(url, namespaces=[namespace], **options)
        except BaseException:
            client.close()
            raise
        self.client = client
        # None in the queue: disconnected for good, receive() raises; the
        # handlers of events never read end.
        self._done = sync_loop.shared.start(client.client.wait)
        loop = sync_loop.shared.loop

        def finished(_: object) -> None:
            events.put(None)
            _on_loop_of(loop, release_all)

        self._done.add_done_callback(finished)

    def _connected_client(self) -> Client:
        if self.client is None:
            raise Disconnected("the client is not connected")
        return self.client

    def emit(self, event: str, *args: Any) -> None:
        """Send an event to the server (see :meth:`Client.emit`)."""
        self._connected_client().emit(event, *args, namespace=self.namespace)

    def call(self, event: str, *args: Any, timeout: float | None = 60.0) -> Any:
        """Send an event and return the acknowledgement (see :meth:`Client.call`)."""
        return self._connected_client().call(
            event, *args, timeout=timeout, namespace=self.namespace
        )

    def receive(self, timeout: float | None = None) -> list[Any]:
        """The next event from the server, as ``[event, *args]``.

        Raises :class:`TimeoutError` when none arrives within ``timeout``
        seconds, :class:`~tether.exceptions.Disconnected` once the client is
        disconnected for good and every event received before was read.
        """
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout} s") from None
        if item is None:
            self._events.put(None)  # for the next call too
            raise Disconnected("the client is disconnected")
        event, taken = item
        _on_loop_of(taken.get_loop(), _set_done, taken)  # its handler slot is free
        return event

    def disconnect(self) -> None:
        """Disconnect from the server (nothing happens if not connected)."""
        if self.client is not None:
            self.client.close()

    def close(self) -> None:
        """:meth:`disconnect` (for ``with``)."""
        self.disconnect()

    async def closing(self) -> None:
        if self.client is not None:
            await self.client.closing()

    @property
    def connected(self) -> bool:
        """Whether the client is connected."""
        return self.client is not None and self.client.connected

    @property
    def sid(self) -> str | None:
        """The id the server gave this client, or None."""
        return self.client.sid(self.namespace) if self.client is not None else None

    @property
    def transport(self) -> str | None:
        """The current transport, or None when disconnected."""
        return self.client.transport if self.client is not None else None
