"""Metrics on /metrics, parsed back with prometheus-client: names, labels, batching under load."""

from __future__ import annotations

import contextlib
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sluice.runtime.app import RuntimeApp
from sluice.runtime.metrics import RuntimeMetrics
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ModelFiles, settings_for
from tests.runtime.serving import LoopThread, ServerProcess, running_app


def scrape(
    server: RuntimeApp | ServerProcess,
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample on /metrics of an in-process or subprocess server, keyed by sample name
    and sorted labels."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.http_port}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metric_names_and_labels_are_the_documented_contract() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.for_model("m")
    metrics.requests.labels("m", "http", "200").inc()
    metrics.request_duration.labels("m", "http").observe(0.01)
    metrics.model_info.labels("m", "CPUExecutionProvider").set(1)
    families = {family.name: family for family in registry.collect()}
    expected = {
        "sluice_queue_depth": ("gauge", {"model"}),
        "sluice_requests": ("counter", {"model", "protocol", "code"}),
        "sluice_request_duration_seconds": ("histogram", {"model", "protocol"}),
        "sluice_queue_duration_seconds": ("histogram", {"model"}),
        "sluice_compute_duration_seconds": ("histogram", {"model"}),
        "sluice_batch_size": ("histogram", {"model"}),
        "sluice_model_info": ("gauge", {"model", "provider"}),
    }
    assert set(families) == set(expected)
    for name, (kind, labels) in expected.items():
        assert families[name].type == kind
        assert {k for s in families[name].samples for k in s.labels} - {"le"} == labels


def test_batching_is_seen_under_concurrent_load(
    loop_thread: LoopThread, model_files: ModelFiles
) -> None:
    settings = settings_for(model_files, max_batch_size=16, max_queue_delay_us=20000)
    with running_app(loop_thread, settings) as app:
        url = f"127.0.0.1:{app.http_port}"
        x = np.random.default_rng(4).standard_normal((1, 32), dtype=np.float32)

        def call(_: int) -> np.ndarray:
            client = httpclient.InferenceServerClient(url)
            try:
                item = httpclient.InferInput("input", [1, 32], "FP32")
                item.set_data_from_numpy(x)
                return client.infer("mlp", [item]).as_numpy("output")  # type: ignore[no-any-return]
            finally:
                client.close()

        with ThreadPoolExecutor(16) as pool:
            outputs = list(pool.map(call, range(48)))
        for output in outputs:
            np.testing.assert_array_equal(output, outputs[0])
        samples = scrape(app)
    runs = samples["sluice_batch_size_count"][(("model", "mlp"),)]
    rows = samples["sluice_batch_size_sum"][(("model", "mlp"),)]
    assert rows == 48  # the warm-up run is not counted: it runs before the batcher exists
    assert runs < rows, "no two requests were merged"
    assert (
        samples["sluice_requests_total"][(("code", "200"), ("model", "mlp"), ("protocol", "http"))]
        == 48
    )
    assert samples["sluice_queue_depth"][(("model", "mlp"),)] == 0
    assert (
        samples["sluice_request_duration_seconds_count"][(("model", "mlp"), ("protocol", "http"))]
        == 48
    )
    assert samples["sluice_queue_duration_seconds_count"][(("model", "mlp"),)] == 48
    assert (
        samples["sluice_model_info"][(("model", "mlp"), ("provider", "CPUExecutionProvider"))] == 1
    )


def test_errors_are_counted_with_their_code(
    loop_thread: LoopThread, model_files: ModelFiles
) -> None:
    with running_app(loop_thread, settings_for(model_files)) as app:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{app.http_port}")
        item = httpclient.InferInput("wrong", [1, 32], "FP32")
        item.set_data_from_numpy(np.ones((1, 32), np.float32))
        for model in ("mlp", "nope"):
            with contextlib.suppress(InferenceServerException):
                client.infer(model, [item])
        client.close()
        requests = scrape(app)["sluice_requests_total"]
    assert requests[(("code", "400"), ("model", "mlp"), ("protocol", "http"))] == 1
    assert requests[(("code", "404"), ("model", ""), ("protocol", "http"))] == 1


def test_grpc_requests_are_counted_under_protocol_grpc(
    loop_thread: LoopThread, model_files: ModelFiles
) -> None:
    with running_app(loop_thread, settings_for(model_files)) as app:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{app.grpc_port}")
        try:
            item = grpcclient.InferInput("input", [1, 32], "FP32")
            item.set_data_from_numpy(np.ones((1, 32), np.float32))
            client.infer("mlp", [item])
            wrong = grpcclient.InferInput("wrong", [1, 32], "FP32")
            wrong.set_data_from_numpy(np.ones((1, 32), np.float32))
            for model in ("mlp", "nope"):
                with pytest.raises(InferenceServerException):
                    client.infer(model, [wrong])
        finally:
            client.close()
        # A request that cannot even be decoded: 5 raw bytes for 32 FP32 values.
        undecodable = service_pb2.ModelInferRequest(model_name="mlp")
        undecodable.inputs.add(name="input", datatype="FP32", shape=[1, 32])
        undecodable.raw_input_contents.append(b"\0" * 5)
        with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.ModelInfer(undecodable, timeout=10)
        samples = scrape(app)
    requests = samples["sluice_requests_total"]
    assert requests == {
        (("code", "200"), ("model", "mlp"), ("protocol", "grpc")): 1,
        (("code", "400"), ("model", "mlp"), ("protocol", "grpc")): 2,
        (("code", "404"), ("model", ""), ("protocol", "grpc")): 1,
    }
    durations = samples["sluice_request_duration_seconds_count"]
    assert durations == {(("model", "mlp"), ("protocol", "grpc")): 1}
