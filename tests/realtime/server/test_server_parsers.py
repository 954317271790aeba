"""The serializer options of :class:`tether.realtime.Server` (``parser=``,
``json=``, ``default=``) with real clients: tether's own, raw Engine.IO
WebSockets for malformed input, and two servers sharing a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import timeout
from realtime.conftest import StartSio
from realtime.parser_helpers import AT, Point, hook
from realtime.redis_helpers import redis_server
from realtime.sio_helpers import EioSocket, open_websocket, running
from tether import realtime
from tether.realtime import Socket
from tether.realtime.client import Client
from tether.realtime.protocol.socketio import MAX_DEPTH

msgpack = pytest.importorskip("msgpack")
orjson = pytest.importorskip("orjson")


def echo_server(**options: Any) -> realtime.Server:
    server = realtime.Server(**options)

    @server.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return (*args, AT, Point(3, 4))

    return server


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(reconnection=False, connect_timeout=timeout(5), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await asyncio.wait_for(client.disconnect(), timeout(3))


@pytest.mark.parametrize(
    "options",
    [{"default": hook}, {"json": orjson, "default": hook}, {"parser": "msgpack", "default": hook}],
    ids=["json", "orjson", "msgpack"],
)
@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
async def test_default_hook_both_ways(
    start_sio: StartSio,
    clients: Callable[..., Client],
    options: dict[str, Any],
    transports: tuple[str, ...],
) -> None:
    sio = await start_sio(echo_server(**options))
    client = clients(transports=transports, **options)
    await asyncio.wait_for(client.connect(f"http://127.0.0.1:{sio.port}"), timeout(5))
    reply = await asyncio.wait_for(
        client.emit_with_ack("echo", Point(1, 2), b"\x00\x01", {"n": [b"\xff"]}), timeout(3)
    )
    assert reply == (
        {"x": 1, "y": 2},
        b"\x00\x01",
        {"n": [b"\xff"]},
        AT.isoformat(),
        {"x": 3, "y": 4},
    )


async def test_without_default_a_datetime_fails_at_emit(
    start_sio: StartSio, clients: Callable[..., Client]
) -> None:
    sio = await start_sio(echo_server())
    client = clients()
    await asyncio.wait_for(client.connect(f"http://127.0.0.1:{sio.port}"), timeout(5))
    with pytest.raises(TypeError):
        await client.emit("echo", AT)


# -- msgpack: malformed and oversized input closes that session only ------------------


async def msgpack_session(port: int) -> EioSocket:
    ws = await open_websocket(port)
    assert (await ws.recv_text()).startswith("0{")
    await ws.send(msgpack.packb({"type": 0, "nsp": "/"}))
    reply = msgpack.unpackb(await ws.recv())
    assert reply["type"] == 0 and "sid" in reply["data"], reply
    return ws


def nested(levels: int) -> list[Any]:
    data: list[Any] = []
    for _ in range(levels - 1):
        data = [data]
    return data


BAD = {
    "malformed": b"\xc1\x00",
    "text": '2["echo"]',
    "too-deep": msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", nested(MAX_DEPTH)]}),
    "too-many-binaries": msgpack.packb(
        {"type": 2, "nsp": "/", "data": ["echo", [b"x"] * 11]}, use_bin_type=True
    ),
    "oversize": msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", "x" * 2000]}),
}


@pytest.mark.parametrize("attack", list(BAD))
async def test_msgpack_refuses_and_others_carry_on(
    start_sio: StartSio, clients: Callable[..., Client], attack: str
) -> None:
    server = echo_server(parser="msgpack", default=hook, max_payload=1500, max_attachments=10)
    sio = await start_sio(server)
    good = clients(parser="msgpack", default=hook)
    await asyncio.wait_for(good.connect(f"http://127.0.0.1:{sio.port}"), timeout(5))

    ws = await msgpack_session(sio.port)
    await ws.send(BAD[attack])
    await ws.closed()
    assert ws.connection.close_code in (1002, 1008, 1009, 1000), ws.connection.close_code
    reply = await asyncio.wait_for(good.emit_with_ack("echo", b"\x07"), timeout(3))
    assert reply[0] == b"\x07"  # the other session carries on
    assert good.connected


# -- msgpack across nodes (Redis adapter) -------------------------------------------------

_prefixes = itertools.count()


async def shout_across(
    servers: list[realtime.Server], clients: Callable[..., Client], **options: Any
) -> None:
    """A client on the first server shouts nested bytes; one on the second hears
    them, and a datetime the server adds through ``default=`` when ``options`` has one."""

    @servers[0].on("shout")
    async def shout(socket: Socket, *args: Any) -> None:
        await servers[0].emit("heard", *args, *([AT] if "default" in options else []))

    async with running(servers[0]) as one, running(servers[1]) as two:
        sender = clients(**options)
        listener = clients(**options)
        heard: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        listener.on("heard", lambda *args: heard.put_nowait(args))
        await asyncio.wait_for(sender.connect(f"http://127.0.0.1:{one.port}"), timeout(5))
        await asyncio.wait_for(listener.connect(f"http://127.0.0.1:{two.port}"), timeout(5))
        await sender.emit("shout", "hi", b"\x00\xff", {"deep": [b"\x01"]})
        got = await asyncio.wait_for(heard.get(), timeout(5))
        # With recovery on, an offset comes last.
        assert got[:3] == ("hi", b"\x00\xff", {"deep": [b"\x01"]})
        if "default" in options:
            assert got[3] == AT.isoformat()
        await asyncio.wait_for(sender.disconnect(), timeout(3))
        await asyncio.wait_for(listener.disconnect(), timeout(3))


@pytest.mark.parametrize(
    "options", [{"parser": "msgpack"}, {"default": hook}], ids=["msgpack", "default"]
)
async def test_broadcasts_across_nodes_through_redis(
    clients: Callable[..., Client], options: dict[str, Any]
) -> None:
    # default=: the adapter's own JSON (and the recovery store) get the data
    # as the hook made it.
    from tether.realtime.adapters.redis import RedisAdapter

    prefix = f"t-parsers-{next(_prefixes)}"
    with redis_server() as redis:
        servers = [
            realtime.Server(
                **options,
                adapter=RedisAdapter(redis.url, prefix=prefix, request_timeout=timeout(3)),
                connection_state_recovery=True,
            )
            for _ in range(2)
        ]
        await shout_across(servers, clients, **options)


async def test_msgpack_broadcasts_across_workers_through_the_cluster_hub(
    clients: Callable[..., Client],
) -> None:
    from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub

    # A short path: pytest's tmp_path may pass the 107 bytes of sun_path.
    with tempfile.TemporaryDirectory() as private:
        path = str(Path(private) / "cluster.sock")
        hub = ClusterHub(path)
        await hub.start()
        try:
            servers = [
                realtime.Server(parser="msgpack", adapter=ClusterAdapter(path)) for _ in range(2)
            ]
            await shout_across(servers, clients, parser="msgpack")
        finally:
            await hub.close()


async def test_msgpack_lists_and_maps_count_as_json_brackets_do(
    start_sio: StartSio, clients: Callable[..., Client]
) -> None:
    # 3,000 empty lists are 3 KB of msgpack but ~200 KB of Python objects:
    # past max_payload and max_pending_bytes once counted, so refused.
    server = echo_server(
        parser="msgpack", default=hook, max_payload=100_000, max_pending_bytes=50_000
    )
    sio = await start_sio(server)
    small = msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", [[]] * 100], "id": 1})
    big = msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", [[]] * 3000]})
    assert len(big) < 4000
    ws = await msgpack_session(sio.port)
    await ws.send(small)
    assert msgpack.unpackb(await ws.recv())["type"] == 3  # acked
    await ws.send(big)
    await ws.closed()
    assert ws.connection.close_code == 1008  # policy violation


async def test_the_sync_client_takes_the_serializer_options(start_sio: StartSio) -> None:
    from tether.sync.realtime import SimpleClient

    sio = await start_sio(echo_server(parser="msgpack", default=hook))

    def blocking() -> Any:
        with SimpleClient(parser="msgpack", default=hook) as client:
            client.connect(f"http://127.0.0.1:{sio.port}")
            return client.call("echo", Point(5, 6), timeout=timeout(3))

    reply = await asyncio.wait_for(asyncio.to_thread(blocking), timeout(10))
    assert reply == ({"x": 5, "y": 6}, AT.isoformat(), {"x": 3, "y": 4})


async def test_default_hook_with_recovery_on_a_socket_emit(
    start_sio: StartSio, clients: Callable[..., Client]
) -> None:
    # With recovery on, Socket.emit goes through the adapter's store.
    server = realtime.Server(default=hook, connection_state_recovery=True)

    @server.on("when")
    async def when(socket: Socket) -> None:
        await socket.emit("now", AT, Point(7, 8))

    sio = await start_sio(server)
    client = clients(default=hook)
    heard: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    client.on("now", lambda *args: heard.put_nowait(args))
    await asyncio.wait_for(client.connect(f"http://127.0.0.1:{sio.port}"), timeout(5))
    await client.emit("when")
    got = await asyncio.wait_for(heard.get(), timeout(3))
    assert got[:2] == (AT.isoformat(), {"x": 7, "y": 8})  # then the offset
