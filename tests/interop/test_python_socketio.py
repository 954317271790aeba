"""python-socketio's ``AsyncClient`` (PyPI, a client nobody here wrote) against
tether's realtime server (``realtime_app.py``, served in-process on a free
port), over WebSocket only, polling only, and the default polling-then-upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import timeout
from interop.realtime_app import Recorder, running

socketio = pytest.importorskip("socketio")

pytestmark = pytest.mark.interop

CONFIGURATIONS: dict[str, list[str] | None] = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "default": None,  # polling, then the upgrade
}
AUTH = {"token": "secret", "user": "py"}


@pytest.fixture(params=list(CONFIGURATIONS))
def transports(request: pytest.FixtureRequest) -> list[str] | None:
    return CONFIGURATIONS[request.param]


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Recorder]]:
    async with running() as (url, _, recorder):
        yield url, recorder


def new_client() -> tuple[Any, asyncio.Queue[tuple[str, str, Any]]]:
    """A client whose every ``welcome``/``told`` event lands on a queue, and
    which answers the server's ``question`` (the return value is the ack)."""
    client = socketio.AsyncClient(reconnection=False)
    seen: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
    for namespace in ("/", "/chat", "/dyn-7"):
        for event in ("welcome", "told"):

            def record(*args: Any, event: str = event, namespace: str = namespace) -> None:
                seen.put_nowait((namespace, event, args))

            client.on(event, record, namespace=namespace)

        def question(value: Any) -> Any:
            if isinstance(value, bytes):
                return {"got": value, "reversed": value[::-1]}
            return f"py:{value}"

        client.on("question", question, namespace=namespace)
    return client, seen


async def connect(client: Any, url: str, transports: list[str] | None, **options: Any) -> None:
    if transports is not None:
        options["transports"] = transports
    await client.connect(url, auth=AUTH, wait_timeout=timeout(5), **options)


async def next_seen(seen: asyncio.Queue[tuple[str, str, Any]]) -> tuple[str, str, Any]:
    return await asyncio.wait_for(seen.get(), timeout(3))


async def test_connect_namespaces_and_events(
    served: tuple[str, Recorder], transports: list[str] | None
) -> None:
    url, recorder = served
    client, seen = new_client()
    await connect(client, url, transports, namespaces=["/", "/chat", "/dyn-7"])
    try:
        welcomes = {}
        for _ in range(3):
            namespace, event, args = await next_seen(seen)
            assert event == "welcome"
            welcomes[namespace] = args[0]
        for namespace in ("/", "/chat", "/dyn-7"):
            sid = client.get_sid(namespace)
            assert welcomes[namespace] == {"sid": sid, "nsp": namespace, "user": "py"}
        # Events both ways, on each namespace.
        for namespace in ("/", "/chat", "/dyn-7"):
            await client.emit("tell", ("told", namespace, {"n": [1, None]}), namespace=namespace)
            assert await next_seen(seen) == (namespace, "told", (namespace, {"n": [1, None]}))
        if transports is None:
            # The default configuration upgrades to WebSocket.
            await asyncio.wait_for(_upgraded(client), timeout(3))
        assert client.transport() == (transports or ["websocket"])[0]
    finally:
        await client.disconnect()
    reasons = {(await recorder.next("disconnect"))[3] for _ in range(3)}
    # python-engineio closes its WebSocket without waiting for its write queue,
    # so the DISCONNECT packets may or may not be out before the close.
    assert reasons <= {"client namespace disconnect", "forced close", "transport close"}


async def _upgraded(client: Any) -> None:
    # python-socketio has no upgrade event: its own echo shows the transport.
    while client.transport() != "websocket":
        await client.call("echo", "sync", timeout=timeout(1))


async def test_acks_both_ways(served: tuple[str, Recorder], transports: list[str] | None) -> None:
    url, _ = served
    client, _ = new_client()
    await connect(client, url, transports, namespaces=["/", "/chat"])
    try:
        call = client.call
        assert await call("echo", "one", timeout=timeout(3)) == "one"
        assert await call("echo", (1, "two", {"3": 3}), timeout=timeout(3)) == (1, "two", {"3": 3})
        assert await call("echo", namespace="/chat", timeout=timeout(3)) is None
        # The server's emit_with_ack, answered by our handler's return value.
        assert await call("ask", "life", timeout=timeout(3)) == "py:life"
        assert await call("ask", "chat", namespace="/chat", timeout=timeout(3)) == "py:chat"
    finally:
        await client.disconnect()


async def test_binary_both_ways(served: tuple[str, Recorder], transports: list[str] | None) -> None:
    url, _ = served
    client, seen = new_client()
    await connect(client, url, transports, namespaces=["/"])
    try:
        await next_seen(seen)  # welcome
        data = bytes([1, 2, 3, 0, 255])
        assert await client.call("binary", data, timeout=timeout(3)) == {
            "reversed": data[::-1],
            "parts": [data[:2], data[2:]],
            "type": "bytes",
        }
        nested = {"list": [b"x", {"deep": b""}], "text": "t"}
        await client.emit("tell", ("told", nested, b"\x09"))
        assert await next_seen(seen) == ("/", "told", (nested, b"\x09"))
        assert await client.call("ask", b"\x0a\x14", timeout=timeout(3)) == {
            "got": b"\x0a\x14",
            "reversed": b"\x14\x0a",
        }
    finally:
        await client.disconnect()


async def test_middleware_refusal(
    served: tuple[str, Recorder], transports: list[str] | None
) -> None:
    url, _ = served
    client = socketio.AsyncClient(reconnection=False)
    options: dict[str, Any] = {} if transports is None else {"transports": transports}
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": "wrong"}, wait_timeout=timeout(5), **options)
    await client.disconnect()
