"""tether peer: ``python tether_server.py PORT [--uvloop] [--callbacks]`` (see _common.py).

``--callbacks`` uses the low-level :class:`tether.MessageHandler` API (a
callback per message, no coroutine) instead of a handler coroutine.
"""

from __future__ import annotations

import sys

import _common

import tether


class Callbacks(tether.MessageHandler):
    def __init__(self) -> None:
        self.server: tether.Server | None = None

    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        if isinstance(message, str) and message.startswith(_common.FANOUT_PREFIX):
            assert self.server is not None
            others = [c for c in self.server.connections if c is not connection]
            tether.broadcast(others, _common.FANOUT_PAYLOAD)
        else:
            connection.send_nowait(message)


async def main(port: int, callbacks: bool) -> None:
    async def handler(connection: tether.Connection) -> None:
        async for message in connection:
            if isinstance(message, str) and message.startswith(_common.FANOUT_PREFIX):
                others = [c for c in server.connections if c is not connection]
                tether.broadcast(others, _common.FANOUT_PAYLOAD)
            else:
                await connection.send(message)

    listener = Callbacks()
    async with tether.serve(
        listener if callbacks else handler,
        "127.0.0.1",
        port,
        compression=None,
        max_message_size=_common.MAX_SIZE,
        max_frame_size=_common.MAX_SIZE,
    ) as server:
        listener.server = server
        _common.ready()
        await server.serve_forever()


if __name__ == "__main__":
    use_callbacks = "--callbacks" in sys.argv
    if use_callbacks:
        sys.argv.remove("--callbacks")
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port, use_callbacks), args.uvloop)
