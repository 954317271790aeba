"""realtime/workers/handoff.py: sid prefixes, and requests routed to the
worker that owns their session, in one process: two realtime servers on
ports of their own, each with a Handoff over a real Unix datagram socket
in tmp_path (the processes of ``tether run`` are test_supervisor.py's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtime.sio_helpers import eio_url, http_request, open_polling, running
from tether import realtime
from tether.protocol.http import Headers, Request
from tether.realtime.workers import Handoff, sid_prefix, worker_of
from tether.realtime.workers.handoff import ALPHABET, MAX_WORKERS


def _request(path: str) -> Request:
    return Request(path=path, headers=Headers())


def test_prefixes_are_distinct_url_safe_characters() -> None:
    prefixes = [sid_prefix(i) for i in range(MAX_WORKERS)]
    assert len(set(prefixes)) == MAX_WORKERS == 64
    assert all(len(p) == 1 and p in ALPHABET for p in prefixes)
    with pytest.raises(IndexError):
        sid_prefix(MAX_WORKERS)


@pytest.mark.parametrize(
    ("path", "index"),
    [
        ("/socket.io/?EIO=4&transport=polling", None),
        ("/socket.io/?EIO=4&transport=polling&sid=Cabc", 2),
        ("/socket.io/?EIO=4&sid=_xyz&transport=websocket", 63),
        ("/socket.io/?EIO=4&sid=", None),
        ("/socket.io/?EIO=4&sid=%2Fx", None),  # "/" names no worker
        ("/static/sid=B", None),  # not in the query
    ],
)
def test_worker_of(path: str, index: int | None) -> None:
    assert worker_of(_request(path)) == index


@contextlib.asynccontextmanager
async def _worker(
    directory: Path, index: int, count: int = 2
) -> AsyncIterator[tuple[int, Handoff, realtime.Server]]:
    server = realtime.Server()
    server.engine.sid_prefix = sid_prefix(index)
    async with running(server) as running_server:
        handoff = Handoff(running_server.http, index, count, directory)
        running_server.http.route = handoff.route
        handoff.start()
        try:
            yield running_server.port, handoff, server
        finally:
            handoff.close()


async def test_a_request_reaches_the_worker_that_owns_its_session(tmp_path: Path) -> None:
    async with _worker(tmp_path, 0) as (port_a, a, _), _worker(tmp_path, 1) as (port_b, b, _):
        sid_a, _ = await open_polling(port_a)
        sid_b, _ = await open_polling(port_b)
        assert sid_a[0] == "A" and sid_b[0] == "B" and len(sid_b) == 21
        # B's session through A's port: A hands the connection over, B answers.
        response = await http_request(port_a, "POST", eio_url(sid_b), "40")
        assert (response.status, response.text) == (200, "ok")
        response = await http_request(port_a, "GET", eio_url(sid_b))
        assert response.status == 200 and response.text.startswith("40{"), response
        assert (a.sent, b.adopted) == (2, 2)
        # A's own session through A's port: no handoff.
        response = await http_request(port_a, "POST", eio_url(sid_a), "40")
        assert (response.status, response.text) == (200, "ok")
        assert (a.sent, b.sent, a.adopted) == (2, 0, 0)


async def test_a_dead_or_unknown_worker_is_answered_here(tmp_path: Path) -> None:
    async with _worker(tmp_path, 0) as (port_a, a, _):
        async with _worker(tmp_path, 1) as (port_b, _, _):
            sid_b, _ = await open_polling(port_b)
        # Worker 1 is gone (its socket file stays, unbound): answered by A,
        # "unknown sid", so that the client opens a new session.
        response = await http_request(port_a, "POST", eio_url(sid_b), "40")
        assert response.status == 400 and response.json()["code"] == 1, response
        # A sid naming a worker past the count.
        response = await http_request(port_a, "POST", eio_url("Zxxxx"), "40")
        assert response.status == 400 and response.json()["code"] == 1, response
        assert a.sent == 0
