"""The canary analysis: a variant's requests, errors and latency read from Prometheus text,
and the verdict on one step of a rollout.

Pure functions, called by the reconciler (through ``router_metrics.py``, which reads the
text) and by ``rollout.py``, which acts on the verdict. The figures are cumulative counters,
as a pod exports them: a ``Sample`` is one reading (summed over pods with ``add``), and a
step's window is the difference between the reading now and the one taken when the window
began (``since``).

Two sources give the same figures. Sluice's router (Envoy) counts per variant cluster
(``sluice.contracts.metrics``, bottom): requests are every answer on the variant's HTTP and
gRPC clusters, errors are the HTTP cluster's 5xx answers plus the gRPC cluster's calls whose
grpc-status was not OK (a failed gRPC call is answered with HTTP 200, so only its status says
it failed), latency is Envoy's upstream request time. When a Gateway API implementation routes
instead, the runtime's own ``REQUESTS`` (errors: code 500 and above) and ``REQUEST_DURATION``
give them.

The 99th percentile is estimated from the histogram's buckets as Prometheus'
``histogram_quantile`` does: linear interpolation inside the bucket holding the rank, so it is
no finer than the buckets themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sluice.contracts import metrics as contract

from .spec import AnalysisSpec

VerdictKind = Literal["Passed", "Failed", "Waiting"]
PASSED: VerdictKind = "Passed"
FAILED: VerdictKind = "Failed"
WAITING: VerdictKind = "Waiting"

# Cumulative histogram buckets: (upper bound in seconds, observations at or below it), by
# increasing bound, +Inf last.
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Sample:
    """One reading of a variant's counters (or a window: the difference of two readings)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: Buckets = ()


@dataclass(frozen=True)
class Verdict:
    """The judgement of one window, with the figures it rests on and why, in words."""

    verdict: VerdictKind
    requests: int
    error_rate: float
    p99_latency_seconds: float | None
    reason: str


def from_router_metrics(text: str, variant: str) -> Sample:
    """``variant``'s figures in the Prometheus text of one router pod (Envoy's statistics).

    Raises ``ValueError`` for text that is not Prometheus' exposition format.
    """
    http = contract.router_cluster(variant, contract.ROUTER_HTTP)
    grpc = contract.router_cluster(variant, contract.ROUTER_GRPC)
    requests = errors = 0.0
    histograms: list[Buckets] = []
    for family in text_string_to_metric_families(text):
        if family.name == _family(contract.ROUTER_REQUESTS_BY_CLASS):
            for labels, value in _counter(family):
                cluster = labels.get(contract.ROUTER_CLUSTER_LABEL)
                if cluster in (http, grpc):
                    requests += value
                    if cluster == http and labels.get(contract.ROUTER_CODE_CLASS_LABEL) == "5":
                        errors += value
        elif family.name == _family(contract.ROUTER_GRPC_FAILURES):
            for labels, value in _counter(family):
                if labels.get(contract.ROUTER_CLUSTER_LABEL) == grpc:
                    errors += value
        elif family.name == contract.ROUTER_REQUEST_TIME_MS:
            histograms += _histograms(
                family,
                lambda labels: labels.get(contract.ROUTER_CLUSTER_LABEL) in (http, grpc),
                scale=1e-3,  # Envoy times in milliseconds
            )
    return Sample(requests, errors, _sum_buckets(histograms))


def from_runtime_metrics(text: str, model: str) -> Sample:
    """``model``'s figures in the Prometheus text of one runtime pod, over both protocols.

    Raises ``ValueError`` for text that is not Prometheus' exposition format.
    """
    requests = errors = 0.0
    histograms: list[Buckets] = []
    for family in text_string_to_metric_families(text):
        if family.name == contract.REQUESTS.family:
            for labels, value in _counter(family):
                if labels.get(contract.MODEL) == model:
                    requests += value
                    if _server_error(labels.get(contract.CODE, "")):
                        errors += value
        elif family.name == contract.REQUEST_DURATION.name:
            histograms += _histograms(family, lambda labels: labels.get(contract.MODEL) == model)
    return Sample(requests, errors, _sum_buckets(histograms))


def add(a: Sample, b: Sample) -> Sample:
    """The two readings summed: two pods' counters as one."""
    return Sample(
        a.requests + b.requests, a.errors + b.errors, _sum_buckets([a.buckets, b.buckets])
    )


