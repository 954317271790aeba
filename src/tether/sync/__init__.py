"""Blocking clients, for scripts, tests, notebooks, WSGI workers and CLIs.

* :func:`connect` opens a WebSocket connection used with blocking calls
  (:class:`Connection`: ``send``, ``recv(timeout=)``, iteration, ``ping``,
  ``close``).
* :mod:`tether.sync.realtime` has the blocking Socket.IO clients,
  :class:`~tether.sync.realtime.Client` (handlers, reconnection) and
  :class:`~tether.sync.realtime.SimpleClient` (``emit``, ``call``,
  ``receive``); it is imported on its own, so that this module stays small.

Both run the asyncio API on one event loop in a daemon thread
(:mod:`tether.sync.loop`), and raise the asyncio API's exceptions.

::

    import tether.sync

    with tether.sync.connect("ws://127.0.0.1:8765") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))
"""

from __future__ import annotations

from .client import Connection, connect

__all__ = ["Connection", "connect"]
