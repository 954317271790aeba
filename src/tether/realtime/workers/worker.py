"""One worker process of ``tether run --workers N`` (started by the supervisor).

``python -m tether.realtime.workers.worker --fd FD --index I --count N
--runtime DIR [--loop uvloop] APP``: serves APP's realtime server on the listening socket FD
it inherited, its sids starting with its own character, and hands requests
naming another worker's session to that worker (:mod:`.handoff`). SIGTERM or
SIGINT shut it down gracefully (``realtime.serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from ... import _loops
from ..server.serving import serve
from .app import load, share_rooms
from .handoff import Handoff, set_done, sid_prefix
from .metrics import TOKEN_ENV, WorkersEndpoint

__all__ = ["main"]

_log = logging.getLogger("tether.workers")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tether.realtime.workers.worker")
    parser.add_argument("app", help="module:attribute of the realtime.Server")
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--runtime", type=Path, required=True, help="the handoff sockets' folder")
    parser.add_argument("--redis", default=None, help="Redis URL for the shared adapter")
    parser.add_argument("--cluster", default=None, help="the cluster hub's Unix socket")
    parser.add_argument(
        "--parent-fd", type=int, default=None, help="a pipe that ends when the supervisor does"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--loop", choices=_loops.LOOPS, default="asyncio")
    parser.add_argument(
        "--metrics", default=None, metavar="PATH", help="serve every worker's metrics on PATH"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = load(args.app)
    server.engine.sid_prefix = sid_prefix(args.index)
    share_rooms(server, redis=args.redis, cluster=args.cluster)
    listening = socket.socket(fileno=args.fd)
    metrics = None
    if args.metrics is not None:
        token = os.environ.get(TOKEN_ENV) or None
        runtime, index = args.runtime, args.index
        metrics = WorkersEndpoint(args.metrics, token=token, directory=runtime, index=index)
    serving = serve(server, sock=listening, metrics=metrics)
    handoff = Handoff(serving.http, args.index, args.count, args.runtime)
    serving.http.route = handoff.route
    async with serving:
        handoff.start()
        if metrics is not None:
            http = serving.http
            metrics.start(lambda: [http.metrics, *metrics.sets])
        try:
            await _until_stopped(args.index, args.parent_fd)
        finally:
            handoff.close()
            if metrics is not None:
                metrics.close()
    _log.info(
        "worker %d stopped (pid %d; handed %d connections, adopted %d)",
        args.index,
        os.getpid(),
        handoff.sent,
        handoff.adopted,
    )


async def _until_stopped(index: int, parent_fd: int | None) -> None:
    """Until SIGTERM or SIGINT, or the supervisor's end (even killed: its
    pipe then reads EOF); a graceful shutdown follows. Says it is ready once
    the signals are handled: the supervisor may send SIGTERM from then on."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, set_done, stop)
    if parent_fd is not None:
        loop.add_reader(parent_fd, _orphaned, stop)
    _log.info("worker %d ready (pid %d, %s)", index, os.getpid(), _loops.current())
    try:
        await stop
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
        if parent_fd is not None:
            loop.remove_reader(parent_fd)


def _orphaned(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        _log.warning("the supervisor is gone: stopping")
        stop.set_result(None)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s [worker {args.index} pid %(process)d] %(name)s %(levelname)s "
        "%(message)s",
    )
    _loops.run(_serve(args), args.loop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