def since(now: Sample, base: Sample) -> Sample | None:
    """What was counted between ``base`` and ``now``; None when a counter went backwards (a
    pod restarted or left, so the difference means nothing and a new base is needed)."""
    bounds = sorted({bound for bound, _ in (*now.buckets, *base.buckets)})
    buckets = tuple((b, _at(now.buckets, b) - _at(base.buckets, b)) for b in bounds)
    window = Sample(now.requests - base.requests, now.errors - base.errors, buckets)
    if window.requests < 0 or window.errors < 0 or any(count < 0 for _, count in buckets):
        return None
    return window


def p99(sample: Sample) -> float | None:
    """The 99th-percentile latency in seconds, estimated from the buckets; None without
    observations or without a finite bucket."""
    return _quantile(0.99, sample.buckets)


def judge(spec: AnalysisSpec, window: Sample) -> Verdict:
    """The verdict on one window: Waiting until it holds ``min_requests`` requests (and, when a
    latency bound is set, latency figures), then Failed when the error rate or the p99 latency
    exceeds its bound, else Passed."""
    requests = round(window.requests)
    rate = window.errors / window.requests if window.requests > 0 else 0.0
    latency = p99(window)
    if requests < spec.min_requests:
        reason = f"{requests} of {spec.min_requests} requests so far"
        return Verdict(WAITING, requests, rate, latency, reason)
    limit = spec.max_p99_latency_seconds
    if limit is not None and latency is None:
        return Verdict(WAITING, requests, rate, latency, "no latency figures yet")
    figures = _figures(requests, rate, latency)
    if rate > spec.max_error_rate:
        reason = f"{figures}: error rate above {spec.max_error_rate:.2%}"
        return Verdict(FAILED, requests, rate, latency, reason)
    if limit is not None and latency is not None and latency > limit:
        reason = f"{figures}: p99 latency above {limit:g}s"
        return Verdict(FAILED, requests, rate, latency, reason)
    return Verdict(PASSED, requests, rate, latency, f"{figures}: within bounds")


def _figures(requests: int, rate: float, latency: float | None) -> str:
    shown = "unknown" if latency is None else f"{latency:.3g}s"
    return f"{requests} requests, {rate:.2%} errors, p99 {shown}"


def _family(name: str) -> str:
    """The family name the parser reports: a counter's name loses a ``_total`` suffix (Envoy
    names some counters so, ``envoy_cluster_grpc_total``), and each sample gains one."""
    return name.removesuffix("_total")


def _counter(family: Metric) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of each of a counter family's values, leaving out ``_created``."""
    for sample in family.samples:
        if family.type == "counter" and sample.name != f"{family.name}_total":
            continue
        yield sample.labels, float(sample.value)


def _server_error(code: str) -> bool:
    return code.isdigit() and int(code) >= 500


def _histograms(
    family: Metric, keep: Callable[[Mapping[str, str]], bool], *, scale: float = 1.0
) -> list[Buckets]:
    """The cumulative buckets of each series of a histogram family whose labels ``keep``
    accepts (a series: one set of labels besides ``le``), bounds multiplied by ``scale``."""
    series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket") and keep(sample.labels):
            key = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
            bound = float(sample.labels["le"]) * scale
            series.setdefault(key, []).append((bound, float(sample.value)))
    return [tuple(sorted(points)) for points in series.values()]


def _sum_buckets(histograms: Iterable[Buckets]) -> Buckets:
    """Cumulative histograms summed bound by bound. Where one lacks a bound the others have,
    its count at the nearest lower bound stands in (a lower estimate), so histograms with the
    same bounds, the usual case, add exactly."""
    present = [h for h in histograms if h]
    bounds = sorted({bound for h in present for bound, _ in h})
    return tuple((b, sum(_at(h, b) for h in present)) for b in bounds)


def _at(buckets: Buckets, bound: float) -> float:
    """The cumulative count at ``bound``: that of the largest bucket bound not above it."""
    count = 0.0
    for upper, cumulative in buckets:
        if upper > bound:
            break
        count = cumulative
    return count


def _quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``: find the bucket holding rank ``q * total`` and
    interpolate linearly inside it (the first bucket starts at 0); a rank in the +Inf bucket
    answers with the largest finite bound."""
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]) or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets[:-1]:
        if cumulative >= rank:
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower
