"""tether.metrics.core: the metric kinds as read by snapshot() and by Prometheus."""

from __future__ import annotations

from collections.abc import Iterator

from metrics.scrape import samples
from tether.metrics import Counter, Gauge, Histogram, MetricSet
from tether.metrics.core import Metric
from tether.metrics.prometheus import render


class Example(MetricSet):
    def __init__(self) -> None:
        self.plain = Counter("example_plain_total", "A counter")
        self.labelled = Counter("example_labelled_total", "By kind", "kind")
        self.level = Gauge("example_level", "Up and down")
        self.computed = Gauge("example_computed", "Read when read", "side", read=self.sides)
        self.latency = Histogram("example_seconds", "Latency", (0.1, 1.0))
        self.left = 3

    def sides(self) -> dict[str, float]:
        return {"left": self.left, "right": 1}

    def metrics(self) -> Iterator[Metric]:
        yield from (self.plain, self.labelled, self.level, self.computed, self.latency)


def test_snapshot_and_the_prometheus_text_agree() -> None:
    example = Example()
    example.plain.value += 2
    example.labelled.inc("a")
    example.labelled.inc("b", 5)
    example.level.inc()
    example.level.dec(amount=3)
    for value in (0.05, 0.1, 0.5, 7.0):  # 0.1 is in the 0.1 bucket (le)
        example.latency.observe(value)
    example.left = 4
    assert example.snapshot() == {
        "example_plain_total": 2,
        "example_labelled_total": {"a": 1, "b": 5},
        "example_level": -2,
        "example_computed": {"left": 4, "right": 1},
        "example_seconds": {
            "buckets": {0.1: 2, 1.0: 3, float("inf"): 4},
            "sum": 7.65,
            "count": 4,
        },
    }
    found = samples(render([example]).decode())
    assert found == {
        "example_plain_total": 2,
        'example_labelled_total{kind="a"}': 1,
        'example_labelled_total{kind="b"}': 5,
        "example_level": -2,
        'example_computed{side="left"}': 4,
        'example_computed{side="right"}': 1,
        'example_seconds_bucket{le="0.1"}': 2,
        'example_seconds_bucket{le="1.0"}': 3,
        'example_seconds_bucket{le="+Inf"}': 4,
        "example_seconds_sum": 7.65,
        "example_seconds_count": 4,
    }
