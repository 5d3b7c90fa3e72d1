"""Request ids, internal errors and the access log, through real servers and real clients.

Every response carries ``x-request-id`` (the client's, or a new one); an internal error is
answered 500 / INTERNAL with a message naming that id and logged with its traceback under
it; ``--access-log`` writes one line per request.
"""

from __future__ import annotations

import http.client
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sluice.runtime.app import RuntimeApp
from sluice.runtime.settings import ServedModel
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import ModelFiles, settings_for
from tests.runtime.models import build_broadcast
from tests.runtime.serving import LoopThread, ServerProcess, model_arg, running_app

MISMATCHED = {"a": np.ones((2, 2), np.float32), "b": np.ones((2, 3), np.float32)}
REQUEST_ID = re.compile(r"request id (\S+)")
ACCESS_FIELDS = (
    "protocol",
    "method",
    "path",
    "model",
    "status",
    "duration_s",
    "bytes_in",
    "bytes_out",
    "request_id",
)


def _inputs(client: Any, arrays: dict[str, np.ndarray]) -> list[Any]:
    inputs = []
    for name, array in arrays.items():
        tensor = client.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_http_responses_carry_the_clients_request_id_or_a_new_one(server: RuntimeApp) -> None:
    kept = _get(server.http_port, "/v2/health/live", {"X-Request-Id": "trace-7"})
    assert kept.getheader("x-request-id") == "trace-7"
    not_found = _get(server.http_port, "/nowhere", {"X-Request-Id": "trace-8"})
    assert (not_found.status, not_found.getheader("x-request-id")) == (404, "trace-8")
    first = _get(server.http_port, "/v2/health/live").getheader("x-request-id")
    second = _get(server.http_port, "/v2/health/live").getheader("x-request-id")
    assert first is not None
    assert second not in (None, first)
    assert uuid.UUID(first).version == 4
    replaced = _get(server.http_port, "/v2/health/live", {"X-Request-Id": "x" * 500})
    assert uuid.UUID(replaced.getheader("x-request-id") or "").version == 4


def test_grpc_answers_carry_the_request_id_in_trailing_metadata(server: RuntimeApp) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ServerLive.with_call(
            service_pb2.ServerLiveRequest(), metadata=(("x-request-id", "trace-9"),), timeout=10
        )
        assert ("x-request-id", "trace-9") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as failed:
            stub.ModelReady(service_pb2.ModelReadyRequest(name="absent"), timeout=10)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        generated = dict(failed.value.trailing_metadata())["x-request-id"]
        assert uuid.UUID(generated).version == 4


def test_the_access_log_is_off_by_default(
    server: RuntimeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _get(server.http_port, "/v2/health/live")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert client.is_server_live()
    finally:
        client.close()
    assert not [record for record in caplog.records if record.name == "sluice.runtime.access"]


@pytest.fixture(scope="module")
def broadcast_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_broadcast(tmp_path_factory.mktemp("broadcast") / "model.onnx")


@pytest.fixture(scope="module")
def logged_server(
    loop_thread: LoopThread, model_files: ModelFiles, broadcast_model: Path
) -> Iterator[RuntimeApp]:
    """An in-process server with the access log on, serving the test models plus one that
    fails inside onnxruntime."""
    models = (*settings_for(model_files).models, ServedModel("broadcast", broadcast_model))
    with running_app(loop_thread, settings_for(model_files, models=models, access_log=True)) as app:
        yield app


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        {key: getattr(record, key) for key in ACCESS_FIELDS}
        for record in caplog.records
        if record.name == "sluice.runtime.access"
    ]


