"""One tether server instrumented for the Admin UI, for the admin tests.

Run as ``python admin_node.py [--redis URL --prefix P | --hub PATH] [--server-id ID]``:
it serves on 127.0.0.1 port 0 (the Redis adapter when ``--redis`` is given,
the cluster adapter on the hub at ``PATH`` with ``--hub``),
with ``instrument(auth=("admin", PASSWORD), stats_interval=0.5)``, prints
``{"port": N}`` on one line once serving, and exits when its stdin closes.

Clients connect with ``auth={"name": ..., "room": ...}`` and are put in
``room``; ``chat(text)`` is acknowledged with ``text`` upper-cased.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from tether import realtime
from tether.realtime.admin import instrument

USERNAME = "admin"
PASSWORD = "correct horse battery"


def build(
    redis: str | None = None,
    prefix: str = "admin",
    server_id: str | None = None,
    hub: str | None = None,
) -> realtime.Server:
    adapter: realtime.Adapter | None = None
    if redis is not None:
        from tether.realtime.adapters.redis import RedisAdapter

        adapter = RedisAdapter(redis, prefix=prefix, request_timeout=3.0)
    elif hub is not None:
        from tether.realtime.adapters.cluster import ClusterAdapter

        adapter = ClusterAdapter(hub, request_timeout=3.0)
    server = realtime.Server(adapter=adapter, cors_allowed_origins="*")

    @server.on("connect")
    async def connect(socket: realtime.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")
        room = auth.get("room")
        if isinstance(room, str):
            await socket.join(room)

    @server.on("chat")
    def chat(socket: realtime.Socket, text: str) -> str:
        return text.upper()

    instrument(server, auth=(USERNAME, PASSWORD), server_id=server_id, stats_interval=0.5)
    return server


async def main(args: argparse.Namespace) -> None:
    server = build(args.redis, args.prefix, args.server_id, args.hub)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        print(json.dumps({"port": http.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis")
    parser.add_argument("--prefix", default="admin")
    parser.add_argument("--server-id")
    parser.add_argument("--hub")
    asyncio.run(main(parser.parse_args()))
