"""The game demo: the arena's rules, and players over WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import tether
from conftest import StartServer, ws_uri
from helpers import timeout
from tether.demo import game
from tether.demo.game import Arena, Game


def test_players_move_at_speed_and_stop_at_walls() -> None:
    arena = Arena(seed=1)
    player = arena.add_player("ada")
    assert arena.step(1 / 30)["join"][0]["name"] == "ada"
    player.x, player.y = 100.0, 100.0
    arena.set_input(player.id, 1, 0)
    delta = arena.step(1 / 30)
    assert delta["p"] == [[player.id, pytest.approx(100 + game.SPEED / 30, abs=0.1), 100.0]]
    arena.set_input(player.id, 1, 1)  # diagonal: no faster
    arena.step(1.0)
    assert player.x - (100 + game.SPEED / 30) == pytest.approx(game.SPEED / 2**0.5, abs=0.1)
    arena.set_input(player.id, -1, 0)
    arena.step(100.0)
    assert player.x == game.PLAYER_RADIUS
    arena.step(1.0)  # against the wall: not a move
    assert "p" not in arena.step(1.0)


def test_a_gem_scores_and_respawns() -> None:
    arena = Arena(seed=2)
    player = arena.add_player("ada")
    gem, (x, y) = next(iter(arena.gems.items()))
    player.x, player.y = x - 30, y
    arena.set_input(player.id, 1, 0)
    delta = arena.step(0.1)
    assert delta["s"] == [[player.id, 1]]
    assert delta["g"][0][0] == gem and arena.gems[gem] != (x, y)


def test_leaving_is_reported_once() -> None:
    arena = Arena(seed=3)
    player = arena.add_player("ada")
    arena.step(0.1)
    arena.remove_player(player.id)
    arena.remove_player(player.id)
    assert arena.step(0.1) == {"leave": [player.id]}
    assert arena.step(0.1) == {}


async def recv_until(client: tether.Connection, kind: str) -> Any:
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout(2)))
        if message["type"] == kind:
            return message


async def test_players_see_each_other_and_late_joiners_get_the_state(
    start_server: StartServer,
) -> None:
    server_game = Game()
    server_game.start()
    try:
        server = await start_server(server_game.handle)
        async with tether.connect(ws_uri(server)) as ada, tether.connect(ws_uri(server)) as bob:
            await ada.send(json.dumps({"type": "join", "name": "Ada"}))
            ada_id = (await recv_until(ada, "welcome"))["id"]
            while ada_id is None:
                ada_id = (await recv_until(ada, "welcome"))["id"]
            start = server_game.arena.players[ada_id].x
            step = 1 if start < game.WIDTH / 2 else -1
            await ada.send(json.dumps({"type": "input", "dx": step, "dy": 0}))
            # Bob only watches: he gets the deltas of Ada's moves.
            while True:
                delta = await recv_until(bob, "delta")
                moves = {p[0]: p[1] for p in delta.get("p", [])}
                if ada_id in moves and (moves[ada_id] - start) * step > 20:
                    break
            await ada.send(json.dumps({"type": "input", "dx": 0, "dy": 0}))
            async with tether.connect(ws_uri(server)) as late:
                welcome = await recv_until(late, "welcome")
                (player,) = welcome["players"]
                assert player["id"] == ada_id and player["name"] == "Ada"
                assert (player["x"] - start) * step > 20
                keyframe = await recv_until(late, "state")
                assert [p["id"] for p in keyframe["players"]] == [ada_id]
    finally:
        await server_game.stop()
