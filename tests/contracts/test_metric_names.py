"""sluice.contracts.metrics, from both sides: what the runtime exports, what docs promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sluice.contracts import metrics
from sluice.contracts.metrics import Metric
from sluice.runtime.metrics import RuntimeMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_the_runtime_exports_exactly_the_contract() -> None:
    """Families, types and label names of a runtime registry with one series each."""
    runtime = RuntimeMetrics(CollectorRegistry())
    runtime.queue_depth.labels("m").set(1)
    runtime.requests.labels("m", "grpc", "200").inc()
    runtime.request_duration.labels("m", "grpc").observe(0.1)
    runtime.queue_duration.labels("m").observe(0.1)
    runtime.compute_duration.labels("m").observe(0.1)
    runtime.batch_size.labels("m").observe(4)
    runtime.model_info.labels("m", "CPUExecutionProvider").set(1)
    exported = {}
    for family in text_string_to_metric_families(generate_latest(runtime.registry).decode()):
        # The client's creation timestamps are families of their own, and no contract.
        if family.name.endswith("_created"):
            continue
        sample = family.samples[0]
        labels = set(sample.labels) - {"le"}
        buckets = tuple(
            float(s.labels["le"])
            for s in family.samples
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
        )
        exported[family.name] = (family.type, labels, buckets)
    assert exported == {
        m.family: (m.type, set(m.labels), m.buckets) for m in metrics.RUNTIME_METRICS
    }


def test_the_counter_is_queried_with_total() -> None:
    assert metrics.REQUESTS.name == "sluice_requests_total"
    assert metrics.REQUESTS.family == "sluice_requests"
    assert metrics.QUEUE_DEPTH.family == metrics.QUEUE_DEPTH.name


@pytest.mark.parametrize(
    ("name", "kind", "buckets", "problem"),
    [
        ("sluice_things", "counter", (), "_total"),
        ("sluice_things_total", "gauge", (), "_total"),
        ("sluice_wait_seconds", "histogram", (), "buckets"),
        ("sluice_depth", "gauge", (1.0,), "buckets"),
    ],
)
def test_naming_rules_are_checked(
    name: str, kind: metrics.MetricType, buckets: tuple[float, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Metric(name, kind, ("model",), "help", buckets)


@pytest.mark.parametrize("metric", metrics.RUNTIME_METRICS, ids=lambda m: m.name)
def test_docs_list_every_metric_with_its_type_and_labels(metric: Metric) -> None:
    rows = {
        match["name"]: (match["type"], match["labels"])
        for match in re.finditer(
            r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]+) \|",
            DOCS.read_text(),
            re.MULTILINE,
        )
    }
    kind, labels = rows[metric.name]
    assert kind == metric.type
    assert re.findall(r"`(\w+)`", labels) == list(metric.labels)
