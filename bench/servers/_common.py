"""What every Python peer server shares: argv, the fan-out message, the event loop.

The benchmark protocol, identical for every peer (Node's ws included):

* listen on 127.0.0.1, port ``argv[1]``; print ``ready`` once listening;
* compression off, messages up to 4 MiB accepted;
* echo every message back with its type (text or binary);
* a text message starting with ``fanout`` is not echoed: the server sends the
  64-byte binary :data:`FANOUT_PAYLOAD` once to every *other* open connection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

MAX_SIZE = 4 * 1024 * 1024
FANOUT_PREFIX = "fanout"
FANOUT_PAYLOAD = b"x" * 64


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop instead of asyncio's own loop"
    )
    return parser.parse_args()


def ready() -> None:
    print("ready", flush=True)


def run(main: Callable[[], Awaitable[None]], use_uvloop: bool) -> None:
    """Run ``main()`` forever; the harness ends the process with a signal."""
    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def serve_protocol(factory: Callable[[], asyncio.BaseProtocol], doc: str) -> None:
    """A plain asyncio server of ``factory``'s protocols on 127.0.0.1, its
    port and loop from the command line (``doc`` is the script's usage)."""
    args = parse_args(doc)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", args.port)
        async with server:
            ready()
            await server.serve_forever()

    run(main, args.uvloop)


def forever() -> Awaitable[None]:
    """A future that never completes: the servers run until they are killed."""
    return asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    sys.exit("this module is imported by the peer servers")
