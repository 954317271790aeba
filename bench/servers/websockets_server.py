"""websockets peer: ``python websockets_server.py PORT [--uvloop]`` (protocol: _common.py)."""

from __future__ import annotations

import _common
from websockets.asyncio.server import ServerConnection, broadcast, serve


async def main(port: int) -> None:
    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            if isinstance(message, str) and message.startswith(_common.FANOUT_PREFIX):
                others = [c for c in server.connections if c is not connection]
                broadcast(others, _common.FANOUT_PAYLOAD)
            else:
                await connection.send(message)

    async with serve(
        handler, "127.0.0.1", port, compression=None, max_size=_common.MAX_SIZE
    ) as server:
        _common.ready()
        await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port), args.uvloop)
