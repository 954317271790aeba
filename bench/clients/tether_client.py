"""tether's client in the client-side benchmark: ``python tether_client.py URI [options]``."""

from __future__ import annotations

import argparse

import _common

import tether


async def main(args: argparse.Namespace) -> None:
    async with tether.connect(
        args.uri,
        compression=None,
        max_message_size=_common.MAX_SIZE,
        max_frame_size=_common.MAX_SIZE,
    ) as connection:
        await _common.echo_and_measure(connection, args)


if __name__ == "__main__":
    arguments = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(arguments), arguments.uvloop)
