"""The live ticker demo: a simulated market streamed over raw WebSocket.

50 symbols move 20 times a second (:class:`Market`, no I/O). Each browser
tab subscribes to some of them and gets batches of quotes as JSON text
messages, compressed with permessage-deflate (the repeated keys of a batch
compress well).

**Slow clients: conflation.** Each connection has one writer task and a
pending dict of *the latest quote per symbol*. Market ticks overwrite that
dict; the writer sends it as one message whenever the previous send has
returned, and :meth:`tether.Connection.send` waits while the socket's write
buffer is above ``write_high_water``. A client that cannot keep up therefore
gets fewer, fresher batches: what waits for it is at most one quote per
subscribed symbol plus the bounded write buffer, never a growing queue.

The protocol (JSON objects with a ``type``):

* server → client: ``hello`` (symbols, names, rate, policy), ``snapshot``
  (current quotes and recent prices of newly subscribed symbols), ``quotes``
  (``{"q": {symbol: [price, high, low, volume]}, "conflated": n}``),
  ``error``;
* client → server: ``subscribe`` / ``unsubscribe`` (``{"symbols": [...]}``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..connection import Connection
from ..exceptions import ConnectionClosed

__all__ = ["SYMBOLS", "Market", "Quote", "Ticker"]

_log = logging.getLogger("tether.demo.ticker")

#: Fictional listings: (symbol, company).
SYMBOLS: tuple[tuple[str, str], ...] = (
    ("ACME", "Acme Corp"), ("AERO", "Aero Dynamics"), ("BOLT", "Bolt Mobility"),
    ("BRIK", "Brik Materials"), ("CLAY", "Clay Ceramics"), ("CRUX", "Crux Energy"),
    ("DUNE", "Dune Logistics"), ("DYNA", "Dynamo Motors"), ("ECHO", "Echo Media"),
    ("EMBR", "Ember Foods"), ("FERN", "Fern Pharma"), ("FLUX", "Flux Robotics"),
    ("GLOW", "Glow Lighting"), ("GRVY", "Gravity Space"), ("HALO", "Halo Health"),
    ("HELX", "Helix Bio"), ("INKS", "Inks Publishing"), ("IRIS", "Iris Optics"),
    ("JADE", "Jade Jewellery"), ("JOLT", "Jolt Beverages"), ("KELP", "Kelp Farms"),
    ("KITE", "Kite Airlines"), ("LOOM", "Loom Textiles"), ("LUMA", "Luma Displays"),
    ("MINT", "Mint Payments"), ("MOSS", "Moss Gardens"), ("NEON", "Neon Signs"),
    ("NOVA", "Nova Semiconductors"), ("OPAL", "Opal Mining"), ("ORBT", "Orbit Satellites"),
    ("PEAK", "Peak Outdoor"), ("PIXL", "Pixel Games"), ("QUAY", "Quay Shipping"),
    ("QUIL", "Quill Software"), ("REEF", "Reef Aquatics"), ("RIFT", "Rift Security"),
    ("SAGE", "Sage Analytics"), ("SILK", "Silk Fashion"), ("TERA", "Tera Storage"),
    ("TIDE", "Tide Utilities"), ("UMBR", "Umbra Insurance"), ("UNIT", "Unit Housing"),
    ("VIVA", "Viva Travel"), ("VOLT", "Volt Batteries"), ("WAVE", "Wave Telecom"),
    ("WISP", "Wisp Cloud"), ("XENO", "Xeno Genetics"), ("YARN", "Yarn Retail"),
    ("ZEST", "Zest Kitchens"), ("ZINC", "Zinc Metals"),
)  # fmt: skip

#: Updates per second of every symbol.
RATE = 20.0
#: Recent prices kept per symbol, sent to new subscribers for their sparkline.
HISTORY = 240
#: The largest message a ticker client may send.
MAX_CLIENT_MESSAGE = 4096


@dataclass(slots=True)
class Quote:
    """One symbol's state: the last price, the session's high and low, shares traded."""

    open: float
    price: float
    high: float
    low: float
    volume: int = 0
    history: collections.deque[float] = field(default_factory=lambda: collections.deque())

    def wire(self) -> list[float | int]:
        return [self.price, self.high, self.low, self.volume]


class Market:
    """A random-walk market, stepped by the caller (no clock, no I/O)."""

    def __init__(self, symbols: Iterable[tuple[str, str]] = SYMBOLS, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.names = dict(symbols)
        self.quotes: dict[str, Quote] = {}
        for symbol in self.names:
            start = round(self.random.uniform(8, 480), 2)
            quote = Quote(start, start, start, start)
            quote.history = collections.deque([start], maxlen=HISTORY)
            self.quotes[symbol] = quote
        # Per-tick volatility of each symbol: some are calm, some are wild.
        self.volatility = {s: self.random.uniform(0.0004, 0.0025) for s in self.names}

    def step(self) -> dict[str, list[float | int]]:
        """Move every symbol once; their new quotes on the wire format."""
        rand = self.random
        out: dict[str, list[float | int]] = {}
        for symbol, quote in self.quotes.items():
            # Geometric random walk with a weak pull back to the opening price,
            # so that a long-running demo stays on the same scale.
            drift = 0.002 * math.log(quote.open / quote.price)
            price = quote.price * math.exp(drift + rand.gauss(0.0, self.volatility[symbol]))
            price = max(0.01, round(price, 2))
            quote.price = price
            quote.high = max(quote.high, price)
            quote.low = min(quote.low, price)
            quote.volume += rand.randint(1, 40) * 100
            quote.history.append(price)
            out[symbol] = quote.wire()
        return out

    def catalog(self) -> list[dict[str, Any]]:
        return [
            {"symbol": s, "name": self.names[s], "open": q.open, "quote": q.wire()}
            for s, q in self.quotes.items()
        ]


class _Subscriber:
    """One connection: its symbols and the latest unsent quote of each (conflation)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.symbols: set[str] = set()
        self.pending: dict[str, list[float | int]] = {}
        self.conflated = 0  # quotes replaced before they could be sent
        self.wake = asyncio.Event()

    def offer(self, quotes: dict[str, list[float | int]]) -> None:
        pending = self.pending
        for symbol in self.symbols:
            quote = quotes.get(symbol)
            if quote is None:
                continue
            if symbol in pending:
                self.conflated += 1
            pending[symbol] = quote
        if pending:
            self.wake.set()

    async def write(self) -> None:
        """Send the pending quotes, one batch at a time, until the connection closes."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, {}
            if not batch:
                continue
            message = {"type": "quotes", "q": batch, "conflated": self.conflated}
            # Waits while the write buffer is full: meanwhile offer() conflates.
            await self.connection.send(json.dumps(message, separators=(",", ":")))


class Ticker:
    """The market's clock and its WebSocket endpoint (:meth:`handle`)."""

    def __init__(self, market: Market | None = None, rate: float = RATE) -> None:
        self.market = market or Market()
        self.rate = rate
        self.subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        deadline = loop.time()
        while True:
            quotes = self.market.step()
            for subscriber in self.subscribers:
                subscriber.offer(quotes)
            # A fixed schedule, not sleep(period): no drift, and a late tick
            # (a busy loop) is not followed by a burst of catch-up ticks.
            deadline = max(deadline + period, loop.time())
            await asyncio.sleep(deadline - loop.time())

    async def handle(self, connection: Connection) -> None:
        """Serve one browser: ``hello``, then subscriptions until it leaves."""
        subscriber = _Subscriber(connection)
        hello = {
            "type": "hello",
            "rate": self.rate,
            "policy": "conflate",
            "symbols": self.market.catalog(),
        }
        await connection.send(json.dumps(hello, separators=(",", ":")))
        self.subscribers.add(subscriber)
        writer = asyncio.get_running_loop().create_task(subscriber.write())
        try:
            async for message in connection:
                reply = self._command(subscriber, message)
                if reply is not None:
                    await connection.send(json.dumps(reply, separators=(",", ":")))
        finally:
            self.subscribers.discard(subscriber)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def _command(self, subscriber: _Subscriber, message: str | bytes) -> dict[str, Any] | None:
        """Apply a client's message; the reply to send, if any."""
        if not isinstance(message, str) or len(message) > MAX_CLIENT_MESSAGE:
            return {"type": "error", "error": "send JSON text under 4 KiB"}
        try:
            command = json.loads(message)
        except ValueError:
            return {"type": "error", "error": "not JSON"}
        if not isinstance(command, dict):
            return {"type": "error", "error": "expected an object"}
        kind = command.get("type")
        raw = command.get("symbols")
        if kind not in ("subscribe", "unsubscribe") or not isinstance(raw, list):
            return {"type": "error", "error": "expected subscribe or unsubscribe with symbols"}
        symbols = {s for s in raw if isinstance(s, str) and s in self.market.quotes}
        if kind == "unsubscribe":
            subscriber.symbols -= symbols
            for symbol in symbols:
                subscriber.pending.pop(symbol, None)
            return {"type": "subscribed", "symbols": sorted(subscriber.symbols)}
        added = symbols - subscriber.symbols
        subscriber.symbols |= symbols
        quotes = self.market.quotes
        return {
            "type": "snapshot",
            "symbols": sorted(subscriber.symbols),
            "q": {s: quotes[s].wire() for s in sorted(added)},
            "history": {s: list(quotes[s].history) for s in sorted(added)},
        }
