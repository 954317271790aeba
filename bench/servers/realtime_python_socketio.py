"""python-socketio for bench/realtime.py: ``python realtime_python_socketio.py``.

The protocol is realtime_tether.py's. An ``AsyncServer`` as an ASGI app under
uvicorn on uvloop, every other option at its default (uvicorn's WebSocket
implementation: "auto").
"""

from __future__ import annotations

import socket
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi")


@sio.on("echo")
async def echo(sid: str, data: Any) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("join")
async def join(sid: str) -> None:
    await sio.enter_room(sid, "room")
    await sio.emit("joined", to=sid)


@sio.on("fanout")
async def fanout(sid: str, data: Any) -> None:
    await sio.emit("msg", data, room="room")


if __name__ == "__main__":
    # Listening before uvicorn starts: connections wait in the backlog meanwhile.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print("ready", listener.getsockname()[1], flush=True)
    config = uvicorn.Config(socketio.ASGIApp(sio), loop="uvloop", log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])
