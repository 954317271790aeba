"""aiohttp peer: ``python aiohttp_server.py PORT [--uvloop]`` (protocol: _common.py)."""

from __future__ import annotations

import _common
from aiohttp import WSMsgType, web

CLIENTS: set[web.WebSocketResponse] = set()


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=_common.MAX_SIZE)
    await ws.prepare(request)
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                if msg.data.startswith(_common.FANOUT_PREFIX):
                    for other in list(CLIENTS):
                        if other is not ws and not other.closed:
                            await other.send_bytes(_common.FANOUT_PAYLOAD)
                else:
                    await ws.send_str(msg.data)
    finally:
        CLIENTS.discard(ws)
    return ws


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    _common.ready()
    await _common.forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port), args.uvloop)
