"""The multiplayer game demo: gem collecting in a shared arena, over raw WebSocket.

**Why the raw WebSocket layer, not the realtime one.** The game's traffic is
a 30 Hz stream of state where only the newest state matters. The realtime
layer's strengths work against it: connection state recovery would store
and replay stale ticks, acks and buffering would delay fresh ones, and every
tick would pay for Socket.IO packet framing. On the raw layer each tick is
one JSON text message encoded once and written to every player with
:func:`tether.broadcast` (one frame for all), which *skips* a player whose
write buffer is full instead of queueing for it. Reconnection is a few lines
of browser code, since a (re)joining player simply gets the whole state.

**Server-authoritative.** Browsers only send their input (which arrow keys
are down); the server moves players at a fixed 30 Hz tick (:class:`Arena`,
no I/O), detects gem pickups and keeps the scores.

**Deltas and keyframes.** Each tick broadcasts what changed (moved players,
respawned gems, scores, joins and leaves) with absolute values; once a
second it broadcasts the whole state instead. A player that missed deltas
(skipped because it was slow) is whole again at the next keyframe, and a
late joiner gets the whole state in its ``welcome``.

Messages (JSON objects with a ``type``): server → client ``welcome`` (your
id, the arena, the state), ``delta``, ``state``, ``error``; client → server
``join`` (``{"name": ...}``), ``input`` (``{"dx": -1|0|1, "dy": -1|0|1}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any

from ..broadcast import broadcast
from ..connection import Connection
from .chat import clean_text

__all__ = ["Arena", "Game", "Player"]

WIDTH, HEIGHT = 1200, 720
PLAYER_RADIUS = 18
GEM_RADIUS = 10
SPEED = 280.0  # arena units per second
GEMS = 6
MAX_PLAYERS = 32
MAX_NAME = 16
TICK_RATE = 30
KEYFRAME_EVERY = TICK_RATE  # ticks: a full state once a second
MAX_CLIENT_MESSAGE = 1024
COLORS = (
    "#ef476f", "#06d6a0", "#118ab2", "#ffd166", "#8338ec", "#ff7f50",
    "#3a86ff", "#fb5607", "#2ec4b6", "#e76f51", "#9b5de5", "#00bbf9",
)  # fmt: skip


@dataclass(slots=True)
class Player:
    id: int
    name: str
    color: str
    x: float
    y: float
    score: int = 0
    dx: int = 0
    dy: int = 0

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "score": self.score,
        }


class Arena:
    """The game's rules, stepped by the caller: no clock, no I/O."""

    def __init__(self, seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.tick = 0
        self.players: dict[int, Player] = {}
        self.gems: dict[int, tuple[float, float]] = {}
        self._ids = itertools.count(1)
        self._joined: list[Player] = []
        self._left: list[int] = []
        for gem in range(GEMS):
            self.gems[gem] = self._spot(GEM_RADIUS)

    def _spot(self, margin: float) -> tuple[float, float]:
        rand = self.random
        return (
            round(rand.uniform(margin + 20, WIDTH - margin - 20), 1),
            round(rand.uniform(margin + 20, HEIGHT - margin - 20), 1),
        )

    def add_player(self, name: str) -> Player:
        player_id = next(self._ids)
        x, y = self._spot(PLAYER_RADIUS)
        player = Player(player_id, name, COLORS[(player_id - 1) % len(COLORS)], x, y)
        self.players[player_id] = player
        self._joined.append(player)
        return player

    def remove_player(self, player_id: int) -> None:
        if self.players.pop(player_id, None) is not None:
            self._left.append(player_id)

    def set_input(self, player_id: int, dx: int, dy: int) -> None:
        player = self.players.get(player_id)
        if player is not None:
            player.dx, player.dy = dx, dy

    def step(self, dt: float) -> dict[str, Any]:
        """Advance one tick; what changed (empty lists left out)."""
        self.tick += 1
        moved: list[list[float]] = []
        scores: list[list[int]] = []
        gems: list[list[float]] = []
        for player in self.players.values():
            if not (player.dx or player.dy):
                continue
            # Diagonal moves are as fast as straight ones.
            norm = math.hypot(player.dx, player.dy)
            step = SPEED * dt / norm
            x = min(max(player.x + player.dx * step, PLAYER_RADIUS), WIDTH - PLAYER_RADIUS)
            y = min(max(player.y + player.dy * step, PLAYER_RADIUS), HEIGHT - PLAYER_RADIUS)
            if (x, y) == (player.x, player.y):
                continue
            player.x, player.y = x, y
            moved.append([player.id, round(x, 1), round(y, 1)])
            for gem, (gx, gy) in list(self.gems.items()):
                if math.hypot(gx - x, gy - y) <= PLAYER_RADIUS + GEM_RADIUS:
                    player.score += 1
                    scores.append([player.id, player.score])
                    self.gems[gem] = self._spot(GEM_RADIUS)
                    gems.append([gem, *self.gems[gem]])
        delta: dict[str, Any] = {"p": moved, "s": scores, "g": gems}
        delta["join"] = [p.wire() for p in self._joined if p.id in self.players]
        delta["leave"] = self._left
        self._joined, self._left = [], []
        return {key: value for key, value in delta.items() if value}

    def state(self) -> dict[str, Any]:
        return {
            "players": [p.wire() for p in self.players.values()],
            "gems": [[gem, x, y] for gem, (x, y) in self.gems.items()],
        }


class Game:
    """The tick loop and the WebSocket endpoint (:meth:`handle`)."""

    def __init__(self, arena: Arena | None = None, tick_rate: int = TICK_RATE) -> None:
        self.arena = arena or Arena()
        self.tick_rate = tick_rate
        self.viewers: set[Connection] = set()  # every open game connection, players or not
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

    def _frame(self) -> str | None:
        """The message for this tick: a delta, a keyframe, or nothing."""
        arena = self.arena
        delta = arena.step(1.0 / self.tick_rate)
        if arena.tick % KEYFRAME_EVERY == 0:
            message: dict[str, Any] = {"type": "state", "tick": arena.tick, **arena.state()}
        elif delta:
            message = {"type": "delta", "tick": arena.tick, **delta}
        else:
            return None
        return json.dumps(message, separators=(",", ":"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.tick_rate
        deadline = loop.time()
        while True:
            frame = self._frame()
            if frame is not None and self.viewers:
                # One frame for everyone; a slow viewer skips it (see the module doc).
                broadcast(self.viewers, frame, slow="skip")
            deadline = max(deadline + period, loop.time())
            await asyncio.sleep(deadline - loop.time())

    def _welcome(self, player: Player | None) -> str:
        arena = self.arena
        message = {
            "type": "welcome",
            "id": None if player is None else player.id,
            "tick": arena.tick,
            "tickRate": self.tick_rate,
            "arena": {"width": WIDTH, "height": HEIGHT, "player": PLAYER_RADIUS, "gem": GEM_RADIUS},
            **arena.state(),
        }
        return json.dumps(message, separators=(",", ":"))

    async def handle(self, connection: Connection) -> None:
        """Serve one tab: it watches at once, and plays after ``join``."""
        await connection.send(self._welcome(None))
        self.viewers.add(connection)
        player: Player | None = None
        try:
            async for message in connection:
                command = _parse(message)
                if command is None:
                    continue
                kind = command.get("type")
                if kind == "join" and player is None:
                    if len(self.arena.players) >= MAX_PLAYERS:
                        await connection.send('{"type":"error","error":"The arena is full"}')
                        continue
                    name = clean_text(command.get("name"), MAX_NAME) or "Anonymous"
                    player = self.arena.add_player(name.replace("\n", " "))
                    await connection.send(self._welcome(player))
                elif kind == "input" and player is not None:
                    self.arena.set_input(
                        player.id, _axis(command.get("dx")), _axis(command.get("dy"))
                    )
        finally:
            self.viewers.discard(connection)
            if player is not None:
                self.arena.remove_player(player.id)


def _parse(message: str | bytes) -> dict[str, Any] | None:
    if not isinstance(message, str) or len(message) > MAX_CLIENT_MESSAGE:
        return None
    try:
        command = json.loads(message)
    except ValueError:
        return None
    return command if isinstance(command, dict) else None


def _axis(value: object) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return -1 if value < 0 else 1 if value > 0 else 0
    return 0
