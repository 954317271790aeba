"""A tether realtime Client in the Admin UI's place: it connects to the admin
namespace with the UI's auth and records every event the server sends it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from helpers import timeout
from tether.realtime.client import Client

ADMIN = "/admin"


class FakeUI:
    """What the UI gets: ``events[name]`` is the list of argument tuples."""

    def __init__(self) -> None:
        self.client = Client(reconnection=False)
        self.events: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.changed = asyncio.Event()

        def record(event: str, *args: Any) -> None:
            self.events[event].append(args)
            self.changed.set()

        self.client.on("*", record, namespace=ADMIN)

    async def connect(self, url: str, auth: dict[str, Any]) -> FakeUI:
        await asyncio.wait_for(self.client.connect(url, namespaces=[ADMIN], auth=auth), timeout(5))
        return self

    async def wait(
        self, event: str, predicate: Callable[[tuple[Any, ...]], bool] = lambda _: True
    ) -> tuple[Any, ...]:
        """The first ``event`` matching ``predicate`` (waiting for it)."""

        async def find() -> tuple[Any, ...]:
            while True:
                for args in self.events[event]:
                    if predicate(args):
                        return args
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(find(), timeout(5))

    async def act(self, event: str, *args: Any) -> None:
        await self.client.emit(event, *args, namespace=ADMIN)

    async def close(self) -> None:
        await self.client.disconnect()
