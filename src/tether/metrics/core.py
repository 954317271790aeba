"""The metric kinds: :class:`Counter`, :class:`Gauge`, :class:`Histogram`, and
:class:`Family`, what one of them looks like when it is read.

Kept cheap for the event loop: a counter is a plain number in a slot, a
labelled one a dict from the label's value to a number, a histogram a list
of bucket counts with fixed bounds. No locks: tether updates them from its
event loop only, and a reader (a scrape, :meth:`MetricSet.snapshot`) runs
there too. Nothing here does I/O or imports a third-party package; the
Prometheus text format is :mod:`tether.metrics.prometheus`'s job.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

__all__ = [
    "LATENCY_BUCKETS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "HistogramValue",
    "MetricSet",
    "counters",
    "dump_families",
    "load_families",
]

Kind = Literal["counter", "gauge", "histogram"]

#: Seconds, from a quarter of a millisecond to ten seconds: round trips on a
#: LAN start well under a millisecond, and ten seconds is a stalled peer.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclasses.dataclass(frozen=True, slots=True)
class HistogramValue:
    """A histogram as read: cumulative ``buckets`` (upper bound -> observations
    at or below it, ``inf`` last), ``sum`` and ``count``."""

    buckets: dict[float, int]
    sum: float
    count: int


Value = float | HistogramValue


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric as read at a point in time.

    ``label`` is the name of its one label, or None; ``samples`` maps the
    label's value ("" without a label) to the metric's value.
    """

    name: str
    kind: Kind
    help: str
    label: str | None
    samples: dict[str, Value]

    def plain(self) -> object:
        """The value as plain Python: a number, a dict by label value, or for a
        histogram ``{"buckets": {...}, "sum": s, "count": n}``."""
        if self.label is None:
            return _plain(self.samples.get("", 0))
        return {key: _plain(value) for key, value in self.samples.items()}


def _plain(value: Value) -> object:
    if isinstance(value, HistogramValue):
        return {"buckets": dict(value.buckets), "sum": value.sum, "count": value.count}
    return value


class Counter:
    """A number that only goes up, with or without one label.

    Without a label, the hot path adds to :attr:`value` directly; with one,
    :meth:`inc` adds to the entry of a label value (a dict lookup).
    """

    __slots__ = ("help", "label", "name", "value", "values")

    kind: Kind = "counter"

    def __init__(self, name: str, help: str, label: str | None = None) -> None:
        self.name = name
        self.help = help
        self.label = label
        self.value: float = 0
        self.values: dict[str, float] = {}

    def inc(self, key: str = "", amount: float = 1) -> None:
        """Add ``amount`` under the label value ``key`` (ignored without a label)."""
        if self.label is None:
            self.value += amount
        else:
            self.values[key] = self.values.get(key, 0) + amount

    def read(self) -> Family:
        samples: dict[str, Value] = (
            {"": self.value} if self.label is None else dict(sorted(self.values.items()))
        )
        return Family(self.name, self.kind, self.help, self.label, samples)


class Gauge(Counter):
    """A number that goes up and down; or, given ``read=``, one computed when
    read (from what the server holds anyway: nothing to update)."""

    __slots__ = ("_read",)

    kind: Kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        label: str | None = None,
        *,
        read: Callable[[], float | Mapping[str, float]] | None = None,
    ) -> None:
        super().__init__(name, help, label)
        self._read = read

    def dec(self, key: str = "", amount: float = 1) -> None:
        self.inc(key, -amount)

    def read(self) -> Family:
        if self._read is not None:
            current = self._read()
            if isinstance(current, Mapping):
                self.values = dict(current)
            else:
                self.value = current
        return super().read()


class Histogram:
    """Observations counted in fixed buckets (upper bounds), with their sum."""

    __slots__ = ("bounds", "count", "counts", "help", "name", "sum")

    kind: Kind = "histogram"
    label = None

    def __init__(self, name: str, help: str, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le=).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def read(self) -> Family:
        buckets: dict[float, int] = {}
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets[bound] = total
        value = HistogramValue(buckets, self.sum, self.count)
        return Family(self.name, self.kind, self.help, None, {"": value})


Metric = Counter | Histogram


def counters(rows: Iterable[tuple[str, str, float]]) -> list[Family]:
    """Families for counters kept as plain int attributes in the hot path:
    ``(name, help, value)`` each."""
    return [Family(name, "counter", text, None, {"": value}) for name, text, value in rows]


class MetricSet:
    """Metrics read together: a server's, or a realtime server's.

    Subclasses create their metrics in ``__init__`` and list them in
    :meth:`metrics`. :meth:`families` reads them all; :meth:`snapshot` gives
    them as plain Python, by name.
    """

    __slots__ = ()

    def metrics(self) -> Iterator[Metric]:
        return iter(())

    def families(self) -> list[Family]:
        return [metric.read() for metric in self.metrics()]

    def snapshot(self) -> dict[str, object]:
        """Every metric by name: a number; a dict by label value for a labelled
        one; ``{"buckets": {upper bound: cumulative count}, "sum", "count"}``
        for a histogram. Counters only go up: a rate is the difference of two
        snapshots over the time between them.

        >>> from tether.metrics import WebSocketMetrics
        >>> WebSocketMetrics().snapshot()["tether_messages_received_total"]
        0
        """
        return {family.name: family.plain() for family in self.families()}


def dump_families(families: Iterable[Family]) -> list[dict[str, object]]:
    """``families`` as JSON-able data, for another process (:func:`load_families`).

    A histogram's bounds are strings (``"inf"`` for the last), since JSON has
    no infinity.
    """
    out: list[dict[str, object]] = []
    for family in families:
        samples: dict[str, object] = {}
        for key, value in family.samples.items():
            if isinstance(value, HistogramValue):
                buckets = [[repr(bound), count] for bound, count in value.buckets.items()]
                samples[key] = {"buckets": buckets, "sum": value.sum, "count": value.count}
            else:
                samples[key] = value
        out.append(
            {
                "name": family.name,
                "kind": family.kind,
                "help": family.help,
                "label": family.label,
                "samples": samples,
            }
        )
    return out


def load_families(data: Sequence[Mapping[str, object]]) -> list[Family]:
    """The families :func:`dump_families` wrote; ``ValueError`` if ``data`` is not that."""
    out = []
    try:
        for item in data:
            kind = item["kind"]
            if kind not in ("counter", "gauge", "histogram"):
                raise ValueError(f"unknown metric kind {kind!r}")
            samples: dict[str, Value] = {}
            raw = item["samples"]
            if not isinstance(raw, dict):
                raise TypeError("samples must be an object")
            for key, value in raw.items():
                if kind == "histogram":
                    buckets = {float(bound): int(count) for bound, count in value["buckets"]}
                    samples[str(key)] = HistogramValue(
                        buckets, float(value["sum"]), int(value["count"])
                    )
                else:
                    samples[str(key)] = float(value)
            label = item["label"]
            out.append(
                Family(
                    str(item["name"]),
                    kind,
                    str(item["help"]),
                    None if label is None else str(label),
                    samples,
                )
            )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a dump of metric families: {exc!r}") from exc
    return out
