"""Prometheus metrics of the runtime; the names and labels are a contract (docs/metrics.md).

Metric names are defined once here. Each server builds its own ``RuntimeMetrics`` on its own
``CollectorRegistry`` so several servers can live in one process (tests do this); the hot
path uses ``ModelMetrics``, whose label children are resolved once per model.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

QUEUE_DEPTH: Final = "sluice_queue_depth"
REQUESTS: Final = "sluice_requests"  # exposed as sluice_requests_total
REQUEST_DURATION: Final = "sluice_request_duration_seconds"
QUEUE_DURATION: Final = "sluice_queue_duration_seconds"
COMPUTE_DURATION: Final = "sluice_compute_duration_seconds"
BATCH_SIZE: Final = "sluice_batch_size"
MODEL_INFO: Final = "sluice_model_info"

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RuntimeMetrics:
    """All runtime metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queue_depth = Gauge(
            QUEUE_DEPTH,
            "Inference requests waiting in the queue plus executing, per model.",
            ["model"],
            registry=registry,
        )
        self.requests = Counter(
            REQUESTS,
            "Inference requests answered, by model, protocol and HTTP-equivalent status code.",
            ["model", "protocol", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            REQUEST_DURATION,
            "Time from a decoded request to its outputs, including queueing and compute.",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_duration = Histogram(
            QUEUE_DURATION,
            "Time a request waited in the batching queue before its batch started.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.compute_duration = Histogram(
            COMPUTE_DURATION,
            "Time one batch took in the worker: merge, onnxruntime run, split.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Rows (size of dim 0) in each onnxruntime run; 1 per request for unbatched models.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            MODEL_INFO,
            "Always 1 for a loaded model; the provider label names its execution provider.",
            ["model", "provider"],
            registry=registry,
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
