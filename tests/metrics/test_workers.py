"""Every worker's metrics from any worker (tether.realtime.workers.metrics): the
figures as another process reads them, the worker label, what is left out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from metrics.scrape import samples
from tether.metrics import WebSocketMetrics
from tether.metrics.core import Family, HistogramValue, dump_families, load_families
from tether.metrics.prometheus import render_by
from tether.realtime.workers.metrics import STALE, WorkersEndpoint

INF = float("inf")


def families() -> list[Family]:
    return [
        Family("jobs_total", "counter", "Jobs done", None, {"": 3}),
        Family("refused_total", "counter", "Refused, by reason", "reason", {"a": 1, "b": 2}),
        Family("open", "gauge", "Open now", None, {"": 5}),
        Family(
            "lag_seconds",
            "histogram",
            "Loop lag",
            None,
            {"": HistogramValue({0.1: 4, 1.0: 6, INF: 7}, 2.5, 7)},
        ),
    ]


def test_families_survive_json_to_another_process() -> None:
    data = json.loads(json.dumps(dump_families(families())))
    assert load_families(data) == families()
    with pytest.raises(ValueError):
        load_families([{"name": "x", "kind": "summary", "help": "", "label": None, "samples": {}}])
    with pytest.raises(ValueError):
        load_families([{"name": "x"}])


def test_every_group_is_a_series_of_one_metric_per_name() -> None:
    other = [
        Family("jobs_total", "counter", "Jobs done", None, {"": 10}),
        Family("refused_total", "counter", "Refused, by reason", "reason", {"a": 4}),
    ]
    text = render_by("worker", {"0": families(), "1": other}).decode()
    assert text.count("# TYPE jobs_total counter") == 1  # one metric, two series
    found = samples(text)
    assert found['jobs_total{worker="0"}'] == 3 and found['jobs_total{worker="1"}'] == 10
    assert found['refused_total{reason="b",worker="0"}'] == 2
    assert found['refused_total{reason="a",worker="1"}'] == 4
    assert found['lag_seconds_bucket{le="+Inf",worker="0"}'] == 7
    assert found['lag_seconds_sum{worker="0"}'] == 2.5
    assert 'open{worker="1"}' not in found  # a worker without it has no series


def publish(directory: Path, index: int, when: float, value: float) -> None:
    data = {
        "index": index,
        "time": when,
        "families": dump_families([Family("jobs_total", "counter", "Jobs", None, {"": value})]),
    }
    (directory / f"metrics-{index}.json").write_text(json.dumps(data))


def test_a_worker_serves_its_own_figures_and_the_live_others(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    mine = WebSocketMetrics()
    mine.messages_received = 42
    endpoint = WorkersEndpoint("/metrics", token=None, directory=tmp_path, index=0)
    now = time.time()
    publish(tmp_path, 0, now, 999)  # its own old file: the live figures win
    publish(tmp_path, 1, now, 7)
    publish(tmp_path, 2, now - STALE - 1, 8)  # stopped publishing: left out
    (tmp_path / "metrics-3.json").write_text("{not json")  # half a file: skipped
    found = samples(endpoint.render([mine]).decode())
    assert found['tether_messages_received_total{worker="0"}'] == 42
    assert found['jobs_total{worker="1"}'] == 7
    assert not any('worker="2"' in key or 'worker="3"' in key for key in found)
    assert 'jobs_total{worker="0"}' not in found
