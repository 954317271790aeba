"""tether's client in the client-side benchmark: ``python tether_client.py URI [options]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import _common

import tether


async def main(args: argparse.Namespace) -> None:
    payload = b"x" * args.size
    counter = _common.Counter()
    async with tether.connect(
        args.uri,
        compression=None,
        max_message_size=_common.MAX_SIZE,
        max_frame_size=_common.MAX_SIZE,
    ) as connection:

        async def pump() -> None:
            for _ in range(args.inflight):
                await connection.send(payload)
            while True:
                await connection.recv()
                counter.value += 1
                await connection.send(payload)

        task = asyncio.create_task(pump())
        await _common.measure(counter, args)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    arguments = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(arguments), arguments.uvloop)
