"""picows' client in the client-side benchmark: ``python picows_client.py URI [options]``."""

from __future__ import annotations

import argparse

import _common
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class Client(WSListener):
    def __init__(self, payload: bytes, inflight: int, counter: _common.Counter) -> None:
        self.payload = payload
        self.inflight = inflight
        self.counter = counter

    def on_ws_connected(self, transport: WSTransport) -> None:
        for _ in range(self.inflight):
            transport.send(WSMsgType.BINARY, self.payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.counter.value += 1
            transport.send(WSMsgType.BINARY, self.payload)


async def main(args: argparse.Namespace) -> None:
    payload = b"x" * args.size
    counter = _common.Counter()
    transport, _ = await ws_connect(
        lambda: Client(payload, args.inflight, counter),
        args.uri,
        max_frame_size=_common.MAX_SIZE,
    )
    await _common.measure(counter, args)
    transport.send_close()
    transport.disconnect()


if __name__ == "__main__":
    arguments = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(arguments), arguments.uvloop)
