"""websockets' client in the client-side benchmark: ``python websockets_client.py URI``."""

from __future__ import annotations

import argparse

import _common
from websockets.asyncio.client import connect


async def main(args: argparse.Namespace) -> None:
    async with connect(args.uri, compression=None, max_size=_common.MAX_SIZE) as connection:
        await _common.echo_and_measure(connection, args)


if __name__ == "__main__":
    arguments = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(arguments), arguments.uvloop)
