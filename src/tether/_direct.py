"""Writing a broadcast frame to a socket at once, past the transport, when the
transport has nothing buffered.

uvloop's ``transport.write`` copies a write into its own buffer and sends it
later in the loop iteration (its check phase), even when nothing is waiting to
go out, and sends with ``write(2)``. When the transport has nothing buffered,
writing straight to its socket sends the same bytes in the same order (nothing
of the transport's can be behind them), and what the kernel does not take goes
to the transport, which then owns the order and the backpressure as before.
picows does the same (``_fast_write``).

Used by ``Connection.write_shared``: a fan-out makes one write per member,
and there it pays (docs/performance.md, the fan-out rows). A connection's own
frames keep the end-of-iteration flush through ``transport.write``: written
past the transport, they measured no better on this machine, within its noise.

The optional C extension ``_sendnow`` sends with ``send(2)``, cheaper in the
kernel than ``write(2)`` on a socket; without it (no compiler, or
``TETHER_NO_SPEEDUPS`` set) :func:`os.write` does, with the same results.

Only for transports whose socket carries the bytes as written: uvloop's TCP
and Unix transports. TLS transports (their ``socket`` extra is the encrypted
one), the stdlib's (whose ``write`` already sends at once) and any other kind
keep ``transport.write``.

A transport's file descriptor is valid until it closes; the callers check
``transport.is_closing()`` before each write, and uvloop closes the
descriptor only after ``is_closing()`` has turned true.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import Any

from .protocol.speedups import load_extension

__all__ = ["HAVE_SENDNOW", "direct_fd", "fanout", "send_now"]

#: The transport classes written to directly, by (module, name): uvloop's,
#: named so that uvloop (an optional extra) need not be imported.
_DIRECT = frozenset({("uvloop.loop", "TCPTransport"), ("uvloop.loop", "UnixTransport")})

_known: dict[type, bool] = {}


def _write_py(fd: int, data: bytes | memoryview) -> int:
    """The fallback of ``_sendnow.send``: ``write(2)``; 0 when the buffer is full."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


_c = load_extension("tether._sendnow")
#: Whether the C ``send(2)`` is in use (else :func:`os.write`).
HAVE_SENDNOW = _c is not None
_send: Callable[[int, bytes | memoryview], int] = _c.send if _c is not None else _write_py

#: The C loop of a broadcast (``_sendnow.fanout``), or None without the extension:
#: ``fanout(connections, frame, State.OPEN, fallback) -> (sent, last)``. Per
#: connection it makes ``Connection.write_shared``'s direct write itself when
#: every condition of it holds (known descriptor, nothing queued or buffered,
#: open, not mid-fragment) and calls ``fallback(connection)`` otherwise, so a
#: delivery costs no Python frame (docs/performance.md, raw fan-out).
fanout: Callable[[Iterable[Any], bytes, object, Callable[[Any], bool]], tuple[int, Any]] | None
fanout = _c.fanout if _c is not None else None


def direct_fd(transport: asyncio.BaseTransport) -> int:
    """The socket's file descriptor if ``transport`` may be written past; else -1."""
    kind = type(transport)
    direct = _known.get(kind)
    if direct is None:
        direct = _known[kind] = (kind.__module__, kind.__name__) in _DIRECT
    if not direct or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def send_now(fd: int, transport: asyncio.Transport, data: bytes) -> None:
    """Write ``data``: to ``fd`` at once, the rest (if any) to ``transport``.

    The caller has checked that ``transport`` is open and has nothing
    buffered. An error other than a full socket buffer is left to the
    transport's own write to meet and report (``connection_lost``).
    """
    try:
        sent = _send(fd, data)
    except OSError:
        transport.write(data)
        return
    if sent < len(data):
        transport.write(memoryview(data)[sent:] if sent else data)
