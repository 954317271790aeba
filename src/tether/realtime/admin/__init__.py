"""The official Socket.IO Admin UI (``@socket.io/admin-ui``) against a tether server.

::

    from tether import realtime
    from tether.realtime.admin import BasicAuth, instrument

    server = realtime.Server()
    instrument(server, auth=BasicAuth("admin", "a long password"))

Then open the UI (its files are in the npm package's ``ui/dist``; ``python -m
tether demo`` serves them at ``/admin-ui/``), give it the server's URL and the
credentials. See ``docs/admin-ui.md``.
"""

from __future__ import annotations

from .auth import BasicAuth, Check
from .instrument import AdminUI, instrument

__all__ = ["AdminUI", "BasicAuth", "Check", "instrument"]
