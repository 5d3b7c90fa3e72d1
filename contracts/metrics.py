"""The metrics the runtime exports: names, types, label names and histogram buckets.

The runtime registers exactly these (``sluice.runtime.metrics``); the autoscaler reads
``QUEUE_DEPTH`` and the rollout analysis reads ``REQUESTS`` and ``REQUEST_DURATION``, so a
name or label changed here is a breaking change for both. Names follow Prometheus'
conventions: base units (``_seconds``), and ``_total`` on counters. docs/metrics.md says what
each one means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

MetricType = Literal["counter", "gauge", "histogram"]

# Label names.
MODEL: Final = "model"
PROTOCOL: Final = "protocol"
CODE: Final = "code"
PROVIDER: Final = "provider"

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


@dataclass(frozen=True)
class Metric:
    """One metric family as queries see it.

    ``name`` is the name in queries: a counter's ends in ``_total``, and its family (what
    a Prometheus client registers and a text parser reports) is ``family``.
    """

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")
        if (self.type == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: histograms, and only histograms, have buckets")

    @property
    def family(self) -> str:
        """The family name: ``name`` without a counter's ``_total``."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


QUEUE_DEPTH: Final = Metric(
    "sluice_queue_depth",
    "gauge",
    (MODEL,),
    "Inference requests waiting in the queue plus executing, per model.",
)
REQUESTS: Final = Metric(
    "sluice_requests_total",
    "counter",
    (MODEL, PROTOCOL, CODE),
    "Inference requests answered, by model, protocol and HTTP-equivalent status code.",
)
REQUEST_DURATION: Final = Metric(
    "sluice_request_duration_seconds",
    "histogram",
    (MODEL, PROTOCOL),
    "Time from a decoded request to its outputs, including queueing and compute.",
    LATENCY_BUCKETS,
)
QUEUE_DURATION: Final = Metric(
    "sluice_queue_duration_seconds",
    "histogram",
    (MODEL,),
    "Time a request waited in the batching queue before its batch started.",
    LATENCY_BUCKETS,
)
COMPUTE_DURATION: Final = Metric(
    "sluice_compute_duration_seconds",
    "histogram",
    (MODEL,),
    "Time one batch took in the worker: merge, onnxruntime run, split.",
    LATENCY_BUCKETS,
)
BATCH_SIZE: Final = Metric(
    "sluice_batch_size",
    "histogram",
    (MODEL,),
    "Rows (size of dim 0) in each onnxruntime run; 1 per request for unbatched models.",
    BATCH_BUCKETS,
)
MODEL_INFO: Final = Metric(
    "sluice_model_info",
    "gauge",
    (MODEL, PROVIDER),
    "Always 1 for a loaded model; the provider label names its execution provider.",
)

RUNTIME_METRICS: Final = (
    QUEUE_DEPTH,
    REQUESTS,
    REQUEST_DURATION,
    QUEUE_DURATION,
    COMPUTE_DURATION,
    BATCH_SIZE,
    MODEL_INFO,
)