def test_the_access_log_has_one_line_per_request_on_both_protocols(
    logged_server: RuntimeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.runtime.access")
    data = np.ones((3, 32), np.float32)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{logged_server.http_port}")
    grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{logged_server.grpc_port}")
    try:
        http.infer("mlp", _inputs(httpclient, {"input": data}), headers={"X-Request-Id": "h-1"})
        grpc_client.infer(
            "mlp", _inputs(grpcclient, {"input": data}), headers={"x-request-id": "g-1"}
        )
        with pytest.raises(InferenceServerException):
            http.infer(
                "absent", _inputs(httpclient, {"input": data}), headers={"X-Request-Id": "h-2"}
            )
    finally:
        http.close()
        grpc_client.close()
    logged = _access_lines(caplog)
    assert sorted(line["request_id"] for line in logged) == ["g-1", "h-1", "h-2"]
    lines = {line["request_id"]: line for line in logged}
    http_ok, grpc_ok, missing = lines["h-1"], lines["g-1"], lines["h-2"]
    assert (http_ok["protocol"], http_ok["method"], http_ok["path"]) == (
        "http",
        "POST",
        "/v2/models/mlp/infer",
    )
    assert (http_ok["model"], http_ok["status"]) == ("mlp", 200)
    assert http_ok["bytes_in"] > data.nbytes  # the JSON header, then the raw tensor
    assert http_ok["bytes_out"] > 0
    assert (grpc_ok["protocol"], grpc_ok["path"], grpc_ok["model"], grpc_ok["status"]) == (
        "grpc",
        "/inference.GRPCInferenceService/ModelInfer",
        "mlp",
        200,
    )
    assert grpc_ok["bytes_in"] > data.nbytes
    assert grpc_ok["bytes_out"] >= 3 * 8 * 4  # three rows of eight FP32 outputs
    assert (missing["model"], missing["status"]) == ("absent", 404)
    assert all(line["duration_s"] >= 0 for line in (http_ok, grpc_ok, missing))


def test_an_internal_error_is_logged_with_its_traceback_under_the_id_the_client_got(
    logged_server: RuntimeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{logged_server.http_port}")
    grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{logged_server.grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as http_error:
            http.infer(
                "broadcast", _inputs(httpclient, MISMATCHED), headers={"X-Request-Id": "h-500"}
            )
        with pytest.raises(InferenceServerException) as grpc_error:
            grpc_client.infer("broadcast", _inputs(grpcclient, MISMATCHED))
    finally:
        http.close()
        grpc_client.close()
    assert http_error.value.status() == "500"
    assert grpc_error.value.status() == "StatusCode.INTERNAL"
    http_match = REQUEST_ID.search(http_error.value.message())
    grpc_match = REQUEST_ID.search(grpc_error.value.message())
    assert http_match is not None
    assert http_match.group(1) == "h-500"
    assert grpc_match is not None
    grpc_id = grpc_match.group(1)
    assert uuid.UUID(grpc_id).version == 4
    errors = {
        record.__dict__["request_id"]: record
        for record in caplog.records
        if record.levelno == logging.ERROR and record.name == "sluice.runtime"
    }
    for request_id in ("h-500", grpc_id):
        record = errors[request_id]
        assert record.exc_info is not None
        assert "Attempting to broadcast" in str(record.exc_info[1])
        assert request_id in record.getMessage()
    access = {line["request_id"]: line for line in _access_lines(caplog)}
    assert (access["h-500"]["status"], access[grpc_id]["status"]) == (500, 500)


def test_the_command_logs_json_with_the_traceback_and_the_clients_request_id(
    broadcast_model: Path, model_files: ModelFiles
) -> None:
    """The installed command, with its defaults and ``--access-log``: JSON lines on stderr."""
    server = ServerProcess(
        model_arg("broadcast", broadcast_model),
        model_arg("mlp", model_files.mlp),
        extra=("--access-log",),
    )
    try:
        server.wait_ready()
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            with pytest.raises(InferenceServerException) as failed:
                client.infer(
                    "broadcast", _inputs(httpclient, MISMATCHED), headers={"X-Request-Id": "c-1"}
                )
        finally:
            client.close()
        assert failed.value.status() == "500"
        assert "request id c-1" in failed.value.message()
        server.terminate()
        assert server.wait() == 0
        output = server.output()
    finally:
        server.stop()
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    # onnxruntime's error reaches the output only inside the server's JSON line
    mentions = [line for line in output.splitlines() if "broadcast an axis" in line]
    assert mentions
    assert all(line.startswith("{") for line in mentions), output
    assert any(line["message"].startswith("serving broadcast, mlp") for line in lines), output
    for line in lines:
        assert {"message", "timestamp", "severity"} <= set(line), line
    [error] = [line for line in lines if line["severity"] == "error"]
    assert error["request_id"] == "c-1"
    assert error["exc_info"].startswith("Traceback (most recent call last):")
    assert "Attempting to broadcast" in error["exc_info"]
    [access] = [line for line in lines if line.get("request_id") == "c-1" and "status" in line]
    assert (access["path"], access["status"], access["model"]) == (
        "/v2/models/broadcast/infer",
        500,
        "broadcast",
    )
