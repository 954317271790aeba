"""Limits: one definition of every bound, with the options TypedDict in step."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from tether.limits import (
    DEFAULT_LIMITS,
    LimitOptions,
    Limits,
    RealtimeLimitOptions,
    RealtimeLimits,
)

FIELDS = [f.name for f in dataclasses.fields(Limits)]
TIME_FIELDS = [name for name in FIELDS if name.endswith(("_timeout", "_interval"))]
# Abuse limits that are off (None) by default; see docs/security.md.
OPTIONAL_FIELDS = [f.name for f in dataclasses.fields(Limits) if f.metadata["optional"]]
SIZE_FIELDS = [name for name in FIELDS if name not in TIME_FIELDS + OPTIONAL_FIELDS]


def test_every_limit_has_an_option_and_vice_versa() -> None:
    assert list(LimitOptions.__annotations__) == FIELDS
    assert typing.get_type_hints(LimitOptions) == typing.get_type_hints(Limits)
    assert LimitOptions.__required_keys__ == frozenset()


def test_every_realtime_limit_has_an_option_and_vice_versa() -> None:
    fields = [f.name for f in dataclasses.fields(RealtimeLimits)]
    assert list(RealtimeLimitOptions.__annotations__) == fields
    assert typing.get_type_hints(RealtimeLimitOptions) == typing.get_type_hints(RealtimeLimits)
    assert RealtimeLimitOptions.__required_keys__ == frozenset()


def test_defaults_are_safe_and_bounded() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_message_size == 1 << 20
    assert DEFAULT_LIMITS.max_frame_size <= DEFAULT_LIMITS.max_message_size
    assert DEFAULT_LIMITS.write_low_water <= DEFAULT_LIMITS.write_high_water
    for name in SIZE_FIELDS:  # every size bound is on by default
        assert getattr(DEFAULT_LIMITS, name) > 0
    for name in ("open_timeout", "close_timeout"):
        assert getattr(DEFAULT_LIMITS, name) is not None


def test_describe_documents_every_limit() -> None:
    described = Limits.describe()
    assert list(described) == FIELDS
    for name, (default, doc) in described.items():
        assert default == getattr(DEFAULT_LIMITS, name)
        assert doc


def test_limits_are_keyword_options_and_frozen() -> None:
    limits = Limits(max_message_size=10)
    assert limits.max_message_size == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_message_size = 20  # type: ignore[misc]


def test_replace() -> None:
    limits = DEFAULT_LIMITS.replace(max_message_size=5, ping_interval=None)
    assert (limits.max_message_size, limits.ping_interval) == (5, None)
    assert limits.max_frame_size == DEFAULT_LIMITS.max_frame_size
    assert DEFAULT_LIMITS.max_message_size == 1 << 20  # unchanged
    assert DEFAULT_LIMITS.replace() is DEFAULT_LIMITS


def test_replace_rejects_unknown_names() -> None:
    with pytest.raises(TypeError, match="max_mesage_size"):
        DEFAULT_LIMITS.replace(max_mesage_size=5)


def test_replace_validates() -> None:
    with pytest.raises(ValueError):
        DEFAULT_LIMITS.replace(max_frame_size=-1)


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [-1, -0.5, math.nan, True, "10"])
def test_invalid_values_are_rejected(name: str, value: object) -> None:
    if name.startswith("write_"):
        # Keep the water marks ordered so only the bad value is at fault.
        others = {"write_low_water": 0, "write_high_water": 10**9}
        others.pop(name)
    else:
        others = {}
    with pytest.raises(ValueError, match=name):
        Limits(**{name: value, **others})


@pytest.mark.parametrize("name", SIZE_FIELDS)
def test_sizes_cannot_be_turned_off_with_none(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Limits(**{name: None})


@pytest.mark.parametrize("name", TIME_FIELDS)
def test_timeouts_can_be_turned_off_with_none(name: str) -> None:
    assert getattr(Limits(**{name: None}), name) is None


def test_abuse_limits_are_off_by_default_and_can_be_set() -> None:
    assert OPTIONAL_FIELDS == ["max_connections_per_ip", "max_messages_per_second"]
    for name in OPTIONAL_FIELDS:
        assert getattr(DEFAULT_LIMITS, name) is None
        assert getattr(Limits(**{name: 10}), name) == 10


def test_zero_is_allowed() -> None:
    limits = Limits(max_queue=0, write_low_water=0, write_high_water=0, ping_interval=0)
    assert (limits.max_queue, limits.write_high_water, limits.ping_interval) == (0, 0, 0)


def test_write_low_water_must_not_exceed_high_water() -> None:
    assert Limits(write_low_water=100, write_high_water=100).write_low_water == 100
    with pytest.raises(ValueError, match="write_low_water"):
        Limits(write_low_water=101, write_high_water=100)
