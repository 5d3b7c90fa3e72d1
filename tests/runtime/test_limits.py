"""Limits on both protocols: the HTTP body limit applies after decompression (gzip and
deflate), gRPC messages over the limit get RESOURCE_EXHAUSTED, and a server started without
``--max-body-bytes`` and ``--max-queue-size`` really uses their documented defaults (64 MiB,
1024 requests).

The in-process server of conftest has a body limit of 1 MiB; the defaults are checked on a
``sluice-runtime serve`` subprocess started without those flags.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sluice.runtime.app import RuntimeApp
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from e2e.cluster.waiting import wait_for
from tests.runtime.conftest import ModelFiles
from tests.runtime.models import build_slow, iterations_lasting
from tests.runtime.serving import ServerProcess, model_arg
from tests.runtime.test_metrics import scrape
from tests.runtime.test_rest import raw_request

LIMIT = 1 << 20  # conftest's max_body_bytes
DEFAULT_LIMIT = 64 * 1024 * 1024  # the documented default of --max-body-bytes
DEFAULT_QUEUE = 1024  # the documented default of --max-queue-size

ENCODINGS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}


def padded_request(size: int) -> bytes:
    """A valid infer request for the "fixed" model, padded with JSON whitespace to ``size``."""
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}
    ).encode()
    return body + b" " * (size - len(body))


def http_413s(server: RuntimeApp) -> float:
    labels = (("code", "413"), ("model", "fixed"), ("protocol", "http"))
    return scrape(server).get("sluice_requests_total", {}).get(labels, 0.0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_compressed_body_is_served_up_to_the_limit_after_decompression(
    server: RuntimeApp, encoding: str
) -> None:
    body = ENCODINGS[encoding](padded_request(LIMIT))
    status, _, payload = raw_request(
        server, "POST", "/v2/models/fixed/infer", body, {"Content-Encoding": encoding}
    )
    assert status == 200, payload
    assert json.loads(payload)["outputs"][0]["data"] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_compressed_body_over_the_limit_after_decompression_gets_413(
    server: RuntimeApp, encoding: str
) -> None:
    body = ENCODINGS[encoding](padded_request(LIMIT + 1))
    assert len(body) < LIMIT // 100  # far under the limit on the wire
    before = http_413s(server)
    status, _, payload = raw_request(
        server, "POST", "/v2/models/fixed/infer", body, {"Content-Encoding": encoding}
    )
    assert status == 413
    assert "decompressed body is over the limit" in json.loads(payload)["error"]
    assert http_413s(server) == before + 1


@pytest.fixture
def grpc_client(server: RuntimeApp) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


def sequence_infer(client: grpcclient.InferenceServerClient, length: int) -> np.ndarray:
    """Send [1, length] FP32 to the "sequence" model (y = 3x) over gRPC."""
    x = np.arange(length, dtype=np.float32).reshape(1, length)
    item = grpcclient.InferInput("x", [1, length], "FP32")
    item.set_data_from_numpy(x)
    y = client.infer("sequence", [item], client_timeout=60).as_numpy("y")
    np.testing.assert_array_equal(y, x * 3)
    return y  # type: ignore[no-any-return]


def unknown_input_status(client: grpcclient.InferenceServerClient, length: int) -> str:
    """The status of a request with [1, length] FP32 under an input name no model has. Its
    answer is small, so a RESOURCE_EXHAUSTED can only come from the limit on what the server
    receives; a request the server reads gets INVALID_ARGUMENT."""
    item = grpcclient.InferInput("unknown", [1, length], "FP32")
    item.set_data_from_numpy(np.zeros((1, length), dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("sequence", [item], client_timeout=60)
    return str(caught.value.status())


def test_a_grpc_message_over_the_limit_gets_resource_exhausted(
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    sequence_infer(grpc_client, LIMIT // 4 - 1024)  # just under, and so is the answer: served
    assert unknown_input_status(grpc_client, LIMIT // 4 - 1024) == "StatusCode.INVALID_ARGUMENT"
    # 1 MiB of data plus the message's framing
    assert unknown_input_status(grpc_client, LIMIT // 4) == "StatusCode.RESOURCE_EXHAUSTED"
    assert sequence_infer(grpc_client, 4).shape == (1, 4)  # the server goes on serving


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_slow(tmp_path_factory.mktemp("slow") / "slow.onnx")


@pytest.fixture(scope="module")
def default_server(model_files: ModelFiles, slow_model: Path) -> Iterator[ServerProcess]:
    """A subprocess server started without --max-body-bytes or --max-queue-size."""
    server = ServerProcess(
        model_arg("fixed", model_files.fixed),
        model_arg("sequence", model_files.sequence),
        model_arg("slow", slow_model),
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def post_head(length: int) -> bytes:
    return (
        b"POST /v2/models/fixed/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def answer(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP response from ``sock``: its status and body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def test_the_default_http_limit_is_64_mib(default_server: ServerProcess) -> None:
    address = ("127.0.0.1", default_server.http_port)
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(post_head(DEFAULT_LIMIT + 1))  # answered on the header alone
        status, payload = answer(sock)
    assert status == 413, payload
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(post_head(DEFAULT_LIMIT) + padded_request(DEFAULT_LIMIT))
        status, payload = answer(sock)
    assert status == 200, payload


def test_the_default_grpc_limit_is_64_mib(default_server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(default_server.grpc_url)
    try:
        sequence_infer(client, 5 << 18)  # 5 MiB each way: over gRPC's own default of 4 MiB
        status = unknown_input_status(client, DEFAULT_LIMIT // 4)
        assert status == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        client.close()


def test_the_default_queue_holds_1024_requests(
    default_server: ServerProcess, slow_model: Path
) -> None:
    busy = iterations_lasting(slow_model, 2.5)
    with grpc.insecure_channel(default_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def call(iterations: int) -> grpc.Future:
            request = service_pb2.ModelInferRequest(model_name="slow")
            request.inputs.add(name="n", datatype="INT64", shape=[1])
            request.raw_input_contents.append(np.array([iterations], dtype="<i8").tobytes())
            return stub.ModelInfer.future(request, timeout=120)

        def samples(name: str) -> float:
            return scrape(default_server).get(name, {}).get((("model", "slow"),), 0.0)

        running = call(busy)
        wait_for(
            lambda: samples("sluice_queue_duration_seconds_count") == 1,
            timeout=30,
            interval=0.01,
            what="the busy request to start computing",
        )
        queued = [call(0) for _ in range(DEFAULT_QUEUE)]
        wait_for(
            lambda: samples("sluice_queue_depth") == DEFAULT_QUEUE + 1,
            timeout=60,
            interval=0.05,
            what="the queue to fill",
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(0).result()
        assert samples("sluice_batch_size_count") == 0, "the busy run ended too early"
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"({DEFAULT_QUEUE} requests waiting)" in str(caught.value.details())
        assert running.result().outputs[0].name == "y"
        assert all(future.result().outputs[0].name == "y" for future in queued)
