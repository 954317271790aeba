"""The token bucket and per-address counter behind the abuse limits."""

from __future__ import annotations

from tether.ratelimit import AddressCounter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_of_one_second_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, clock=clock)
    assert bucket.take(10)
    assert not bucket.take(1)
    clock.now += 0.5  # refills 5, minus the overdraft of 1
    assert bucket.take(4)
    assert not bucket.take(1)


def test_bucket_does_not_save_up_past_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(10, clock=clock)
    clock.now += 3600
    assert bucket.take(10)
    assert not bucket.take(1)


def test_bucket_below_one_per_second_still_allows_one() -> None:
    clock = Clock()
    bucket = TokenBucket(0.5, clock=clock)
    assert bucket.take(1)
    assert not bucket.take(1)
    clock.now += 4
    assert bucket.take(1)


def test_counter_caps_each_address_and_forgets_it() -> None:
    counter = AddressCounter(2)
    assert counter.add("a") and counter.add("a")
    assert not counter.add("a")  # counted anyway, until removed
    assert counter.add("b")
    assert counter.count("a") == 3 and len(counter) == 2
    for _ in range(3):
        counter.remove("a")
    counter.remove("b")
    assert len(counter) == 0


def test_counter_without_cap_only_counts() -> None:
    counter = AddressCounter(None)
    assert all(counter.add("a") for _ in range(1000))
    assert counter.count("a") == 1000
