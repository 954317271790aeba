"""Command line: ``python -m tether serve --echo``, ``python -m tether connect URI``,
``python -m tether demo`` and ``python -m tether run APP --workers N``.

Built on the public API only. Limit flags are generated from
:class:`tether.Limits`, so each limit is defined once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Literal

from . import Connection, ConnectionClosed, Limits, TetherError, _loops, connect, serve
from .version import __version__, speedups_status

__all__ = ["main"]


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits")
    for name, (default, doc) in Limits.describe().items():
        is_duration = isinstance(default, float)
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=_seconds if is_duration else int,
            default=None,
            metavar="SECONDS" if is_duration else "INT",
            help=f"{doc} (default: {default}{'; none disables' if is_duration else ''})",
        )


_UNSET = object()


def _seconds(text: str) -> float | object:
    """A duration flag: a number of seconds, or 'none' to turn the bound off."""
    return _UNSET if text.lower() == "none" else float(text)


def _limits(args: argparse.Namespace) -> Limits:
    chosen = {name: getattr(args, name) for name in Limits.describe()}
    given = {k: (None if v is _UNSET else v) for k, v in chosen.items() if v is not None}
    return Limits().replace(**given)


def _add_loop_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=_loops.LOOPS,
        default="auto",
        help="the event loop: uvloop if installed (auto, the default), or asyncio's own",
    )


class _Version(argparse.Action):
    """``--version``: the version and the speedups' state on one unwrapped line
    (argparse's own version action rewraps the text to the terminal)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"tether {__version__}: {speedups_status()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tether", description="tether WebSocket toolkit"
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version and whether C speedups are on"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    srv = commands.add_parser("serve", help="run a WebSocket server")
    srv.add_argument(
        "--echo",
        action="store_true",
        required=True,
        help="echo every message back (text as text, binary as binary)",
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8765, help="TCP port (default: 8765; 0 picks one)")
    srv.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate (default) or none",
    )
    srv.add_argument(
        "--trusted-proxy",
        metavar="ADDR",
        action="append",
        default=[],
        help="a reverse proxy's address or CIDR network whose Forwarded / X-Forwarded-For "
        "headers name the client (repeatable; none by default)",
    )
    _add_loop_flag(srv)
    _add_limit_flags(srv)

    cli = commands.add_parser("connect", help="interactive client: lines typed are sent")
    cli.add_argument("uri", help="ws://, wss:// or ws+unix:// URI")
    cli.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    cli.add_argument("--origin", default=None, help="Origin header to send")
    cli.add_argument("--subprotocol", action="append", default=[], help="subprotocol to offer")
    _add_limit_flags(cli)

    demo = commands.add_parser("demo", help="serve the chat, ticker and game demos on one port")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    demo.add_argument(
        "--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks one)"
    )
    demo.add_argument("--redis", metavar="URL", default=None, help="share chat state through Redis")
    _add_loop_flag(demo)

    run = commands.add_parser(
        "run", help="serve a realtime.Server on N worker processes sharing one port"
    )
    run.add_argument("app", help="module:attribute of a tether.realtime.Server (myapp:server)")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks one)")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    run.add_argument(
        "--redis", metavar="URL", default=None, help="rooms across workers through Redis"
    )
    run.add_argument(
        "--grace", type=float, default=10.0, help="seconds to stop before a kill (default: 10)"
    )
    run.add_argument(
        "--metrics",
        metavar="PATH",
        default=None,
        help="serve every worker's metrics on PATH (e.g. /metrics); a scrape must carry "
        "the bearer token in $TETHER_METRICS_TOKEN if set (needs tether[metrics])",
    )
    _add_loop_flag(run)
    return parser


async def _echo(connection: Connection) -> None:
    async for message in connection:
        await connection.send(message)


async def _serve(args: argparse.Namespace) -> None:
    compression = _compression(args)
    async with serve(
        _echo,
        args.host,
        args.port,
        compression=compression,
        trusted_proxies=args.trusted_proxy,
        limits=_limits(args),
    ) as server:
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
        host = f"[{args.host}]" if ":" in args.host else args.host  # RFC 3986 IPv6 literal
        listening = f"echo server listening on ws://{host}:{server.port} ({_loops.current()})"
        print(listening, file=sys.stderr, flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop
        print("shutting down", file=sys.stderr, flush=True)


def _compression(args: argparse.Namespace) -> Literal["deflate"] | None:
    return "deflate" if args.compression == "deflate" else None


def _show(message: str | bytes, tty: bool) -> str:
    if isinstance(message, bytes):
        more = "..." if len(message) > 64 else ""
        text = f"<binary, {len(message)} bytes: {message[:64].hex()}{more}>"
    else:
        text = message
    return f"< {text}" if tty else text


async def _printer(connection: Connection, tty: bool) -> None:
    try:
        async for message in connection:
            print(_show(message, tty), flush=True)
    except ConnectionClosed:
        pass


def _stdin_lines() -> asyncio.Queue[str]:
    """Lines of stdin, read by a daemon thread; "" at end of file.

    Not ``asyncio.to_thread``: ``asyncio.run`` joins its executor threads, so
    one blocked in ``readline()`` would keep the client alive after the server
    closed the connection, until the user typed something.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            try:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            except RuntimeError:  # the loop is closed: we are exiting
                return
            if not line:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return lines


async def _client(args: argparse.Namespace) -> int:
    tty = sys.stdin.isatty()
    compression = _compression(args)
    async with connect(
        args.uri,
        compression=compression,
        origin=args.origin,
        subprotocols=args.subprotocol,
        limits=_limits(args),
    ) as connection:
        if tty:
            print(f"connected to {args.uri} (Ctrl-D to close)", file=sys.stderr, flush=True)
        printer = asyncio.create_task(_printer(connection, tty))
        lines = _stdin_lines()
        try:
            while True:
                # The server may close first: stop waiting for input then.
                next_line = asyncio.ensure_future(lines.get())
                await asyncio.wait({next_line, printer}, return_when=asyncio.FIRST_COMPLETED)
                if not next_line.done():
                    next_line.cancel()
                    break
                line = next_line.result()
                if not line:
                    break
                await connection.send(line.rstrip("\n"))
        except ConnectionClosed:
            pass
        await connection.close()
        await printer
    code = connection.close_code
    print(f"connection closed: {code} {connection.close_reason or ''}".rstrip(), file=sys.stderr)
    return 0 if code in (1000, 1001, 1005) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # run: INFO by default, for its port and its workers' starts and exits.
    verbose = max(args.verbose, 1) if args.command == "run" else args.verbose
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        loop = _loops.resolve(getattr(args, "loop", "asyncio"))  # connect: asyncio's own
    except RuntimeError as exc:
        print(f"error: --loop {args.loop}: {exc}", file=sys.stderr)
        return 1
    if args.command == "demo":
        from .demo import main as demo_main

        runner: Any = demo_main(args.host, args.port, args.redis)
    elif args.command == "run":
        from .realtime.workers import run

        options = {"host": args.host, "port": args.port, "workers": args.workers, "loop": loop}
        options["metrics"] = args.metrics
        try:
            return run(args.app, **options, redis=args.redis, grace=args.grace)
        except (OSError, ValueError, TypeError, RuntimeError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        runner = _serve(args) if args.command == "serve" else _client(args)
    try:
        result = _loops.run(runner, loop)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, TetherError) as exc:
        # TetherError: e.g. InvalidStatus when the server refuses the handshake.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
