"""Serving one realtime server on N worker processes behind one port.

``python -m tether run myapp:server --workers N`` (or :func:`run`): a
supervisor binds the socket and keeps N workers alive; each worker accepts
connections itself, and hands a request naming another worker's session to
that worker (:mod:`.handoff`). See docs/workers.md.
"""

from __future__ import annotations

from .handoff import Handoff, sid_prefix, worker_of
from .supervisor import Supervisor, WorkerOptions, run

__all__ = ["Handoff", "Supervisor", "WorkerOptions", "run", "sid_prefix", "worker_of"]
