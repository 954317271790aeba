"""tether.realtime.adapters.redis.stats: counting and reporting what could not be published."""

from __future__ import annotations

from typing import Any

import pytest

from tether.realtime.adapters.redis.messages import ServerEvent
from tether.realtime.adapters.redis.stats import Failure, RedisStats, report


def failure() -> Failure:
    return Failure("server_event", None, ServerEvent("n1", "ping", []), OSError("down"), False)


def test_a_failure_is_counted_logged_and_given_to_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats, lost = RedisStats(), failure()
    heard: list[Failure] = []
    later: list[Any] = []
    report(lost, stats, heard.append, later.append)
    assert stats.publish_failures == 1
    assert heard == [lost]
    assert later == []
    assert "could not publish server_event to redis (down)" in caplog.text


def test_an_awaitable_from_the_handler_runs_in_order() -> None:
    later: list[Any] = []

    async def handler(f: Failure) -> None:
        pass

    report(failure(), RedisStats(), handler, later.append)
    assert len(later) == 1
    later[0].close()


def test_a_failing_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def handler(f: Failure) -> None:
        raise RuntimeError("boom")

    stats = RedisStats()
    report(failure(), stats, handler, lambda awaitable: None)
    report(failure(), stats, None, lambda awaitable: None)
    assert stats.publish_failures == 2
    assert "on_failure failed" in caplog.text
