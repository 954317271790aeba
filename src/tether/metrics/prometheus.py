"""The Prometheus text format, through ``prometheus_client`` (``tether[metrics]``).

:class:`Collector` turns metric sets into ``prometheus_client`` families, for
its registry (``REGISTRY.register(Collector(server.metrics))``, then any of
its exporters) or for :func:`render`, which :class:`~.endpoint.MetricsEndpoint`
serves. ``prometheus_client`` is imported here only: the counting itself
needs nothing outside the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .core import Family, HistogramValue, MetricSet

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "the Prometheus exposition needs prometheus_client: pip install 'tether[metrics]'"
    ) from exc

__all__ = ["CONTENT_TYPE", "Collector", "render", "render_by"]

#: The Content-Type of :func:`render`'s text (format 0.0.4).
CONTENT_TYPE: str = CONTENT_TYPE_LATEST


class Collector:
    """A ``prometheus_client`` collector over tether metric sets, read at each scrape."""

    def __init__(self, *sets: MetricSet) -> None:
        self.sets = list(sets)

    def collect(self) -> Iterator[Any]:
        for metric_set in self.sets:
            for family in metric_set.families():
                yield _convert([((), family)])

    def describe(self) -> list[Any]:
        return []  # names are checked at collect(), not at register()


def _convert(found: Sequence[tuple[Sequence[str], Family]], outer: Sequence[str] = ()) -> Any:
    """One ``prometheus_client`` family from tether families of one name, each
    read in a place its values of the ``outer`` labels name (none for the
    figures of one process)."""
    first = found[0][1]
    if first.kind == "histogram":
        histogram = HistogramMetricFamily(first.name, first.help, labels=list(outer))
        for values, family in found:
            value = family.samples[""]
            assert isinstance(value, HistogramValue)
            buckets = [(_le(bound), count) for bound, count in value.buckets.items()]
            histogram.add_metric(list(values), buckets, value.sum)
        return histogram
    inner = [first.label] if first.label is not None else []
    kind = CounterMetricFamily if first.kind == "counter" else GaugeMetricFamily
    result = kind(first.name, first.help, labels=[*outer, *inner])
    for values, family in found:
        for key, sample in family.samples.items():
            assert not isinstance(sample, HistogramValue)
            result.add_metric([*values, key] if inner else list(values), sample)
    return result


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _render(collector: Any) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    data: bytes = generate_latest(registry)
    return data


def render(sets: Iterable[MetricSet]) -> bytes:
    """The metrics of ``sets`` in the Prometheus text format (:data:`CONTENT_TYPE`)."""
    return _render(Collector(*sets))


class _ByLabel:
    """A collector of families read in several places (``groups``: a value
    of ``label`` -> the families read there), one series per place."""

    def __init__(self, label: str, groups: Mapping[str, Iterable[Family]]) -> None:
        self.label = label
        self.groups = {value: list(families) for value, families in groups.items()}

    def collect(self) -> Iterator[Any]:
        named: dict[str, list[tuple[Sequence[str], Family]]] = {}
        for value, families in self.groups.items():
            for family in families:
                named.setdefault(family.name, []).append(((value,), family))
        for found in named.values():
            yield _convert(found, (self.label,))

    def describe(self) -> list[Any]:
        return []


def render_by(label: str, groups: Mapping[str, Iterable[Family]]) -> bytes:
    """The families of each group, every series labelled with ``label`` set
    to the group's key (``render_by("worker", {"0": ..., "1": ...})``), in the
    Prometheus text format: one metric per name, a series per group."""
    return _render(_ByLabel(label, groups))
