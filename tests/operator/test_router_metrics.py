"""Tests of sluice.operator.router_metrics against real HTTP servers on loopback, one per
"pod": each listens on its own loopback address (127.0.0.1, 127.0.0.2, ...) at the same port,
as pods share a port and differ by IP. Then the baselines that make windows of the counters."""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sluice.contracts import labels, ports
from sluice.contracts import metrics as contract
from sluice.operator import spec
from sluice.operator.analysis import Sample, from_router_metrics
from sluice.operator.rollout import PROGRESSING, RolloutState
from sluice.operator.router_metrics import Baselines, RouterMetrics, WindowKey, fetch

from tests.runtime.serving import free_port

INF = math.inf
NS = "models"


def router_text(requests: int, errors: int) -> str:
    """Envoy's form of the canary's HTTP cluster counters (see test_analysis for the real
    thing); latency in one bucket of 25 ms."""
    cluster = f'{contract.ROUTER_CLUSTER_LABEL}="{contract.router_cluster("canary", "http")}"'
    rq, time_ms = contract.ROUTER_REQUESTS_BY_CLASS, contract.ROUTER_REQUEST_TIME_MS
    code = contract.ROUTER_CODE_CLASS_LABEL
    return (
        f"# TYPE {rq} counter\n"
        f'{rq}{{{code}="2",{cluster}}} {requests - errors}\n'
        f'{rq}{{{code}="5",{cluster}}} {errors}\n'
        f"# TYPE {time_ms} histogram\n"
        f'{time_ms}_bucket{{{cluster},le="25"}} {requests}\n'
        f'{time_ms}_bucket{{{cluster},le="+Inf"}} {requests}\n'
        f"{time_ms}_sum{{{cluster}}} {requests * 10}\n"
        f"{time_ms}_count{{{cluster}}} {requests}\n"
    )


@dataclass
class Answer:
    """What a fake pod answers on /metrics."""

    body: str = ""
    status: int = 200
    delay: float = 0.0
    asked: list[str] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _PodServer

    def do_GET(self) -> None:
        answer = self.server.answer
        answer.asked.append(self.path)
        time.sleep(answer.delay)
        body = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PodServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], answer: Answer) -> None:
        super().__init__(address, _Handler)
        self.answer = answer


@pytest.fixture
def pods() -> Iterator[tuple[int, dict[str, Answer]]]:
    """Three fake pods on 127.0.0.1-3 at one port; the answers are theirs to change."""
    port = free_port()
    answers = {f"127.0.0.{i}": Answer() for i in (1, 2, 3)}
    servers = [_PodServer((ip, port), answer) for ip, answer in answers.items()]
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield port, answers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


def canary(text: str) -> Sample:
    return from_router_metrics(text, "canary")


def test_every_pod_is_read_and_summed(pods: tuple[int, dict[str, Answer]]) -> None:
    port, answers = pods
    answers["127.0.0.1"].body = router_text(10, 1)
    answers["127.0.0.2"].body = router_text(30, 2)
    scrape = fetch(["127.0.0.1", "127.0.0.2"], port)
    assert scrape.failures == {}
    assert set(scrape.texts) == {"127.0.0.1", "127.0.0.2"}
    assert answers["127.0.0.1"].asked == [ports.METRICS_PATH]
    assert scrape.total(canary) == Sample(40, 3, ((0.025, 40), (INF, 40)))


def test_a_pod_that_does_not_answer_makes_the_total_unknown(
    pods: tuple[int, dict[str, Answer]],
) -> None:
    port, answers = pods
    answers["127.0.0.1"].body = router_text(10, 1)
    scrape = fetch(["127.0.0.1", "127.0.0.9"], port)
    assert set(scrape.texts) == {"127.0.0.1"}
    assert "127.0.0.9" in scrape.failures
    assert scrape.total(canary) is None


def test_an_error_status_is_a_failure(pods: tuple[int, dict[str, Answer]]) -> None:
    port, answers = pods
    answers["127.0.0.2"].status = 503
    scrape = fetch(["127.0.0.2"], port)
    assert scrape.failures["127.0.0.2"].endswith("HTTP 503")


def test_a_slow_pod_is_given_up_on_in_time(pods: tuple[int, dict[str, Answer]]) -> None:
    port, answers = pods
    answers["127.0.0.1"].body = router_text(1, 0)
    answers["127.0.0.3"].delay = 1.5
    started = time.monotonic()
    scrape = fetch(["127.0.0.1", "127.0.0.3"], port, timeout=0.3)
    assert time.monotonic() - started < 1.2
    assert set(scrape.failures) == {"127.0.0.3"}
    assert set(scrape.texts) == {"127.0.0.1"}


def test_unreadable_text_makes_the_total_unknown(pods: tuple[int, dict[str, Answer]]) -> None:
    port, answers = pods
    answers["127.0.0.1"].body = "this is { not prometheus\n"
    scrape = fetch(["127.0.0.1"], port)
    assert scrape.failures == {}
    assert scrape.total(canary) is None


