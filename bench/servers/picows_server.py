"""picows peer: ``python picows_server.py PORT [--uvloop]`` (protocol: _common.py).

picows hands over frames, not messages: frames are echoed one by one with
their opcode and FIN bit, which preserves fragmented messages too.
"""

from __future__ import annotations

import _common
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

CLIENTS: set[WSTransport] = set()
FANOUT_PREFIX = _common.FANOUT_PREFIX.encode()


class Peer(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            # picows leaves the closing handshake to the application.
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind in (WSMsgType.PING, WSMsgType.PONG):
            return  # pings are answered by picows itself (enable_auto_pong)
        elif kind == WSMsgType.TEXT and frame.get_payload_as_bytes().startswith(FANOUT_PREFIX):
            for other in CLIENTS:
                if other is not transport:
                    other.send(WSMsgType.BINARY, _common.FANOUT_PAYLOAD)
        else:
            transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)


def listener_factory(request: WSUpgradeRequest) -> Peer:
    return Peer()


async def main(port: int) -> None:
    server = await ws_create_server(
        listener_factory, "127.0.0.1", port, max_frame_size=_common.MAX_SIZE
    )
    async with server:
        _common.ready()
        await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port), args.uvloop)
