"""The HTTP adapter end to end: real tritonclient.http against a real server on loopback."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from sluice.runtime.app import RuntimeApp
from sluice.runtime.model import resolve_model_file
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ModelFiles


@pytest.fixture
def client(server: RuntimeApp) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


def raw_request(
    server: RuntimeApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client, for what tritonclient would never send."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def reference(path: object, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs straight from onnxruntime, to compare with the server's."""
    session = ort.InferenceSession(
        str(resolve_model_file(path)), providers=["CPUExecutionProvider"]
    )  # type: ignore[arg-type]
    return session.run(None, inputs)  # type: ignore[no-any-return]


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "sluice"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_comes_from_the_graph(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("multi")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, 3]},
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["scaled", "shifted", "total"]
    assert metadata["outputs"][2] == {"name": "total", "datatype": "FP32", "shape": [-1]}
    assert metadata["parameters"]["execution_provider"] == "CPUExecutionProvider"
    fixed = client.get_model_metadata("fixed")
    assert fixed["inputs"][0]["shape"] == [2, 3]
    assert fixed["parameters"]["batchable"] is False


@pytest.mark.parametrize("binary_inputs", [True, False])
@pytest.mark.parametrize("binary_outputs", [True, False, None])
def test_infer_matches_onnxruntime(
    client: httpclient.InferenceServerClient,
    model_files: ModelFiles,
    binary_inputs: bool,
    binary_outputs: bool | None,
) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4), dtype=np.float32)
    ids = rng.integers(-1000, 1000, (3, 3), dtype=np.int64)
    inputs = [
        httpclient.InferInput("x", [3, 4], "FP32"),
        httpclient.InferInput("ids", [3, 3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(x, binary_data=binary_inputs)
    inputs[1].set_data_from_numpy(ids, binary_data=binary_inputs)
    outputs = (
        None
        if binary_outputs is None
        else [
            httpclient.InferRequestedOutput(n, binary_data=binary_outputs)
            for n in ("total", "shifted", "scaled")
        ]
    )
    result = client.infer("multi", inputs, outputs=outputs, request_id="req-7")
    scaled, shifted, total = reference(model_files.multi, {"x": x, "ids": ids})
    np.testing.assert_allclose(result.as_numpy("scaled"), scaled, rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("shifted"), shifted)
    np.testing.assert_allclose(result.as_numpy("total"), total, rtol=1e-5)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_name"] == "multi"
    if outputs is not None:
        assert [o["name"] for o in response["outputs"]] == ["total", "shifted", "scaled"]


def test_requested_subset_of_outputs(client: httpclient.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    inputs = [
        httpclient.InferInput("x", [1, 4], "FP32"),
        httpclient.InferInput("ids", [1, 3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.zeros((1, 3), dtype=np.int64))
    result = client.infer("multi", inputs, outputs=[httpclient.InferRequestedOutput("total")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["total"]
    assert result.as_numpy("total").tolist() == [4.0]


def test_fixed_and_dynamic_dims(client: httpclient.InferenceServerClient) -> None:
    x = np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.float32)
    fixed = httpclient.InferInput("x", [2, 3], "FP32")
    fixed.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("fixed", [fixed]).as_numpy("y"), np.maximum(x, 0))
    seq = np.arange(10, dtype=np.float32).reshape(2, 5)
    dynamic = httpclient.InferInput("x", [2, 5], "FP32")
    dynamic.set_data_from_numpy(seq)
    np.testing.assert_array_equal(client.infer("sequence", [dynamic]).as_numpy("y"), seq * 3)


def test_gzip_request_body(server: RuntimeApp) -> None:
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]
    }
    status, _, payload = raw_request(
        server, "POST", "/v2/models/fixed/infer", gzip.compress(json.dumps(body).encode()),
        {"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert status == 200, payload
    assert json.loads(payload)["outputs"][0]["data"] == [1, 2, 3, 4, 5, 6]


def test_metrics_endpoint(server: RuntimeApp) -> None:
    status, headers, body = raw_request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b'sluice_model_info{model="mlp",provider="CPUExecutionProvider"} 1.0' in body


def _infer_error(
    client: httpclient.InferenceServerClient, model: str, inputs: list[httpclient.InferInput]
) -> str:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs)
    return str(caught.value.message())


def test_bad_inputs_through_tritonclient(client: httpclient.InferenceServerClient) -> None:
    def tensor(name: str, array: np.ndarray, datatype: str) -> httpclient.InferInput:
        item = httpclient.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array)
        return item

    x = np.ones((1, 4), dtype=np.float32)
    ids = np.ones((1, 3), dtype=np.int64)
    assert "not served" in _infer_error(client, "nope", [tensor("x", x, "FP32")])
    assert "missing input 'ids'" in _infer_error(client, "multi", [tensor("x", x, "FP32")])
    assert "unknown input 'z'" in _infer_error(
        client,
        "multi",
        [tensor("x", x, "FP32"), tensor("ids", ids, "INT64"), tensor("z", x, "FP32")],
    )
    assert "datatype FP64" in _infer_error(
        client, "multi", [tensor("x", x.astype(np.float64), "FP64"), tensor("ids", ids, "INT64")]
    )
    assert "shape [1, 5]" in _infer_error(
        client,
        "multi",
        [tensor("x", np.ones((1, 5), np.float32), "FP32"), tensor("ids", ids, "INT64")],
    )
    assert "has batch size 1; other inputs have 2" in _infer_error(
        client,
        "multi",
        [tensor("x", np.ones((2, 4), np.float32), "FP32"), tensor("ids", ids, "INT64")],
    )
    assert "outside 1..8" in _infer_error(
        client, "mlp", [tensor("input", np.ones((9, 32), np.float32), "FP32")]
    )
    assert "shape [3, 3]" in _infer_error(
        client, "fixed", [tensor("x", np.ones((3, 3), np.float32), "FP32")]
    )
    assert client.is_server_ready()


def fixed_body(**fields: object) -> bytes:
    """A JSON infer body for the "fixed" model's input with ``fields`` overriding."""
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 3], **fields}
    return json.dumps({"inputs": [tensor]}).encode()


TRUNCATED = fixed_body(parameters={"binary_data_size": 24}) + b"\0" * 10


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"{not json", {}, 400, "malformed JSON"),
        (b"[]", {}, 400, "must be an object"),
        (b'{"inputs": []}', {}, 400, "non-empty 'inputs'"),
        (fixed_body(data=[1, 2]), {}, 400, "has 2 values"),
        (fixed_body(data=["a"]), {}, 400, "not FP32"),
        (fixed_body(datatype="F32", data=[1]), {}, 400, "unknown datatype"),
        (TRUNCATED, {"Inference-Header-Content-Length": "1000"}, 400, "Header-Content-Length"),
        (b"\0" * 8, {"Content-Encoding": "br"}, 400, "Content-Encoding"),
    ],
)
def test_malformed_bodies(
    server: RuntimeApp, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    got, _, payload = raw_request(server, "POST", "/v2/models/fixed/infer", body, headers)
    assert got == status
    assert needle in json.loads(payload)["error"]


def test_truncated_binary_payload(server: RuntimeApp) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    ).encode()
    body = header + b"\0" * 10
    status, _, payload = raw_request(
        server,
        "POST",
        "/v2/models/fixed/infer",
        body,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400
    assert "truncated" in json.loads(payload)["error"]


def test_body_over_the_limit(server: RuntimeApp) -> None:
    status, headers, payload = raw_request(
        server, "POST", "/v2/models/fixed/infer", b"0" * (2 << 20)
    )
    assert status == 413
    assert "over the limit" in json.loads(payload)["error"]
    assert headers.get("connection") == "close"


def test_routing_errors(server: RuntimeApp) -> None:
    assert raw_request(server, "GET", "/v2/models/nope")[0] == 404
    assert raw_request(server, "GET", "/v2/models/nope/ready")[0] == 404
    assert raw_request(server, "GET", "/nowhere")[0] == 404
    status, _, payload = raw_request(server, "GET", "/v2/models/mlp/infer")
    assert status == 405
    assert "POST" in json.loads(payload)["error"]
    assert raw_request(server, "GET", "/v2/models/mlp/versions/1")[0] == 200


def test_malformed_http_is_answered_and_server_keeps_serving(server: RuntimeApp) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"BLAH\x00 / HTTP/1.1\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    assert raw_request(server, "GET", "/v2/health/live")[0] == 200


def test_pipelined_requests_are_answered_in_order(server: RuntimeApp) -> None:
    import socket

    body = fixed_body(data=[0] * 6).replace(b"[0, ", b"[%d, ", 1)
    requests = (
        b"".join(
            b"POST /v2/models/fixed/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body % i), body % i)
            for i in range(3)
        )
        + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200") == 4
    positions = [received.index(b'"data":[%d.0' % i) for i in range(3)]
    assert positions == sorted(positions)
    assert received.rstrip().endswith(b'{"live":true}')


def test_expect_100_continue(server: RuntimeApp) -> None:
    import socket

    body = fixed_body(data=[1, 2, 3, 4, 5, 6])
    head = (
        b"POST /v2/models/fixed/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")
