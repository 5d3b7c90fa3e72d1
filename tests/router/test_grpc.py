"""gRPC and the Open Inference Protocol through the router, to real ``sluice-runtime``
servers: inference end to end, the variant in gRPC initial metadata, and the gRPC metrics
the rollout analysis reads."""

from __future__ import annotations

import urllib.request
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sluice.contracts import metrics
from sluice.contracts.routes import CANARY, MAIN, VARIANT_HEADER, Backend, Route, RouteTable
from sluice.router.endpoints import Endpoint
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from e2e.models import build_mlp
from tests.router import routing
from tests.router.routing import RouterProcess, series
from tests.runtime.serving import ServerProcess, model_arg

TABLE = RouteTable(
    "default",
    "m",
    (Route("default", (Backend(MAIN, "m-main", 50), Backend(CANARY, "m-canary", 50))),),
)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """A router splitting 50/50 between two runtime servers of the same model."""
    workdir = tmp_path_factory.mktemp("grpc")
    model = build_mlp(workdir / "mlp.onnx", sizes=(4, 8, 2))
    servers = [ServerProcess(model_arg("mlp", model)) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        endpoints = {
            f"m-{variant}": [Endpoint("127.0.0.1", server.http_port, server.grpc_port)]
            for variant, server in zip((MAIN, CANARY), servers, strict=True)
        }
        with routing.running_router(workdir, TABLE, endpoints) as found:
            yield found
    finally:
        for server in servers:
            server.stop()


def infer_inputs(module: type) -> list[object]:
    """One FP32 [1, 4] input of the test model, for ``module``'s client."""
    tensor = module.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    return [tensor]


def test_grpc_inference_through_the_router(router: RouterProcess) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
    try:
        for _ in range(10):
            result = client.infer("mlp", infer_inputs(grpcclient))
            assert result.as_numpy("output").shape == (1, 2)
    finally:
        client.close()


def test_http_inference_through_the_router(router: RouterProcess) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{router.http_port}")
    try:
        result = client.infer("mlp", infer_inputs(httpclient))
        assert result.as_numpy("output").shape == (1, 2)
    finally:
        client.close()


def test_variant_in_grpc_initial_metadata(router: RouterProcess) -> None:
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{router.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(30):
            _, call = stub.ServerReady.with_call(service_pb2.ServerReadyRequest(), timeout=10)
            metadata = dict(call.initial_metadata())
            seen[metadata[VARIANT_HEADER]] += 1
    assert set(seen) == {MAIN, CANARY}, seen


def test_grpc_calls_and_failures_per_variant(router: RouterProcess) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{router.grpc_port}")
    try:
        for _ in range(20):
            client.infer("mlp", infer_inputs(grpcclient))
            with pytest.raises(InferenceServerException):
                client.infer("no-such-model", infer_inputs(grpcclient))
    finally:
        client.close()
    with urllib.request.urlopen(router.metrics_url("/metrics"), timeout=5) as answer:
        text = answer.read().decode()
    for name in (metrics.ROUTER_GRPC_CALLS, metrics.ROUTER_GRPC_FAILURES):
        by_cluster = series(text, name, metrics.ROUTER_CLUSTER_LABEL)
        for variant in (MAIN, CANARY):
            cluster = metrics.router_cluster(variant, metrics.ROUTER_GRPC)
            assert by_cluster.get(cluster, 0) > 0, (name, by_cluster)
