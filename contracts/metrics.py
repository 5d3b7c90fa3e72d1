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

# The router's metrics are Envoy's own cluster statistics, as Envoy's Prometheus endpoint
# names them (counters carry no ``_total`` there). Each variant has one Envoy cluster per
# protocol, named by ``router_cluster``, and every series carries the cluster's name in
# ``ROUTER_CLUSTER_LABEL``; the rollout analysis reads a variant's requests, errors and
# latency from these. docs/metrics.md lists them.
ROUTER_CLUSTER_LABEL: Final = "envoy_cluster_name"
# Requests answered, by the class of their HTTP status (label ROUTER_CODE_CLASS_LABEL: "2", "5").
ROUTER_REQUESTS_BY_CLASS: Final = "envoy_cluster_upstream_rq_xx"
ROUTER_CODE_CLASS_LABEL: Final = "envoy_response_code_class"
# gRPC calls on a variant's gRPC cluster: all of them, and those whose grpc-status was not OK
# (their HTTP status is 200, so only these say a gRPC call failed).
ROUTER_GRPC_CALLS: Final = "envoy_cluster_grpc_total"
ROUTER_GRPC_FAILURES: Final = "envoy_cluster_grpc_failure"
# Time from the request's first byte sent upstream to the response's last byte, histogram in ms.
ROUTER_REQUEST_TIME_MS: Final = "envoy_cluster_upstream_rq_time"
# Requests in flight to a variant.
ROUTER_ACTIVE_REQUESTS: Final = "envoy_cluster_upstream_rq_active"
# Protocols, as the last part of a router cluster's name.
ROUTER_HTTP: Final = "http"
ROUTER_GRPC: Final = "grpc"


def router_cluster(variant: str, protocol: str) -> str:
    """The Envoy cluster carrying ``variant``'s traffic of ``protocol`` (``ROUTER_HTTP`` or
    ``ROUTER_GRPC``); variant names hold no ``_``, so the name splits back unambiguously."""
    return f"{variant}_{protocol}"
