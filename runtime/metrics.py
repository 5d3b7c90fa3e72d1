"""Prometheus metrics of the runtime, registered from their contract (docs/metrics.md).

Names, types, labels and buckets come from ``sluice.contracts.metrics``, which the autoscaler
and the rollout analysis read too. Each server builds its own ``RuntimeMetrics`` on its own
``CollectorRegistry`` so several servers can live in one process (tests do this); the hot
path uses ``ModelMetrics``, whose label children are resolved once per model.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sluice.contracts import metrics as contract
from sluice.contracts.metrics import Metric


class RuntimeMetrics:
    """All runtime metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queue_depth = self._gauge(contract.QUEUE_DEPTH)
        self.requests = Counter(
            contract.REQUESTS.name,
            contract.REQUESTS.help,
            contract.REQUESTS.labels,
            registry=registry,
        )
        self.request_duration = self._histogram(contract.REQUEST_DURATION)
        self.queue_duration = self._histogram(contract.QUEUE_DURATION)
        self.compute_duration = self._histogram(contract.COMPUTE_DURATION)
        self.batch_size = self._histogram(contract.BATCH_SIZE)
        self.model_info = self._gauge(contract.MODEL_INFO)

    def _gauge(self, metric: Metric) -> Gauge:
        return Gauge(metric.name, metric.help, metric.labels, registry=self.registry)

    def _histogram(self, metric: Metric) -> Histogram:
        return Histogram(
            metric.name,
            metric.help,
            metric.labels,
            buckets=metric.buckets,
            registry=self.registry,
        )

    def for_model(self, model: str) -> ModelMetrics:
        """Label children for one model, resolved once so the hot path does no lookups."""
        return ModelMetrics(self, model)


class ModelMetrics:
    """The per-model label children the batcher and data plane update per request."""

    def __init__(self, metrics: RuntimeMetrics, model: str) -> None:
        self.queue_depth = metrics.queue_depth.labels(model)
        self.queue_duration = metrics.queue_duration.labels(model)
        self.compute_duration = metrics.compute_duration.labels(model)
        self.batch_size = metrics.batch_size.labels(model)