def test_no_pods_no_total() -> None:
    scrape = fetch([])
    assert (dict(scrape.texts), dict(scrape.failures)) == ({}, {})
    assert scrape.total(canary) is None


def pod(ip: str, component: str, *, ready: bool = True, gone: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"{component}-{ip}",
        "labels": {labels.LABEL_COMPONENT: component},
    }
    if gone:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [condition]}}


def inference_service(provider: spec.TrafficProvider) -> spec.InferenceService:
    body = {"metadata": {"name": "m", "namespace": NS}, "spec": {"model": {"uri": "/m.onnx"}}}
    isvc = spec.parse(body)
    return dataclasses.replace(isvc, traffic=dataclasses.replace(isvc.traffic, provider=provider))


def test_the_canary_is_read_from_the_ready_router_pods(
    pods: tuple[int, dict[str, Answer]],
) -> None:
    port, answers = pods
    answers["127.0.0.1"].body = router_text(10, 1)
    listed = [
        pod("127.0.0.1", labels.ROUTER),
        pod("127.0.0.2", labels.ROUTER, ready=False),
        pod("127.0.0.3", labels.ROUTER, gone=True),
        pod("127.0.0.4", "canary"),
    ]
    reader = RouterMetrics(router_port=port, timeout=1.0)
    assert reader.canary_sample(inference_service("Router"), listed) == Sample(
        10, 1, ((0.025, 10), (INF, 10))
    )
    assert [len(a.asked) for a in answers.values()] == [1, 0, 0]


def test_behind_a_gateway_the_canary_pods_are_read(pods: tuple[int, dict[str, Answer]]) -> None:
    port, answers = pods
    runtime = contract.REQUESTS.name
    answers["127.0.0.2"].body = (
        f"# TYPE {runtime} counter\n"
        f'{runtime}{{model="m",protocol="http",code="200"}} 7\n'
        f'{runtime}{{model="m",protocol="grpc",code="500"}} 1\n'
    )
    listed = [pod("127.0.0.1", labels.ROUTER), pod("127.0.0.2", "canary")]
    reader = RouterMetrics(runtime_port=port, timeout=1.0)
    assert reader.canary_sample(inference_service("GatewayAPI"), listed) == Sample(8, 1)
    assert [len(a.asked) for a in answers.values()] == [0, 1, 0]


T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
KEY = WindowKey(NS, "m", "B", "0@2030-01-01T00:00:00Z")


def test_a_window_counts_from_its_start() -> None:
    baselines = Baselines()
    assert baselines.window(KEY, Sample(100, 5), start=True) == Sample(0, 0)
    assert baselines.window(KEY, Sample(130, 6), start=False) == Sample(30, 1)
    assert baselines.window(KEY, Sample(150, 6), start=False) == Sample(50, 1)


def test_without_a_baseline_the_window_restarts() -> None:
    """After a restart (or for a window begun elsewhere) the first reading is the baseline."""
    baselines = Baselines()
    assert baselines.window(KEY, Sample(100, 5), start=False) is None
    assert baselines.window(KEY, Sample(110, 5), start=False) == Sample(10, 0)
    later = KEY._replace(window="1@2030-01-01T00:01:00Z")
    assert baselines.window(later, Sample(120, 5), start=False) is None
    assert baselines.window(later, Sample(121, 5), start=False) == Sample(1, 0)


def test_a_counter_going_backwards_restarts_the_window() -> None:
    baselines = Baselines()
    baselines.window(KEY, Sample(100, 5), start=True)
    assert baselines.window(KEY, Sample(40, 0), start=False) is None  # a router pod restarted
    assert baselines.window(KEY, Sample(45, 1), start=False) == Sample(5, 1)


def test_an_unknown_reading_keeps_the_baseline() -> None:
    baselines = Baselines()
    baselines.window(KEY, Sample(100, 5), start=True)
    assert baselines.window(KEY, None, start=False) is None
    assert baselines.window(KEY, Sample(101, 5), start=False) == Sample(1, 0)


def test_baselines_are_kept_per_inference_service_and_forgotten() -> None:
    baselines = Baselines()
    other = KEY._replace(name="n")
    baselines.window(KEY, Sample(100), start=True)
    baselines.window(other, Sample(7), start=True)
    assert baselines.window(KEY, Sample(101), start=False) == Sample(1)
    assert baselines.window(other, Sample(8), start=False) == Sample(1)
    baselines.forget(NS, "m")
    assert baselines.window(KEY, Sample(102), start=False) is None
    assert baselines.window(other, Sample(9), start=False) == Sample(2)


def test_the_window_key_names_the_step_and_its_start() -> None:
    state = RolloutState(PROGRESSING, 1, 50, "A", "B", T0)
    assert WindowKey.of(NS, "m", state) == WindowKey(NS, "m", "B", "1@2030-01-01T00:00:00Z")
    restarted = RolloutState.from_status(state.to_status())
    assert WindowKey.of(NS, "m", restarted) == WindowKey.of(NS, "m", state)
