"""The least a Python Socket.IO server can do per event: ``python realtime_floor.py``.

Not a server anyone should run: a measuring stick for bench/realtime.py. It
answers bench/sioload.c and nothing else (the benchmark protocol of
realtime_tether.py's docstring, over Engine.IO's WebSocket transport only), on
tether's ``MessageHandler`` callbacks (no coroutine, no task) on uvloop, and
per event does only what any Python Socket.IO server must: decode the JSON
arguments, encode the JSON answer, frame it and write it. No packet checks, no
namespaces, no acks, no heartbeats, no limits beyond the WebSocket ones, no
adapter: a room is a list, a broadcast one shared frame (``tether.broadcast``).

Its rate per server CPU-second is the ceiling of a Python realtime server on
this machine, so the gap between it and socket.io on Node is the part no
Python-level work can close, and the gap between tether and it is what
tether's full Socket.IO server costs on top (docs/performance.md).
"""

from __future__ import annotations

import json

import uvloop

import tether

HANDSHAKE = {"sid": "floor", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000}
OPEN = "0" + json.dumps({**HANDSHAKE, "maxPayload": 1000000}, separators=(",", ":"))
CONNECTED = '40{"sid":"floor-socket"}'
JOINED = '42["joined"]'


class Floor(tether.MessageHandler):
    def __init__(self) -> None:
        self.room: list[tether.Connection] = []
        self.loads = json.JSONDecoder().decode
        self.dumps = json.JSONEncoder(separators=(",", ":")).encode

    def on_open(self, connection: tether.Connection) -> None:
        connection.send_nowait(OPEN)

    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        if not isinstance(message, str):
            return
        if message.startswith("42"):
            name, *args = self.loads(message[2:])
            if name == "echo":
                connection.send_nowait("42" + self.dumps(["echo", *args]))
            elif name == "fanout":
                tether.broadcast(self.room, "42" + self.dumps(["msg", *args]))
            elif name == "join":
                self.room.append(connection)
                connection.send_nowait(JOINED)
        elif message == "40":
            connection.send_nowait(CONNECTED)

    def on_close(self, connection: tether.Connection) -> None:
        if connection in self.room:
            self.room.remove(connection)


async def main() -> None:
    async with tether.serve(Floor(), "127.0.0.1", 0, compression=None) as server:
        print("ready", server.port, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
