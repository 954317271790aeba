"""The event loop behind the blocking clients: one per process, in a daemon thread.

Every blocking call of :mod:`tether.sync` is a coroutine of the asyncio layer
submitted to this loop with :func:`asyncio.run_coroutine_threadsafe`; the
calling thread waits for its result. There is one loop for the whole process,
not one per client: a script or a test that opens many clients does not get a
thread each, and no client's callback ever runs on it (the realtime client's
handlers run on a thread of their own), so clients cannot hold each other up.

The thread starts with the first client, is a daemon (it never keeps the
interpreter alive), and is stopped at interpreter exit: the clients still
open are closed first, for at most :data:`GRACE` seconds, and what is left
after that is dropped. After :func:`os.fork` the child starts a loop of its
own.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar

from ..exceptions import InvalidState

__all__ = [
    "GRACE",
    "Closeable",
    "EventLoopThread",
    "check_no_running_loop",
    "run",
    "shared",
    "within",
]

T = TypeVar("T")
P = ParamSpec("P")

GRACE = 1.0
"""Seconds given at exit to close the clients left open, then to the tasks left."""


class Closeable(Protocol):
    """A client :meth:`EventLoopThread.stop` closes if its owner did not."""

    async def closing(self) -> None:
        """Close, on the loop."""


class EventLoopThread:
    """An asyncio event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str = "tether.sync") -> None:
        self.name = name
        self.clients: weakref.WeakSet[Closeable] = weakref.WeakSet()
        """The clients that use the loop, closed (for at most ``grace``
        seconds) when it stops: a script that never closed its connection
        still says goodbye to the server at exit."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started now if it is not (or not in this process)."""
        with self._lock:
            loop = self._loop
            if loop is None or self._pid != os.getpid() or loop.is_closed():
                loop = self._loop = asyncio.new_event_loop()
                started = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(loop, started), name=self.name, daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
                started.wait()
            return loop

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, or None before the first use."""
        return self._thread

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            # What is still running is cancelled, and what does not end soon
            # after is dropped, with the transports, when the loop closes.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(
        self, function: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Run ``function(*args, **kwargs)``, a coroutine function, on the loop,
        without waiting for it. The coroutine is made on the loop's thread (a
        misuse raises before any exists)."""
        check_no_running_loop()

        async def call() -> T:
            return await function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), self.loop)

    def run(
        self, function: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``function(*args, **kwargs)`` on the loop and block until it is done.

        The coroutine bounds its own time (every blocking call of
        :mod:`tether.sync` puts its timeout inside it, on the loop's side,
        where cancelling is safe: see :func:`within`). If the waiting thread
        is interrupted (``KeyboardInterrupt``), the coroutine is cancelled.
        """
        future = self.start(function, *args, **kwargs)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Close the clients still open (for at most :data:`GRACE` seconds),
        stop the loop, and wait (at most ``timeout``) for its thread to end."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid() or loop.is_closed():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close_clients(), loop)
        with contextlib.suppress(Exception):
            closing.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)

    async def _close_clients(self) -> None:
        closings = [asyncio.ensure_future(client.closing()) for client in list(self.clients)]
        if closings:
            await asyncio.wait(closings, timeout=GRACE)


def check_no_running_loop() -> None:
    """Raise :class:`InvalidState` when called from a thread running an event loop.

    A blocking call there would stop that loop until it returned, and
    deadlock if what it waits for needs that loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InvalidState(
        "tether.sync blocks the calling thread and cannot be used inside a running "
        "event loop; await the asyncio API (tether.connect, tether.realtime.Client) there"
    )


shared = EventLoopThread()
"""The loop every blocking client of the process uses."""

atexit.register(shared.stop)


def run(function: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``function(*args, **kwargs)`` on the shared loop and block until it is done."""
    return shared.run(function, *args, **kwargs)


async def within(timeout: float | None, function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await ``function(*args)`` for at most ``timeout`` seconds (None: no limit),
    then raise :class:`TimeoutError`; on the loop, in the task that awaits.

    The timer cancels the task at its await point, as ``asyncio.timeout``
    does (Python 3.11+), and unlike ``asyncio.wait_for``: with a timeout of
    0, what is ready at once (a message already queued) is still returned.
    A message :meth:`tether.Connection.recv` was about to return when the
    timer fired is not lost: recv takes it off its queue only after it is
    woken, so the cancellation leaves it there for the next call.
    """
    if timeout is None:
        return await function(*args)
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await function(*args)
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError(f"timed out after {timeout} s") from None
        raise
    finally:
        timer.cancel()
