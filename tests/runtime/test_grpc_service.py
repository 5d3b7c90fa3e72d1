"""The gRPC adapter: real tritonclient.grpc against a real server, and the request decoder."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hypothesis import given, settings
from hypothesis import strategies as st
from sluice.runtime.app import RuntimeApp
from sluice.runtime.errors import InvalidInputError
from sluice.runtime.grpc_service import decode_request
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ModelFiles
from tests.runtime.test_rest import reference


@pytest.fixture
def client(server: RuntimeApp) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture
def stub(server: RuntimeApp) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("multi")
    assert client.get_server_metadata().name == "sluice"
    metadata = client.get_model_metadata("multi")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("x", "FP32", [-1, 4]),
        ("ids", "INT64", [-1, 3]),
    ]
    assert [t.name for t in metadata.outputs] == ["scaled", "shifted", "total"]


def test_infer_raw_contents_matches_onnxruntime(
    client: grpcclient.InferenceServerClient, model_files: ModelFiles
) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4), dtype=np.float32)
    ids = rng.integers(-9, 9, (5, 3), dtype=np.int64)
    inputs = [
        grpcclient.InferInput("x", [5, 4], "FP32"),
        grpcclient.InferInput("ids", [5, 3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(ids)
    result = client.infer("multi", inputs, request_id="g-1")
    scaled, shifted, total = reference(model_files.multi, {"x": x, "ids": ids})
    np.testing.assert_allclose(result.as_numpy("scaled"), scaled, rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("shifted"), shifted)
    np.testing.assert_allclose(result.as_numpy("total"), total, rtol=1e-5)
    assert result.get_response().id == "g-1"
    only = client.infer("multi", inputs, outputs=[grpcclient.InferRequestedOutput("shifted")])
    assert [o.name for o in only.get_response().outputs] == ["shifted"]


def test_infer_typed_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="multi")
    x = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    x.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.5])
    ids = request.inputs.add(name="ids", datatype="INT64", shape=[1, 3])
    ids.contents.int64_contents.extend([7, 8, 9])
    response = stub.ModelInfer(request, timeout=10)
    names = [o.name for o in response.outputs]
    total = np.frombuffer(response.raw_output_contents[names.index("total")], dtype="<f4")
    shifted = np.frombuffer(response.raw_output_contents[names.index("shifted")], dtype="<i8")
    assert total.tolist() == [10.5]
    assert shifted.tolist() == [8, 9, 10]


def test_errors_carry_grpc_codes(client: grpcclient.InferenceServerClient) -> None:
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    cases = [("nope", [x], "StatusCode.NOT_FOUND"), ("multi", [x], "StatusCode.INVALID_ARGUMENT")]
    for model, inputs, code in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, inputs)
        assert caught.value.status() == code
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert client.is_server_ready()


def test_unimplemented_rpcs(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelConfig(service_pb2.ModelConfigRequest(name="mlp"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as caught:
        stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_decode_rejects_mismatched_raw_contents() -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.raw_input_contents.append(b"\0" * 5)
    with pytest.raises(InvalidInputError, match="5 raw bytes"):
        decode_request(request)
    request.inputs.add(name="y", datatype="FP32", shape=[2])
    with pytest.raises(InvalidInputError, match="1 raw_input_contents for 2 inputs"):
        decode_request(request)


@settings(max_examples=150, deadline=None)
@given(
    datatype=st.sampled_from(["FP32", "INT64", "FP16", "BOOL", "BYTES", "UINT8", "XX"]),
    shape=st.lists(st.integers(0, 6), max_size=3),
    raw=st.binary(max_size=64),
    typed=st.booleans(),
)
def test_decode_fuzz_only_raises_invalid_input(
    datatype: str, shape: list[int], raw: bytes, typed: bool
) -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    if typed:
        tensor.contents.int64_contents.extend(range(len(raw) % 7))
    else:
        request.raw_input_contents.append(raw)
    try:
        decoded = decode_request(request)
    except InvalidInputError:
        return
    assert list(decoded.inputs["x"].shape) == shape
