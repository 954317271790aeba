"""RoomRegistry against a plain reference model (sets), driven by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.realtime.protocol.rooms import RoomRegistry

SIDS = ["s1", "s2", "s3", "s4"]
ROOMS = ["a", "b", "c"]


def test_a_socket_is_in_its_own_room_and_leaves_every_room_on_remove() -> None:
    registry = RoomRegistry()
    registry.add("s1")
    registry.add("s2")
    registry.join("s1", "chat", "news")
    registry.join("s2", "chat")
    assert registry.rooms_of("s1") == ["s1", "chat", "news"]
    assert registry.members("chat") == ["s1", "s2"]
    assert registry.select(["s2"]) == ["s2"]  # emitting to a sid is emitting to its room
    assert registry.remove("s1") == ["s1", "chat", "news"]
    assert registry.members("chat") == ["s2"]
    assert "news" not in registry.rooms()  # empty rooms are dropped
    assert "s1" not in registry
    assert registry.remove("s1") == []


def test_select_union_minus_excluded_rooms_and_sockets() -> None:
    registry = RoomRegistry()
    for sid in SIDS:
        registry.add(sid)
    registry.join("s1", "a")
    registry.join("s2", "a", "b")
    registry.join("s3", "b")
    registry.join("s4", "c")
    assert registry.select() == SIDS
    assert registry.select(["a", "b"]) == ["s1", "s2", "s3"]  # s2 once
    assert registry.select(["a", "b"], except_rooms=["c", "b"]) == ["s1"]
    assert registry.select(except_sids=["s1"]) == ["s2", "s3", "s4"]  # broadcast-style
    assert registry.select(["nope"]) == []


def test_joining_with_an_unknown_socket_is_a_caller_bug() -> None:
    with pytest.raises(KeyError):
        RoomRegistry().join("ghost", "a")


operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(SIDS)),
    st.tuples(st.just("remove"), st.sampled_from(SIDS)),
    st.tuples(st.just("join"), st.sampled_from(SIDS), st.sampled_from(ROOMS)),
    st.tuples(st.just("leave"), st.sampled_from(SIDS), st.sampled_from(ROOMS + SIDS)),
)


@given(
    st.lists(operation, max_size=40),
    st.lists(st.sampled_from(ROOMS + SIDS), max_size=3),
    st.lists(st.sampled_from(ROOMS), max_size=2),
    st.lists(st.sampled_from(SIDS), max_size=2),
)
def test_registry_matches_a_reference_model(
    ops: list[tuple[str, ...]], rooms: list[str], except_rooms: list[str], except_sids: list[str]
) -> None:
    registry = RoomRegistry()
    model: dict[str, set[str]] = {}  # sid -> rooms
    for op, sid, *rest in ops:
        if op == "add":
            registry.add(sid)
            model.setdefault(sid, {sid})
        elif op == "remove":
            registry.remove(sid)
            model.pop(sid, None)
        elif op == "join" and sid in model:
            registry.join(sid, rest[0])
            model[sid].add(rest[0])
        elif op == "leave":
            registry.leave(sid, rest[0])
            model.get(sid, set()).discard(rest[0])
    for sid, joined in model.items():
        assert set(registry.rooms_of(sid)) == joined
    for room in {r for joined in model.values() for r in joined}:
        assert set(registry.members(room)) == {s for s, j in model.items() if room in j}
    assert set(registry.rooms()) == {r for joined in model.values() for r in joined}
    expected = {s for s, j in model.items() if not rooms or j & set(rooms)}
    expected -= {s for s, j in model.items() if j & set(except_rooms)}
    expected -= set(except_sids)
    selected = registry.select(rooms, except_rooms, except_sids)
    assert len(selected) == len(set(selected))  # each socket once
    assert set(selected) == expected
