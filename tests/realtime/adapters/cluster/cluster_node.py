"""One tether server worker with the cluster adapter, for the end-to-end tests.

Run as ``python cluster_node.py HUB_PATH`` (``--recovery`` to keep sessions);
it prints ``{"port": N, "node": ID}`` on one line once serving, and exits
when its stdin closes. Clients drive it with one event, ``do(op, *args)``,
acknowledged with the operation's result (True when it has none):

* ``join(room)``: the socket joins a room;
* ``emit(rooms, event, *args)``: an emit to ``rooms`` (everyone when empty)
  from this worker;
* ``ack(timeout)``: ``question`` with acks to everyone: the replies, sorted;
* ``fetch()``: the sids ``fetch_sockets`` finds, sorted;
* ``relay(*args)``: ``server_side_emit("relay", ...)``; every other worker
  then emits ``relayed`` to its own sockets;
* ``stream(count, every)``: emit ``seq`` 0..count-1 to everyone, ``every``
  seconds apart.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tether import realtime
from tether.realtime.adapters.cluster import ClusterAdapter


def build(path: str, recovery: bool) -> realtime.Server:
    server = realtime.Server(
        adapter=ClusterAdapter(path, heartbeat=1.0, request_timeout=3.0),
        connection_state_recovery={"max_disconnection_duration": 30} if recovery else None,
        ping_interval=1.0,
        ping_timeout=2.0,
    )

    async def ack(socket: realtime.Socket, wait: float) -> list[Any]:
        return sorted(await server.to([]).timeout(wait).emit_with_ack("question"))

    async def fetch(socket: realtime.Socket) -> list[str]:
        return sorted(info.sid for info in await server.in_([]).fetch_sockets())

    async def stream(socket: realtime.Socket, count: int, every: float) -> None:
        for seq in range(count):
            await server.emit("seq", seq)
            await asyncio.sleep(every)  # pacing the stream, not synchronising

    ops: dict[str, Callable[..., Awaitable[Any]]] = {
        "join": lambda socket, room: socket.join(room),
        "emit": lambda socket, rooms, *args: server.to(rooms).emit(*args),
        "ack": ack,
        "fetch": fetch,
        "relay": lambda socket, *args: server.server_side_emit("relay", *args),
        "stream": stream,
    }

    @server.on("do")
    async def do(socket: realtime.Socket, op: str, *args: Any) -> Any:
        result = await ops[op](socket, *args)
        return True if result is None else result

    @server.on_server_event("relay")
    async def relayed(*args: Any) -> None:
        await server.local.emit("relayed", *args)

    return server


async def main(path: str, recovery: bool) -> None:
    server = build(path, recovery)
    adapter = server.adapter
    assert isinstance(adapter, ClusterAdapter)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        print(json.dumps({"port": http.port, "node": adapter.node}), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the test closes stdin (or kills us)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--recovery" in sys.argv[2:]))
