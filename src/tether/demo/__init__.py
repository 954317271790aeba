"""Three small applications on tether, served on one port by ``python -m tether demo``.

* :mod:`~tether.demo.chat`: a chat on the realtime layer (rooms, presence,
  typing, history, delivery acks, reconnection without loss);
* :mod:`~tether.demo.ticker`: a simulated market streamed over raw
  WebSocket, with conflation for slow clients;
* :mod:`~tether.demo.game`: a multiplayer arena over raw WebSocket with a
  server-authoritative 30 Hz tick;
* :mod:`~tether.demo.app`: the three behind one :func:`tether.serve`, and
  the pages in ``static/``.

See ``docs/demos.md``.
"""

from __future__ import annotations

from .app import DemoApp, main, running

__all__ = ["DemoApp", "main", "running"]
