"""tether peer: ``python tether_server.py PORT [--uvloop]`` (see _common.py for the protocol)."""

from __future__ import annotations

import _common

import tether


async def main(port: int) -> None:
    async def handler(connection: tether.Connection) -> None:
        async for message in connection:
            if isinstance(message, str) and message.startswith(_common.FANOUT_PREFIX):
                others = [c for c in server.connections if c is not connection]
                tether.broadcast(others, _common.FANOUT_PAYLOAD)
            else:
                await connection.send(message)

    async with tether.serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        max_message_size=_common.MAX_SIZE,
        max_frame_size=_common.MAX_SIZE,
    ) as server:
        _common.ready()
        await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port), args.uvloop)
