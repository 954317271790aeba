"""One tether server node with the Redis adapter, for the scale-out tests.

Run as ``python redis_node.py REDIS_URL PREFIX`` (``--recovery`` to keep
sessions); it prints ``{"port": N, "node": ID}`` on one line once serving,
and exits when its stdin closes. Clients drive it with these events (each
acknowledged with its result):

* ``join(room)``, ``leave(room)``: the socket joins/leaves a room;
* ``emit(rooms, except_rooms, event, *args)``: a server-wide emit from this node;
* ``ack(rooms, timeout)``: emit ``question`` with acks to ``rooms`` (everyone
  when empty), returns the replies, sorted;
* ``fetch(rooms)``: the sids and users ``fetch_sockets`` finds, sorted;
* ``join_all(rooms, room)``/``leave_all``/``kick(rooms)``: ``sockets_join``,
  ``sockets_leave`` and ``disconnect_sockets`` on the selection;
* ``presence(room)``, ``online(users)``: presence queries;
* ``relay(*args)``: ``server_side_emit("relay", ...)``; every *other* node
  then emits ``relayed`` to its own sockets (``local``), so each client gets
  it once unless it is on this node;
* ``stream(count, every)``: emit ``seq`` 0..count-1 to everyone, ``every``
  seconds apart (for the recovery test; from the node that is not killed).

Presence changes are announced to every client as ``presence`` events
``(kind, user, room)``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from tether import realtime
from tether.realtime.adapters.redis import PresenceEvent, RedisAdapter


def build(url: str, prefix: str, recovery: bool, heartbeat: float = 1.0) -> realtime.Server:
    adapter = RedisAdapter(url, prefix=prefix, heartbeat=heartbeat, request_timeout=3.0)
    server = realtime.Server(
        adapter=adapter,
        connection_state_recovery={"max_disconnection_duration": 30} if recovery else None,
        ping_interval=1.0,
        ping_timeout=2.0,
    )

    @server.on("connect")
    async def connect(socket: realtime.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered and isinstance(auth, dict) and "user" in auth:
            socket.data["user"] = auth["user"]

    @server.on("join")
    async def join(socket: realtime.Socket, room: str) -> bool:
        await socket.join(room)
        return True

    @server.on("leave")
    async def leave(socket: realtime.Socket, room: str) -> bool:
        await socket.leave(room)
        return True

    @server.on("emit")
    async def emit(
        socket: realtime.Socket, rooms: list[str], skip: list[str], event: str, *args: Any
    ) -> bool:
        operator = server.to(rooms)
        if skip:
            operator = operator.except_(skip)
        await operator.emit(event, *args)
        return True

    @server.on("ack")
    async def ack(socket: realtime.Socket, rooms: list[str], timeout: float) -> list[Any]:
        operator = server.to(rooms)
        replies = await operator.timeout(timeout).emit_with_ack("question")
        return sorted(replies)

    @server.on("fetch")
    async def fetch(socket: realtime.Socket, rooms: list[str]) -> list[Any]:
        operator = server.in_(rooms)
        found = await operator.fetch_sockets()
        return sorted([info.sid, info.data.get("user")] for info in found)

    @server.on("join_all")
    async def join_all(socket: realtime.Socket, rooms: list[str], room: str) -> bool:
        await server.in_(rooms).sockets_join(room)
        return True

    @server.on("leave_all")
    async def leave_all(socket: realtime.Socket, rooms: list[str], room: str) -> bool:
        await server.in_(rooms).sockets_leave(room)
        return True

    @server.on("kick")
    async def kick(socket: realtime.Socket, rooms: list[str]) -> bool:
        await server.in_(rooms).disconnect_sockets()
        return True

    @server.on("presence")
    async def presence(socket: realtime.Socket, room: str) -> list[Any]:
        assert adapter.presence is not None
        return [[m.sid, m.user] for m in await adapter.presence.room(room)]

    @server.on("online")
    async def online(socket: realtime.Socket, users: list[str]) -> list[str]:
        assert adapter.presence is not None
        return sorted(await adapter.presence.online(users))

    @server.on("relay")
    async def relay(socket: realtime.Socket, *args: Any) -> bool:
        await server.server_side_emit("relay", *args)
        return True

    @server.on_server_event("relay")
    async def relayed(*args: Any) -> None:
        await server.local.emit("relayed", *args)

    @server.on("stream")
    async def stream(socket: realtime.Socket, count: int, every: float) -> bool:
        for seq in range(count):
            await server.emit("seq", seq)
            await asyncio.sleep(every)
        return True

    assert adapter.presence is not None

    @adapter.presence.on_change
    async def announce(event: PresenceEvent) -> None:
        await server.emit("presence", event.kind, event.user, event.room)

    return server


async def main(url: str, prefix: str, recovery: bool) -> None:
    server = build(url, prefix, recovery)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        assert isinstance(server.adapter, RedisAdapter)
        print(json.dumps({"port": http.port, "node": server.adapter.node}), flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the test closes our stdin (or kills us).
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--recovery" in sys.argv))
